"""Feeds that are one convolution (or a 1×1 bottleneck and a convolution): gradient × activation in closed
form, without autograd.

Where a downstream layer's channels [start, stop) are act(norm(conv(X))) and X is the upstream layer's
output or a max-pool of it (a max-pool hands each window's gradient to the element equal to its output,
so Σ_xy grad · a per channel is the same on both sides of it), the gradient of a downstream neuron's
spatial maximum reaches the upstream map only through the conv's window at the argmax p:

    Σ_xy a_u · ∂max(a_d)/∂a_u = act'(y_p) · Σ_ij W'[d, u, i, j] · X[u, p·stride + i·dilation − padding]

with W', b' the conv's weight and bias with the norm folded in and y_p = W'·window + b'. With a 1×1
bottleneck Z = act₁(W₁'X + b₁') before the conv (InceptionV1's 3×3 and 5×5 branches), the window term
becomes Σ_ij Σ_m W'[d, m, i, j] · act₁'(z_m) · W₁'[m, u] · X[u, ·]. Tied maxima share the gradient
evenly, as torch's amax does.

A path is recognised by its values, not by source code: candidate convs called between the upstream and
the downstream layer, with the batch norm that follows each (if any) and one of the common activations, must
reproduce the conv's input and the downstream maxima, and their sums must equal autograd's on a batch;
otherwise the feed keeps autograd.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.nn import functional as F

from neurocarto.inputs.capture import ModuleCall

MAX_WEIGHT_ELEMENTS = 2 ** 24   # convs whose dense (groups expanded) weight is larger keep autograd

ACTIVATIONS = {"relu": F.relu, "identity": lambda y: y, "relu6": F.relu6, "silu": F.silu, "gelu": F.gelu,
               "hardswish": F.hardswish, "leaky_relu": F.leaky_relu}


@dataclass(frozen=True)
class Bottleneck:
    """A 1×1, stride-1 conv before the path's conv: Z = activation(weight · X + bias), X the input of `conv`."""

    conv: str
    weight: torch.Tensor          # (mid, in), norm folded
    bias: torch.Tensor            # (mid,)
    activation: str = ""


@dataclass(frozen=True)
class ConvPath:
    """Downstream channels = activation(weight ⋆ Z + bias), Z the input of module `conv` (computed by
    `bottleneck` from the upstream map when there is one)."""

    conv: str
    weight: torch.Tensor          # (out, in, kh, kw), groups expanded, norm folded
    bias: torch.Tensor            # (out,)
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    activation: str = ""
    bottleneck: Bottleneck | None = None

    @property
    def source(self) -> str:
        """The conv whose input is the upstream map (or its max-pool)."""
        return self.bottleneck.conv if self.bottleneck else self.conv


def _dense_weight(conv: nn.Conv2d) -> torch.Tensor:
    weight = conv.weight.detach()
    if conv.groups == 1:
        return weight
    out_per_group, in_per_group = conv.out_channels // conv.groups, conv.in_channels // conv.groups
    dense = weight.new_zeros((conv.out_channels, conv.in_channels) + tuple(weight.shape[2:]))
    for group in range(conv.groups):
        rows = slice(group * out_per_group, (group + 1) * out_per_group)
        dense[rows, group * in_per_group:(group + 1) * in_per_group] = weight[rows]
    return dense


def _folded(conv: nn.Conv2d, norm: nn.BatchNorm2d | None) -> tuple[torch.Tensor, torch.Tensor]:
    weight = _dense_weight(conv)
    bias = conv.bias.detach() if conv.bias is not None else weight.new_zeros(conv.out_channels)
    if norm is None:
        return weight, bias
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight.detach()
    shift = norm.bias.detach() if norm.bias is not None else torch.zeros_like(scale)
    return weight * scale[:, None, None, None], (bias - norm.running_mean) * scale + shift


def _convs_with_norms(model: nn.Module, calls: list[ModuleCall], after: int, before: int):
    """(position, name, conv, [norm or None, ...]) of every conv that forward() calls once, between the calls at
    positions `after` and `before` (the upstream and the downstream layer), whose dense weight stays under
    MAX_WEIGHT_ELEMENTS (a grouped conv is expanded to dense form for the closed form: RegNet's widest grouped
    convs would take gigabytes)."""
    modules = dict(model.named_modules())
    times_called: dict[str, int] = {}
    for call in calls:
        times_called[call.module] = times_called.get(call.module, 0) + 1
    for position in range(after + 1, before):
        call = calls[position]
        conv = modules[call.module]
        if not (isinstance(conv, nn.Conv2d) and times_called[call.module] == 1 and conv.padding_mode == "zeros"
                and not isinstance(conv.padding, str) and not conv.training
                and conv.out_channels * conv.in_channels * conv.weight[0, 0].numel() <= MAX_WEIGHT_ELEMENTS):
            continue
        norms = [None]
        norm = _next_norm(modules, calls, position, conv.out_channels)
        if norm is not None:
            norms.insert(0, norm)
        yield position, call.module, conv, norms


