"""Gradient cones: a feed's sums along its cone equal autograd's on residual, bottleneck, inverted-residual
and pooling feeds; a squeeze-excitation gate is held (approximate, equal to autograd with the gate fixed);
ops the cone cannot follow give no cone."""
import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from neurocarto.compute.cone import TracedModel
from neurocarto.inputs.capture import LayerCapture
from neurocarto.neurons import Layer


def _layers(model, names, images):
    captured = {}
    modules = dict(model.named_modules())
    handles = [modules[name].register_forward_hook(lambda _m, _i, out, name=name: captured.__setitem__(name, out.clone()))
               for name in names]
    with torch.no_grad():
        model(images)
    for handle in handles:
        handle.remove()
    layers = [Layer(name, module=name, call=0, item=None, layout="nchw", channels=captured[name].shape[1],
                    height=captured[name].shape[2], width=captured[name].shape[3]) for name in names]
    return layers, {i: captured[name] for i, name in enumerate(names)}


def autograd_sums(model, layers, upstream, downstream, images, chosen):
    """Σ over images of gradient × activation of each chosen channel's spatial maximum, by autograd."""
    maps = {}
    with LayerCapture(model, layers, maps.__setitem__, [upstream, downstream], isolate=True) as capture:
        model(images.requires_grad_(True))
    rows = []
    for channel in chosen:
        (grad,) = torch.autograd.grad(maps[downstream][:, channel].flatten(1).amax(1).sum(), capture.raw[upstream],
                                      retain_graph=True)
        rows.append((grad * maps[upstream]).sum(dim=(0, 2, 3)))
    return torch.stack(rows).double()


def cone_and_reference(model, names, images, n_chosen=5, seed=0):
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    layers, captured = _layers(model, names, images[:2])
    traced = TracedModel(model, layers, images[:2], captured)
    cone = traced.cone(0, 1)
    chosen = torch.randperm(layers[1].channels, generator=torch.Generator().manual_seed(seed))[:n_chosen]
    sources = torch.arange(layers[0].channels)
    reference = autograd_sums(model, layers, 0, 1, images.clone(), chosen)
    if cone is None:
        return None, reference, None
    with torch.no_grad():
        values = traced.run(images, cone.needs())
    return cone, reference, cone.sums(values, chosen, sources)


@pytest.mark.parametrize("build, names, size", [
    (torchvision.models.resnet18, ("layer1.0", "layer1.1"), 40),          # basic block, identity shortcut
    (torchvision.models.resnet18, ("layer1.1", "layer2.0"), 40),          # stride 2 with a 1×1 downsample
    (torchvision.models.resnet18, ("bn1", "layer1.0"), 40),               # through the stem's max-pool
    (torchvision.models.resnet50, ("layer2.3", "layer3.0"), 48),          # bottleneck, stride 2
    (torchvision.models.mobilenet_v2, ("features.3", "features.4"), 48),  # inverted residual, depthwise
])
def test_exact_cones_equal_autograd(build, names, size):
    torch.manual_seed(0)
    images = torch.randn(3, 3, size, size)
    cone, reference, sums = cone_and_reference(build(num_classes=4), names, images)
    assert cone is not None and cone.exact
    assert torch.allclose(sums, reference, rtol=1e-4, atol=1e-5 * reference.abs().max().item())


def test_only_the_requested_upstream_channels_are_summed():
    torch.manual_seed(0)
    images = torch.randn(2, 3, 40, 40)
    model = torchvision.models.resnet18(num_classes=4).eval()
    layers, captured = _layers(model, ("layer1.1", "layer2.0"), images)
    traced = TracedModel(model, layers, images, captured)
    cone = traced.cone(0, 1)
    chosen, sources = torch.tensor([3, 70]), torch.tensor([5, 0, 40])
    with torch.no_grad():
        values = traced.run(images, cone.needs())
    every = cone.sums(values, chosen, torch.arange(64))
    assert torch.allclose(cone.sums(values, chosen, sources), every[:, sources])


class Squeezed(nn.Module):
    """conv → a squeeze-excitation gate → conv, to hold the gate against autograd with the gate detached."""

    def __init__(self, detach_gate: bool = False):
        super().__init__()
        self.detach_gate = detach_gate
        self.first = nn.Conv2d(3, 8, 3, padding=1)
        self.squeeze = nn.Conv2d(8, 8, 1)
        self.second = nn.Sequential(nn.Conv2d(8, 6, 3, padding=1), nn.ReLU())

    def forward(self, x):
        x = self.first(x)
        gate = torch.sigmoid(self.squeeze(x.mean((2, 3), keepdim=True)))
        return self.second(x * (gate.detach() if self.detach_gate else gate))


def test_a_squeeze_excitation_gate_is_held_and_the_cone_says_so():
    torch.manual_seed(0)
    images = torch.randn(3, 3, 12, 12)
    model = Squeezed()
    cone, reference, sums = cone_and_reference(model, ("first", "second"), images, n_chosen=6)
    assert cone is not None and not cone.exact
    fixed = Squeezed(detach_gate=True)
    fixed.load_state_dict(model.state_dict())
    _, gate_held, _ = cone_and_reference(fixed, ("first", "second"), images, n_chosen=6)
    assert torch.allclose(sums, gate_held, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(sums, reference, rtol=1e-4, atol=1e-6)      # the gate's gradient is left out


class Shifted(nn.Module):
    def __init__(self):
        super().__init__()
        self.first = nn.Conv2d(3, 4, 3, padding=1)
        self.second = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        return self.second(torch.roll(self.first(x), 1, dims=3))


class Resized(Shifted):
    def forward(self, x):
        return self.second(F.interpolate(self.first(x), scale_factor=2.0))


@pytest.mark.parametrize("model", [Shifted(), Resized()])
def test_ops_that_move_positions_give_no_cone(model):
    cone, reference, _ = cone_and_reference(model, ("first", "second"), torch.randn(2, 3, 8, 8), n_chosen=2)
    assert cone is None and reference.shape == (2, 4)
