"""Layer capture: the one way every stage reaches a layer's output, in any model.

A layer is one call of one module (a module that `forward()` calls several times has one layer
per call) and, where the module returns a tuple, list or dict, one tensor of it. Its name is
the module's path as `print(model)` shows it; the n-th call (n ≥ 2) is `path_{n-1}`, as
torchvision's FX feature extraction names it. Its output is read as feature maps
(batch, channels, height, width) from one of three layouts:
- `nchw`: convolutional maps;
- `nhwc`: channels last (e.g. Swin's stages);
- `tokens`: (batch, tokens, channels) of a transformer, whose last height × width tokens lie on
  the patch grid (after `extra_tokens` class or register tokens, which have no place).
A neuron is one channel; its position is a place on the map (a patch token for transformers).

Hooks are counted per forward pass, so each call is told apart; the output is reduced or
copied inside the hook, so later in-place operations of the model cannot alter what a stage saw.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from neurocarto.errors import NeuroCartoError
from neurocarto.neurons import Layer

MAX_EXTRA_TOKENS = 8


def call_name(module: str, call: int) -> str:
    """A module call's layer name: the path for the first call, `path_N` for call N (0-based), as FX names them."""
    return module if call == 0 else f"{module}_{call}"


def select(output, item):
    """The tensor of a module's output a layer reads."""
    return output if item is None else output[item]


def as_maps(tensor: torch.Tensor, layer: Layer) -> torch.Tensor:
    """A layer's raw output tensor → (batch, channels, height, width) maps (a view where possible)."""
    if layer.layout == "nhwc":
        return tensor.permute(0, 3, 1, 2)
    if layer.layout == "tokens":
        grid = tensor[:, layer.extra_tokens:]
        return grid.transpose(1, 2).reshape(len(tensor), layer.channels, layer.height, layer.width)
    return tensor


def with_maps(tensor: torch.Tensor, layer: Layer, maps: torch.Tensor) -> torch.Tensor:
    """A layer's raw output tensor with its maps replaced by `maps` (batch, channels, height, width): the inverse
    of `as_maps` (a transformer's extra tokens kept as they are)."""
    if layer.layout == "nhwc":
        return maps.permute(0, 2, 3, 1)
    if layer.layout == "tokens":
        grid = maps.reshape(len(maps), layer.channels, -1).transpose(1, 2)
        return torch.cat([tensor[:, :layer.extra_tokens], grid.to(tensor.dtype)], dim=1)
    return maps


def replaced_output(output, item, tensor):
    """The module output with the captured tensor swapped for `tensor`."""
    if item is None:
        return tensor
    if isinstance(output, dict):
        replaced = dict(output)
        replaced[item] = tensor
        return replaced
    replaced = list(output)
    replaced[item] = tensor
    if hasattr(output, "_fields"):        # a named tuple
        return type(output)(*replaced)
    return tuple(replaced) if isinstance(output, tuple) else replaced


