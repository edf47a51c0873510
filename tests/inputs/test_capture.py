"""Layer capture on awkward models: reused modules, in-place activations, tuple outputs, tokens,
channels-last maps, functional models — each a correct neuron set or a message, never a traceback."""
import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from neurocarto.compute.attribution import channel_attributions
from neurocarto.compute.pass1 import LayerMaxima
from neurocarto.errors import NeuroCartoError
from neurocarto.inputs.capture import LayerCapture, as_maps, map_geometry, with_maps
from neurocarto.inputs.feeding import Feed
from neurocarto.inputs.models import LoadedModel, resolve_layers
from neurocarto.neurons import Layer


def loaded(module: nn.Module, layers=()) -> LoadedModel:
    return LoadedModel("test-model", module.eval(), None, None, list(layers), "random", "x")


class SharedActivation(nn.Module):
    """One activation module called after the stem and after the head (32 then 64 channels)."""

    def __init__(self):
        super().__init__()
        self.stem, self.head = nn.Conv2d(3, 32, 3, padding=1), nn.Conv2d(32, 64, 3, stride=2)
        self.act = nn.ReLU()
        self.fc = nn.Linear(64, 5)

    def forward(self, x):
        return self.fc(self.act(self.head(self.act(self.stem(x)))).mean((2, 3)))


class InPlaceAfter(nn.Module):
    """The captured conv's output is changed in place later in forward()."""

    def __init__(self):
        super().__init__()
        self.conv, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        y.mul_(-1).relu_()
        return self.conv2(y)


class TupleBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return y, y.mean((2, 3))


class TupleModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = TupleBlock()
        self.out = nn.Conv2d(6, 2, 1)

    def forward(self, x):
        maps, _pooled = self.block(x)
        return {"logits": self.out(maps).mean((2, 3))}


