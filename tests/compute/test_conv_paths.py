"""Closed-form edges of one-conv (and bottleneck + conv) feeds equal autograd's on every feed type they take;
feeds of another shape stay with autograd."""
import numpy as np
import pytest
import torch
from torch import nn

from neurocarto.compute.attribution import FeedPaths, channel_attributions
from neurocarto.inputs.capture import record_calls
from neurocarto.inputs.feeding import feeding_map
from neurocarto.inputs.models import LoadedModel, load_model, resolve_layers


class Residual(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.conv(x) + x)


def conv_norm(cin, cout, kernel, activation, **kwargs):
    return [nn.Conv2d(cin, cout, kernel, bias=False, **kwargs), nn.BatchNorm2d(cout), activation]


class Feeds(nn.Module):
    """Each block is one feed type; the layers are the blocks' outputs."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(*conv_norm(3, 8, 3, nn.ReLU(), padding=1))
        self.strided = nn.Sequential(*conv_norm(8, 12, 3, nn.ReLU(inplace=True), stride=2, padding=1))
        self.pooled = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), *conv_norm(12, 10, 1, nn.ReLU6()))
        self.bottleneck = nn.Sequential(*conv_norm(10, 6, 1, nn.ReLU()), *conv_norm(6, 9, 5, nn.SiLU(), padding=2))
        self.grouped = nn.Sequential(nn.Conv2d(9, 6, 3, padding=1, groups=3), nn.GELU())
        self.dilated = nn.Sequential(*conv_norm(6, 8, 3, nn.Hardswish(), padding=2, dilation=2))
        self.residual = Residual(8)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        for block in (self.stem, self.strided, self.pooled, self.bottleneck, self.grouped, self.dilated, self.residual):
            x = block(x)
        return self.head(x.mean((2, 3)))


def randomised(model: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.3, 0.3)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    model.strided[1].bias.data[0] = -50.0        # a dead channel: flat zero maps, every place tied
    model.pooled[1].weight.data *= 30             # maxima beyond ReLU6's cap
    return model.eval()


def compare(model, layers, example, images, channels):
    feeds = feeding_map(model, layers)
    paths = FeedPaths(model, layers, feeds, record_calls(model, example))
    fast, n_fast = channel_attributions(model, layers, feeds, channels, images, paths=paths)
    again, _ = channel_attributions(model, layers, feeds, channels, images, paths=paths)
    exact, n_exact = channel_attributions(model, layers, feeds, channels, images)
    assert n_fast == n_exact
    for k in exact:
        scale = np.abs(exact[k]).max() + 1e-12
        np.testing.assert_allclose(fast[k] / scale, exact[k] / scale, atol=2e-5, err_msg=f"feed {k} first pass")
        np.testing.assert_allclose(again[k] / scale, exact[k] / scale, atol=2e-5, err_msg=f"feed {k} closed form")
    return feeds, paths


def feeds_model():
    """The Feeds model (randomised, seeded), an example input and its blocks as layers."""
    torch.manual_seed(1)
    model = randomised(Feeds())
    example = torch.randn(1, 3, 16, 16)
    loaded = LoadedModel("feeds", model, None, None, [], "random", "x")
    names = ["stem", "strided", "pooled", "bottleneck", "grouped", "dilated", "residual"]
    return model, example, resolve_layers(loaded, names, example)


def test_every_feed_type_equals_autograd_and_others_keep_it():
    model, example, layers = feeds_model()
    constant = torch.ones(2, 3, 16, 16)                   # flat maps: tied positive maxima
    images = [torch.cat([torch.randn(6, 3, 16, 16), constant]), torch.randn(5, 3, 16, 16)]
    channels = {i: np.arange(layer.channels) for i, layer in enumerate(layers)}
    feeds, paths = compare(model, layers, example, images, channels)
    decided = {layers[feed.downstream].name: paths.path(k) for k, feed in enumerate(feeds)}
    assert {name: (path.activation, path.bottleneck is not None) if path else None
            for name, path in decided.items()} == {
        "strided": ("relu", False), "pooled": ("relu6", False), "bottleneck": ("silu", True),
        "grouped": ("gelu", False), "dilated": ("hardswish", False), "residual": None}


@pytest.mark.parametrize("spec, size", [(None, 28), ("googlenet", 32), ("vgg11", 32)])
def test_inception_feeds_equal_autograd(spec, size):
    loaded = load_model(spec, image_size=size)
    channels_in = 1 if spec is None else 3
    example = torch.randn(1, channels_in, size, size)
    layers = resolve_layers(loaded, None, example)
    rng = np.random.default_rng(0)
    channels = {i: np.sort(rng.choice(layer.channels, min(8, layer.channels), replace=False))
                for i, layer in enumerate(layers)}
    torch.manual_seed(0)
    images = [torch.randn(6, channels_in, size, size) for _ in range(2)]
    feeds, paths = compare(loaded.module, layers, example, images, channels)
    used = [k for k in range(len(feeds)) if not paths.pending(k)]
    closed_form = [k for k in used if paths.path(k) is not None]
    assert len(closed_form) >= len(used) - 1, f"{len(closed_form)} of {len(used)} feeds in closed form"


def test_a_path_that_fails_on_a_later_batch_goes_back_to_autograd():
    model = randomised(Feeds())
    example = torch.randn(1, 3, 16, 16)
    loaded = LoadedModel("feeds", model, None, None, [], "random", "x")
    layers = resolve_layers(loaded, ["strided", "pooled"], example)
    torch.manual_seed(2)
    images = [torch.randn(4, 3, 16, 16) * 0.01, torch.randn(4, 3, 16, 16) * 5]   # ReLU6's cap reached only later
    channels = {1: np.arange(10)}
    feeds = feeding_map(model, layers)
    paths = FeedPaths(model, layers, feeds, record_calls(model, example))
    fast, _ = channel_attributions(model, layers, feeds, channels, images[:1], paths=paths)
    assert paths.path(0).activation == "relu"          # indistinguishable from ReLU6 below the cap
    fast, _ = channel_attributions(model, layers, feeds, channels, images, paths=paths)
    exact, _ = channel_attributions(model, layers, feeds, channels, images)
    assert paths.path(0) is None
    np.testing.assert_allclose(fast[0], exact[0], rtol=1e-5, atol=1e-6)


def test_convs_too_large_to_expand_keep_autograd_and_each_conv_is_folded_once(monkeypatch):
    from neurocarto.compute import conv_paths

    model, example, layers = feeds_model()
    feeds = feeding_map(model, layers)
    folds = []
    real_fold = conv_paths._folded
    monkeypatch.setattr(conv_paths, "_folded", lambda conv, norm: folds.append((id(conv), id(norm))) or
                        real_fold(conv, norm))
    paths = FeedPaths(model, layers, feeds, record_calls(model, example))
    assert folds and len(folds) == len(set(folds))          # shared across feeds and bottleneck options
    grouped = next(k for k, feed in enumerate(feeds) if layers[feed.downstream].name == "grouped")
    assert paths.pending(grouped)
    # the grouped conv's dense weight is 6·9·3·3 = 486 elements: over a budget of 400 it keeps autograd
    monkeypatch.setattr(conv_paths, "MAX_WEIGHT_ELEMENTS", 400)
    small = FeedPaths(model, layers, feeds, record_calls(model, example))
    assert not small.pending(grouped) and small.path(grouped) is None
    channels = {i: np.arange(layer.channels) for i, layer in enumerate(layers)}
    images = [torch.randn(4, 3, 16, 16)]
    fast, _ = channel_attributions(model, layers, feeds, channels, images, paths=small)
    exact, _ = channel_attributions(model, layers, feeds, channels, images)
    for k in exact:
        np.testing.assert_allclose(fast[k], exact[k], rtol=1e-4, atol=1e-6 * (np.abs(exact[k]).max() + 1e-12))


def test_a_large_first_batch_decides_its_feeds_on_its_first_images_only(monkeypatch):
    from neurocarto.compute import attribution

    model, example, layers = feeds_model()
    torch.manual_seed(3)
    images = [torch.randn(attribution.DECIDING_IMAGES + 5, 3, 16, 16), torch.randn(3, 3, 16, 16)]
    channels = {i: np.arange(layer.channels) for i, layer in enumerate(layers)}
    deciding = []
    real_decide = FeedPaths.decide
    monkeypatch.setattr(FeedPaths, "decide", lambda self, k, feed, inputs, values, maps, *rest:
                        deciding.append(len(maps)) or real_decide(self, k, feed, inputs, values, maps, *rest))
    feeds, paths = compare(model, layers, example, images, channels)
    assert deciding and set(deciding) == {attribution.DECIDING_IMAGES}
    assert not any(paths.pending(k) for k in range(len(feeds)))