def _next_norm(modules: dict[str, nn.Module], calls: list[ModuleCall], position: int, channels: int):
    """The batch norm called right after the conv at `position`, if any. Hooks fire as modules return, so a
    norm with modules of its own inside (e.g. timm's BatchNormAct2d) comes after its children's calls."""
    window = calls[position + 1:position + 8]
    for index, call in enumerate(window):
        module = modules[call.module]
        if isinstance(module, nn.BatchNorm2d):
            return module if module.num_features == channels and not module.training else None
        inside_a_norm = any(call.module.startswith(later.module + ".") and isinstance(modules[later.module], nn.BatchNorm2d)
                            for later in window[index + 1:])
        if not inside_a_norm:
            return None
    return None


def candidate_paths(model: nn.Module, calls: list[ModuleCall], after: int, before: int, channels: int,
                    folded: dict | None = None) -> list[ConvPath]:
    """Possible paths to `channels` channels of the layer called at position `before` from the layer called at
    `after`: convs called once in between, with and without the batch norm called next, alone or after a 1×1
    bottleneck; activations are left to `identify`. Each conv is folded with each norm once, in `folded`
    (share it between calls for one model)."""
    folded = {} if folded is None else folded

    def fold(name: str, conv: nn.Conv2d, norm: nn.BatchNorm2d | None) -> tuple[torch.Tensor, torch.Tensor]:
        key = (name, id(norm))
        if key not in folded:
            folded[key] = _folded(conv, norm)
        return folded[key]

    convs = list(_convs_with_norms(model, calls, after, before))
    candidates = []
    for position, name, conv, norms in convs:
        if conv.out_channels != channels:
            continue
        bottlenecks = [None] + [
            Bottleneck(first_name, fold(first_name, first, norm)[0].flatten(1), fold(first_name, first, norm)[1])
            for first_position, first_name, first, first_norms in convs for norm in first_norms
            if first_position < position and first.out_channels == conv.in_channels and first.groups == 1
            and first.kernel_size == (1, 1) and first.stride == (1, 1) and first.padding == (0, 0)]
        for norm in norms:
            weight, bias = fold(name, conv, norm)
            for bottleneck in bottlenecks:
                candidates.append(ConvPath(name, weight, bias, tuple(conv.stride), tuple(conv.padding),
                                           tuple(conv.dilation), bottleneck=bottleneck))
    return candidates


def _windows(inputs: torch.Tensor, path: ConvPath, image, y, x) -> tuple[torch.Tensor, torch.Tensor]:
    """(tasks, channels, kh, kw) windows of `inputs` under the conv at output places (y, x), zero outside,
    and (tasks, 1, kh, kw) whether each place is inside the map."""
    kernel_h, kernel_w = path.weight.shape[2:]
    rows = y[:, None] * path.stride[0] - path.padding[0] + torch.arange(kernel_h, device=y.device) * path.dilation[0]
    columns = x[:, None] * path.stride[1] - path.padding[1] + torch.arange(kernel_w, device=x.device) * path.dilation[1]
    inside = ((rows >= 0) & (rows < inputs.shape[2]))[:, :, None] & ((columns >= 0) & (columns < inputs.shape[3]))[:, None]
    padded = F.pad(inputs, (path.padding[1], path.padding[1], path.padding[0], path.padding[0]))
    window = padded[image[:, None, None, None], torch.arange(inputs.shape[1], device=y.device)[None, :, None, None],
                    (rows + path.padding[0])[:, None, :, None], (columns + path.padding[1])[:, None, None, :]]
    return window, inside[:, None].to(inputs.dtype)