class TinyTokens(nn.Module):
    """A patch embedding, a class token and two transformer layers: (batch, 1 + 16, 8) tokens."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Conv2d(3, 8, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, 8))
        self.layers = nn.Sequential(*[nn.TransformerEncoderLayer(8, 2, 16, batch_first=True, dropout=0.0)
                                      for _ in range(4)])
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), tokens], dim=1)
        return self.head(self.layers(tokens)[:, 0])


class Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 3, 3, 3))

    def forward(self, x):
        return F.relu(F.conv2d(x, self.weight)).mean((1, 2, 3))


def test_a_module_called_twice_gives_one_layer_per_call_with_its_own_maxima():
    torch.manual_seed(0)
    model = SharedActivation().eval()
    notes = []
    layers = resolve_layers(loaded(model), None, torch.randn(1, 3, 16, 16), notes)
    assert [(l.name, l.module_name, l.call, l.channels, l.height) for l in layers] == [
        ("act", "act", 0, 32, 16), ("act_1", "act", 1, 64, 7)]
    images = torch.randn(3, 3, 16, 16)
    recorder = LayerMaxima(model, layers)
    with torch.no_grad():
        model(images)
    maxima, _ = recorder.batch()
    recorder.remove()
    with torch.no_grad():
        first = F.relu(model.stem(images))
        second = F.relu(model.head(first))
    expected = torch.cat([first.amax((2, 3)), second.amax((2, 3))], dim=1)
    torch.testing.assert_close(maxima, expected)


def test_calls_are_named_as_fx_names_them_and_a_bare_name_is_the_first_call():
    model = SharedActivation().eval()
    notes = []
    (layer,) = resolve_layers(loaded(model), ["act_1"], torch.randn(1, 3, 16, 16), notes)
    assert (layer.call, layer.channels) == (1, 64) and not notes
    (layer,) = resolve_layers(loaded(model), ["act"], torch.randn(1, 3, 16, 16), notes)
    assert (layer.call, layer.channels) == (0, 32)
    assert "act is called 2 times per forward pass; its first call is used (act_1 name" in notes[0]


def test_fx_operation_names_get_a_message_naming_modules():
    import torchvision
    resnet = torchvision.models.resnet18(weights=None)
    (layer,) = resolve_layers(loaded(resnet), ["layer1.0.relu_1"], torch.randn(1, 3, 64, 64))
    assert (layer.module_name, layer.call, layer.channels) == ("layer1.0.relu", 1, 64)
    with pytest.raises(NeuroCartoError, match=r"'layer1.0.add' is an operation inside a forward\(\).*\(layer1.0\)"):
        resolve_layers(loaded(resnet), ["layer1.0.add"], torch.randn(1, 3, 64, 64))


def test_in_place_changes_after_the_layer_do_not_reach_what_was_captured():
    torch.manual_seed(0)
    model = InPlaceAfter().eval()
    (layer,) = resolve_layers(loaded(model), ["conv"], torch.randn(1, 3, 8, 8))
    images = torch.randn(2, 3, 8, 8)
    recorder = LayerMaxima(model, [layer])
    with torch.no_grad():
        model(images)
    maxima, _ = recorder.batch()
    recorder.remove()
    torch.testing.assert_close(maxima, model.conv(images).detach().amax((2, 3)))
    # attribution differentiates the conv's own output, not the in-place result
    layers = resolve_layers(loaded(model), ["conv", "conv2"], torch.randn(1, 3, 8, 8))
    sums, n = channel_attributions(model, layers, [Feed(0, 1, 0, 4)], {1: np.arange(4)}, [images])
    upstream = model.conv(images).detach().requires_grad_(True)
    with torch.enable_grad():
        out = model.conv2(F.relu(-upstream)).flatten(2).amax(2)
    expected = np.zeros((4, 4))
    for d in range(4):
        (grad,) = torch.autograd.grad(out[:, d].sum(), upstream, retain_graph=True)
        expected[d] = (grad * upstream.detach()).sum((0, 2, 3)).numpy()
    assert n == 2
    np.testing.assert_allclose(sums[0], expected, rtol=1e-5, atol=1e-6)


def test_tuple_outputs_use_their_map_and_dict_model_outputs_are_fine():
    model = TupleModel().eval()
    layers = resolve_layers(loaded(model), None, torch.randn(1, 3, 10, 10))
    assert [(l.name, l.item, l.channels) for l in layers] == [("block", 0, 6), ("out", None, 2)]
    captured = {}
    with LayerCapture(model, layers, captured.__setitem__, isolate=True), torch.no_grad():
        model(torch.ones(1, 3, 10, 10))
    torch.testing.assert_close(captured[0], model.block.conv(torch.ones(1, 3, 10, 10)))


def test_transformer_tokens_are_channels_on_the_patch_grid():
    torch.manual_seed(0)
    model = TinyTokens().eval()
    layers = resolve_layers(loaded(model), None, torch.randn(1, 3, 16, 16))
    assert [(l.name, l.layout, l.channels, l.height, l.width, l.extra_tokens) for l in layers] == [
        ("embed", "nchw", 8, 4, 4, 0)] + [(f"layers.{i}", "tokens", 8, 4, 4, 1) for i in range(4)]
    tokens = torch.arange(2 * 17 * 8, dtype=torch.float32).reshape(2, 17, 8)
    maps = as_maps(tokens, layers[1])
    assert maps.shape == (2, 8, 4, 4)
    assert maps[1, 5, 2, 3] == tokens[1, 1 + 2 * 4 + 3, 5]          # token of row 2, column 3, channel 5


def test_geometry_tells_channels_last_from_channels_first():
    assert map_geometry((2, 96, 56, 56), (224, 224))["layout"] == "nchw"
    assert map_geometry((2, 56, 56, 96), (224, 224)) == {"layout": "nhwc", "channels": 96, "height": 56, "width": 56}
    assert map_geometry((2, 197, 768), (224, 224))["extra_tokens"] == 1
    assert map_geometry((2, 1000), (224, 224)) is None
    assert map_geometry((2, 7, 5, 512), (224, 160))["layout"] == "nhwc"


def test_models_that_cannot_give_layers_say_why():
    with pytest.raises(NeuroCartoError, match=r"has no block whose output reads as feature maps.*functional calls"):
        resolve_layers(loaded(Functional()), None, torch.randn(1, 3, 8, 8))
    with pytest.raises(NeuroCartoError, match=r"failed on a probe batch of shape \[2, 3, 2, 2\].*--image-size"):
        resolve_layers(loaded(SharedActivation()), None, torch.randn(1, 3, 4, 4)[:, :, :2, :2])
    with pytest.raises(NeuroCartoError, match=r"unknown layer 'stemm'.*did you mean stem"):
        resolve_layers(loaded(SharedActivation()), ["stemm"], torch.randn(1, 3, 16, 16))


def test_a_layer_the_forward_pass_skips_is_named():
    class Sometimes(SharedActivation):
        def forward(self, x):
            return self.act(self.stem(x)).mean() if x.shape[0] > 2 else self.act(self.head(self.act(self.stem(x))))

    model = Sometimes().eval()
    layers = resolve_layers(loaded(model), ["act_1"], torch.randn(1, 3, 16, 16))
    recorder = LayerMaxima(model, layers)
    with torch.no_grad():
        model(torch.randn(3, 3, 16, 16))
    with pytest.raises(NeuroCartoError, match="did not reach layer.*act_1.*conditionally"):
        recorder.batch()
    recorder.remove()


def test_layer_descriptions_round_trip():
    layer = Layer("encoder.l_1", 8, 4, 4, module="encoder.l", call=1, item=0, layout="tokens", extra_tokens=1)
    assert Layer.from_description(layer.describe()) == layer
    assert Layer("a", 3, 2, 2).describe() == {"name": "a", "channels": 3, "height": 2, "width": 2}


@pytest.mark.parametrize("layer, shape", [
    (Layer("a", 4, 3, 5), (2, 4, 3, 5)),
    (Layer("b", 4, 3, 5, layout="nhwc"), (2, 3, 5, 4)),
    (Layer("c", 4, 3, 5, layout="tokens", extra_tokens=1), (2, 16, 4)),
])
def test_maps_written_back_give_the_layers_own_layout(layer, shape):
    tensor = torch.randn(shape)
    torch.testing.assert_close(with_maps(tensor, layer, as_maps(tensor, layer)), tensor)
    doubled = with_maps(tensor, layer, 2 * as_maps(tensor, layer))
    torch.testing.assert_close(as_maps(doubled, layer), 2 * as_maps(tensor, layer))
    if layer.layout == "tokens":
        torch.testing.assert_close(doubled[:, :1], tensor[:, :1])          # the class token is kept