class LayerCapture:
    """Forward hooks handing `receive(layer index, maps)` each chosen layer's maps, batch by batch.

    With `isolate`, the model goes on with a copy of each captured output, so the tensor a stage
    keeps (`raw[index]`, e.g. to differentiate with respect to it) is never changed in place later.
    With `edit`, the model goes on with `edit(layer index, output tensor)` instead (e.g. channels ablated).
    Use as a context manager: the hooks are removed on exit.
    """

    def __init__(self, model: nn.Module, layers: list[Layer], receive: Callable[[int, torch.Tensor], None],
                 indices: list[int] | None = None, isolate: bool = False,
                 edit: Callable[[int, torch.Tensor], torch.Tensor] | None = None):
        self.model, self.layers, self.receive, self.isolate, self.edit = model, layers, receive, isolate, edit
        self.indices = list(range(len(layers))) if indices is None else list(indices)
        self.raw: dict[int, torch.Tensor] = {}
        self._calls: dict[str, int] = {}
        self._handles = []

    def __enter__(self) -> "LayerCapture":
        modules = dict(self.model.named_modules())
        wanted: dict[str, dict[int, int]] = {}
        for index in self.indices:
            layer = self.layers[index]
            if layer.module_name not in modules or not layer.module_name:
                raise NeuroCartoError(f"layer {layer.name!r}: the model has no module {layer.module_name!r}; "
                                      "the model changed since the run's layers were chosen: rebuild with --rebuild")
            wanted.setdefault(layer.module_name, {})[layer.call] = index
        self._handles.append(self.model.register_forward_pre_hook(lambda *_: self._calls.clear()))
        for name, calls in wanted.items():
            self._handles.append(modules[name].register_forward_hook(self._hook(name, calls)))
        return self

    def _hook(self, name: str, calls: dict[int, int]):
        def hook(_module, _inputs, output):
            call = self._calls.get(name, 0)
            self._calls[name] = call + 1
            index = calls.get(call)
            if index is None:
                return None
            layer = self.layers[index]
            tensor = select(output, layer.item)
            if self.isolate:
                self.raw[index] = tensor
                output = replaced_output(output, layer.item, tensor.clone())
            if self.edit is not None:
                tensor = self.edit(index, tensor)
                output = replaced_output(output, layer.item, tensor)
            self.receive(index, as_maps(tensor, layer))
            return output if self.isolate or self.edit is not None else None
        return hook

    def __exit__(self, *_exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def missing(self, received: set[int]) -> list[str]:
        """Names of chosen layers a forward pass did not reach (given the indices it did)."""
        return [self.layers[i].name for i in self.indices if i not in received]


@dataclass(frozen=True)
class ModuleCall:
    """One call of one module in a probe forward pass: its layer name and what it returned."""

    name: str
    module: str
    call: int
    outputs: tuple      # ((item, shape), ...): each tensor of the output, item None for a bare tensor


def _tensors(output, limit: int = 8) -> tuple:
    if torch.is_tensor(output):
        return ((None, tuple(output.shape)),)
    if isinstance(output, (tuple, list)):
        return tuple((i, tuple(v.shape)) for i, v in enumerate(output[:limit]) if torch.is_tensor(v))
    if isinstance(output, dict):
        return tuple((k, tuple(v.shape)) for k, v in list(output.items())[:limit] if torch.is_tensor(v))
    return ()


def record_calls(model: nn.Module, example: torch.Tensor) -> list[ModuleCall]:
    """Every module call of one forward pass over a batch of two copies of `example`, in execution order."""
    calls: list[ModuleCall] = []
    counts: dict[str, int] = {}
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue

        def hook(_module, _inputs, output, name=name):
            call = counts.get(name, 0)
            counts[name] = call + 1
            calls.append(ModuleCall(call_name(name, call), name, call, _tensors(output)))
        handles.append(module.register_forward_hook(hook))
    batch = example.expand(2, *example.shape[1:]).contiguous()
    try:
        with torch.no_grad():
            model(batch)
    except Exception as error:
        raise NeuroCartoError(
            f"the model failed on a probe batch of shape {list(batch.shape)}: {type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''} — check that --image-size suits this model (many "
            "need at least 32 or 64 pixels; transformers often a fixed size such as 224) and that its transform "
            "gives the channels it expects") from error
    finally:
        for handle in handles:
            handle.remove()
    return calls


def _fits_grid(height: int, width: int, image: tuple[int, int]) -> bool:
    """Could a height × width map cover an image of this size with equal strides (up to rounding)?"""
    if height < 1 or width < 1 or height > image[0] or width > image[1]:
        return False
    stride_y, stride_x = image[0] / height, image[1] / width
    return abs(stride_y - stride_x) <= 0.3 * max(stride_y, stride_x)


def map_geometry(shape: tuple, image: tuple[int, int]) -> dict | None:
    """Layout, channels and grid of an output of this shape (batch first) for an input image (height, width)."""
    if len(shape) == 4 and shape[0] == 2:
        _, a, b, c = shape
        if _fits_grid(b, c, image):
            return {"layout": "nchw", "channels": a, "height": b, "width": c}
        if _fits_grid(a, b, image):
            return {"layout": "nhwc", "channels": c, "height": a, "width": b}
    if len(shape) == 3 and shape[0] == 2:
        _, tokens, channels = shape
        for extra in range(0, min(MAX_EXTRA_TOKENS, tokens - 1) + 1):
            count = tokens - extra
            height = max(1, round(math.sqrt(count * image[0] / image[1])))
            if count % height == 0 and _fits_grid(height, count // height, image):
                return {"layout": "tokens", "channels": channels, "height": height, "width": count // height,
                        "extra_tokens": extra}
    return None


def why_not_a_map(call: ModuleCall) -> str:
    """What a call outputs, for a message about why it cannot be a layer."""
    if not call.outputs:
        return "does not output a tensor"
    shapes = ", ".join("(batch, " + ", ".join(map(str, shape[1:])) + ")" for _, shape in call.outputs)
    return (f"outputs shape {shapes}, which is neither a feature map (batch, channels, height, width) nor "
            "tokens on the image's patch grid (batch, tokens, channels)")


def layer_of_call(call: ModuleCall, image: tuple[int, int]) -> Layer | None:
    """The layer a module call gives: its first output tensor that reads as maps, if any."""
    for item, shape in call.outputs:
        geometry = map_geometry(shape, image)
        if geometry is not None:
            return Layer(call.name, module="" if call.name == call.module else call.module, call=call.call,
                         item=item, **geometry)
    return None