def _terms(path: ConvPath, inputs: dict[str, torch.Tensor], image, y, x, channel
           ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Per task (image, place (y, x), output channel): (tasks, upstream channels) window terms and the
    pre-activation y_p (the sums are the terms times act'(y_p)), and how far the bottleneck's recomputed output
    is from the conv's actual input in those windows (relative; 0 without a bottleneck)."""
    weight = path.weight[channel]                                            # (tasks, in, kh, kw)
    source = inputs[path.source]
    if path.bottleneck is None:
        if weight.shape[2:] == (1, 1) and path.padding == (0, 0):
            terms = weight[:, :, 0, 0] * source[image, :, y * path.stride[0], x * path.stride[1]]
        else:
            window, _ = _windows(source, path, image, y, x)
            terms = (weight * window).sum(dim=(2, 3))
        return terms, terms.sum(dim=1) + path.bias[channel], 0.0
    bottleneck = path.bottleneck
    window, inside = _windows(source, path, image, y, x)                      # (tasks, in, kh, kw)
    middle = torch.einsum("mu,tuij->tmij", bottleneck.weight, window) + bottleneck.bias[None, :, None, None]
    recomputed = ACTIVATIONS[bottleneck.activation](middle) * inside
    pre_activation = (weight * recomputed).sum(dim=(1, 2, 3)) + path.bias[channel]
    slope = _slope(bottleneck.activation, middle) * inside
    terms = torch.einsum("tmij,mu,tuij->tu", weight * slope, bottleneck.weight, window)
    actual, _ = _windows(inputs[path.conv], path, image, y, x)
    gap = (recomputed - actual).abs().max().item() / (1 + actual.abs().max().item()) if len(actual) else 0.0
    return terms, pre_activation, gap


def _slope(activation: str, pre_activation: torch.Tensor) -> torch.Tensor:
    y = pre_activation.detach().requires_grad_(True)
    with torch.enable_grad():
        (slope,) = torch.autograd.grad(ACTIVATIONS[activation](y).sum(), y)
    return slope


def _argmax_places(maps: torch.Tensor):
    flat = maps.detach().flatten(2)
    peak = flat.amax(dim=2)
    image, row = torch.meshgrid(torch.arange(len(flat), device=flat.device),
                                torch.arange(flat.shape[1], device=flat.device), indexing="ij")
    position = flat.argmax(dim=2).reshape(-1)
    return flat, peak, image.reshape(-1), row.reshape(-1), position // maps.shape[3], position % maps.shape[3]


def _output_size(path: ConvPath, inputs: torch.Tensor) -> tuple[int, int]:
    kernel = path.weight.shape[2:]
    return tuple((inputs.shape[2 + i] + 2 * path.padding[i] - path.dilation[i] * (kernel[i] - 1) - 1)
                 // path.stride[i] + 1 for i in range(2))


def _close(first: torch.Tensor, second: torch.Tensor, tolerance: float) -> bool:
    return (first - second).abs().max().item() <= tolerance * (1 + second.abs().max().item())


def identify(path: ConvPath, inputs: dict[str, torch.Tensor], maps: torch.Tensor, channels: torch.Tensor,
             tolerance: float = 1e-4) -> ConvPath | None:
    """The path with the activations that reproduce the conv's input and the maps' maxima, or None.
    `maps` (batch, len(channels), H, W) are the downstream channels `channels` (indices into the conv's outputs);
    `inputs` the inputs of the path's convs in this forward pass."""
    if any(name not in inputs for name in (path.conv, path.source)):
        return None
    if tuple(maps.shape[2:]) != _output_size(path, inputs[path.conv]) or path.weight.shape[1] != inputs[path.conv].shape[1]:
        return None
    if path.bottleneck is not None:
        source, bottleneck = inputs[path.source], path.bottleneck
        if source.shape[1] != bottleneck.weight.shape[1] or source.shape[2:] != inputs[path.conv].shape[2:]:
            return None
        middle = torch.einsum("mu,buhw->bmhw", bottleneck.weight, source) + bottleneck.bias[None, :, None, None]
        found = next((name for name, function in ACTIVATIONS.items()
                      if _close(function(middle), inputs[path.conv], tolerance)), None)
        if found is None:
            return None
        path = replace(path, bottleneck=replace(bottleneck, activation=found))
    _, peak, image, row, y, x = _argmax_places(maps)
    if len(row) == 0:
        return None
    _, pre_activation, _ = _terms(path, inputs, image, y, x, channels[row])
    for activation, function in ACTIVATIONS.items():
        if _close(function(pre_activation), peak.reshape(-1), tolerance):
            return replace(path, activation=activation)
    return None


def path_sums(path: ConvPath, inputs: dict[str, torch.Tensor], maps: torch.Tensor, channels: torch.Tensor,
              tolerance: float = 1e-4) -> torch.Tensor | None:
    """Σ over the batch of gradient × activation: (len(channels), upstream channels) float64, for downstream
    `channels` (indices into the conv's outputs) whose maps are `maps` (batch, len(channels), H, W); None when
    the path does not reproduce this batch's maxima or bottleneck outputs (then autograd must take it)."""
    flat, peak, image, row, y, x = _argmax_places(maps)
    ties = (flat == peak[..., None]).sum(dim=2).reshape(-1)
    terms, pre_activation, gap = _terms(path, inputs, image, y, x, channels[row])
    if gap > tolerance or not _close(ACTIVATIONS[path.activation](pre_activation), peak.reshape(-1), tolerance):
        return None
    slope = _slope(path.activation, pre_activation)
    sums = torch.zeros((len(channels), terms.shape[1]), dtype=torch.float64, device=terms.device)
    single = ties == 1
    sums.index_add_(0, row[single], (terms[single] * slope[single, None]).double())
    # a tied maximum with zero slope (a flat ReLU region) contributes nothing at any of its places
    shared = (~single) & (slope != 0)
    if shared.any():
        images, rows = image[shared], row[shared]
        tied = flat[images, rows] == peak.reshape(-1)[shared][:, None]          # (pairs, H·W)
        pair, place = tied.nonzero(as_tuple=True)
        width = maps.shape[3]
        terms, pre_activation, _ = _terms(path, inputs, images[pair], place // width, place % width,
                                          channels[rows[pair]])
        share = (1.0 / ties[shared].double())[pair]
        sums.index_add_(0, rows[pair], terms.double() * (_slope(path.activation, pre_activation).double() * share)[:, None])
    return sums
