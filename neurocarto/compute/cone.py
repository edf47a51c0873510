"""Gradient × activation through any block, one receptive field at a time: the feed's gradient cone.

A downstream neuron d's edge from upstream channel u is Σ_xy a_u · ∂a_d(p*)/∂a_u at d's spatial maximum p*,
so it depends only on the ops between the two layers inside p*'s receptive field. `TracedModel` traces the
model once (torch.fx) and runs it recording the values the cones read; a `Cone` holds, for one feed, the
nodes on paths from the upstream layer's output to the downstream layer's and the window each contributes:
the window widens backwards through every convolution and pooling by its kernel, stride and padding, and
stays the same through every other node (pointwise ops, per-position channel mixing, additions). Many
(image, channel, position) seeds then travel back together, each carrying only its windows: a convolution
passes its gradient on by its transpose, every other node is differentiated on its window's recorded values.

Exact wherever the ops between the layers are local. A node that reduces the map to one position (the
squeeze of a squeeze-excitation block) is global context: its value is held at the recorded one, so its
gradient is left out and the cone is `exact=False`; the graph stage measures that error against autograd.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import fx, nn
from torch.nn import functional as F
from torch.nn.grad import conv2d_input

from neurocarto.neurons import Layer

MAX_WINDOW_ELEMENTS = 2 ** 23   # seeds per chunk: the largest window of a chunk stays under this many floats
PAD_BELOW = -1e20               # stands for a max-pool's −∞ padding (finite: no 0 × ∞ in later derivatives)


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def _scope(layer: Layer) -> str:
    """A layer's key in torch.fx's `nn_module_stack` (a module's n-th call is `name@n`)."""
    return layer.module_name if layer.call == 0 else f"{layer.module_name}@{layer.call}"


class _Recorder(fx.Interpreter):
    """Runs a traced model keeping the values of chosen nodes. In-place ops run out of place (modules with
    `inplace` set have it cleared for the run), so a kept value is never changed after it was made."""

    def __init__(self, module: fx.GraphModule, keep: set[str]):
        super().__init__(module)
        self.keep, self.values = keep, {}

    def run(self, *args):
        in_place = [m for m in self.module.modules() if getattr(m, "inplace", False) is True]
        for m in in_place:
            m.inplace = False
        try:
            return super().run(*args)
        finally:
            for m in in_place:
                m.inplace = True

    def run_node(self, node: fx.Node):
        if node.op == "call_function" and node.kwargs.get("inplace", False):
            args, kwargs = self.fetch_args_kwargs_from_env(node)
            result = node.target(*args, **{**kwargs, "inplace": False})
        elif node.op == "call_method" and node.target.endswith("_") and not node.target.startswith("_"):
            args, kwargs = self.fetch_args_kwargs_from_env(node)
            result = getattr(args[0].clone(), node.target)(*args[1:], **kwargs)
        else:
            result = super().run_node(node)
        if node.name in self.keep:
            self.values[node.name] = result
        return result


class TracedModel:
    """The model traced by torch.fx, the shape of every node's value, and the node of each layer it can follow.

    A layer's node is the last node of its module's scope, kept where its value on `example` equals the
    layer's `captured` output (nchw layers of one tensor only). Raises whatever torch.fx raises on a model it
    cannot trace.
    """

    def __init__(self, model: nn.Module, layers: list[Layer], example: torch.Tensor,
                 captured: dict[int, torch.Tensor]):
        self.module = fx.symbolic_trace(model)
        self.order = {node: i for i, node in enumerate(self.module.graph.nodes)}
        last: dict[str, fx.Node] = {}
        for node in self.module.graph.nodes:
            if node.op != "get_attr":
                for scope in node.meta.get("nn_module_stack", {}):
                    last[scope] = node
        values = self.run(example, {node.name for node in self.module.graph.nodes})
        self.shapes = {name: tuple(value.shape) for name, value in values.items() if torch.is_tensor(value)}
        self.nodes = {}
        for i, layer in enumerate(layers):
            node = last.get(_scope(layer)) if layer.layout == "nchw" and layer.item is None else None
            value = None if node is None else values.get(node.name)
            if (i in captured and torch.is_tensor(value) and value.shape == captured[i].shape
                    and torch.allclose(value, captured[i], rtol=1e-4, atol=1e-5)):
                self.nodes[i] = node

    def run(self, images: torch.Tensor, keep: set[str]) -> dict[str, torch.Tensor]:
        """The values of the nodes named in `keep` on one forward pass."""
        recorder = _Recorder(self.module, keep)
        recorder.run(images)
        return recorder.values

    def cone(self, upstream: int, downstream: int) -> "Cone | None":
        """The cone of the feed between two layers (indices into the run's layers); None where it cannot follow."""
        if upstream not in self.nodes or downstream not in self.nodes:
            return None
        try:
            return Cone(self, self.nodes[upstream], self.nodes[downstream])
        except Unsupported:
            return None


class Unsupported(Exception):
    """An op the cone cannot follow."""


SPATIAL_FUNCTIONS = {F.conv2d, torch.conv2d, F.conv_transpose2d, F.max_pool2d, F.avg_pool2d, F.interpolate,
                     F.pad, torch.roll, torch.flip, F.unfold, F.fold, F.pixel_shuffle, F.grid_sample}


@dataclass
class _Step:
    """One node on the cone's paths: how it hands its gradient back, and the window it needs of its inputs."""

    node: fx.Node
    kind: str                       # "conv", "pool", "norm" (an inference batch norm: a per-channel scale) or "local"
    inputs: list[fx.Node]           # its inputs on the paths
    stride: tuple[int, int] = (1, 1)
    reach: tuple[int, int] = (1, 1)     # the kernel's extent, dilation included
    padding: tuple[int, int] = (0, 0)


def _spatial(shape) -> tuple[int, int] | None:
    return tuple(shape[2:]) if shape is not None and len(shape) == 4 else None


def _is_max_pool(module: nn.Module) -> bool:
    return isinstance(module, nn.MaxPool2d)


class Cone:
    """One feed's cone: the nodes from the downstream node back to the upstream node, and their windows.

    A window is a rectangle of a node's map per seed: its top-left corner is scale · p* + offset (p* the seed's
    position on the downstream map), its size the same for every seed."""

    def __init__(self, traced: TracedModel, upstream: fx.Node, downstream: fx.Node):
        self.traced, self.upstream, self.downstream = traced, upstream, downstream
        self._scales: dict = {}
        shapes = traced.shapes
        grid = _spatial(shapes.get(upstream.name))
        below = _reachable(upstream, lambda n: n.users)

        def global_context(node: fx.Node) -> bool:
            shape = shapes.get(node.name)
            return shape is not None and len(shape) <= 4 and _spatial(shape) in (None, (1, 1)) and grid != (1, 1)

        self.held = {n for n in below if global_context(n)}
        if downstream in self.held or downstream not in below:
            raise Unsupported("the downstream map is global or does not depend on the upstream one")
        on_paths = _reachable(downstream, lambda n: [m for m in n.all_input_nodes if m not in self.held]) & below
        carrying = on_paths | {upstream}
        self.steps = [_step(traced, node, carrying, self.held)
                      for node in sorted(on_paths - {upstream}, key=traced.order.__getitem__, reverse=True)]
        self.windows = {downstream: ((1, 1), (0, 0), (1, 1))}
        self.requests: dict = {}        # (step node, input node) → (offset, size) of the input's map
        wanted: dict = {}
        for step in self.steps:
            if step.node not in self.windows:
                self.windows[step.node] = _union(wanted.pop(step.node, []), step.node.name)
            scale, offset, size = self.windows[step.node]
            scale = (scale[0] * step.stride[0], scale[1] * step.stride[1])
            offset = tuple(o * s - p for o, s, p in zip(offset, step.stride, step.padding))
            size = tuple((n - 1) * s + r for n, s, r in zip(size, step.stride, step.reach))
            for source in step.inputs:
                self.requests[step.node, source] = (offset, size)
                wanted.setdefault(source, []).append((scale, offset, size))
        self.windows[upstream] = _union(wanted.pop(upstream, []), upstream.name)
        self.exact = not any(n in self.held for step in self.steps for n in step.node.all_input_nodes)

    def window_share(self) -> float:
        """The elements of one seed's windows over those of the whole maps they crop (channels × area summed
        over the cone's nodes): the cone's work per seed as a share of one full backward pass's."""
        shapes = self.traced.shapes
        windows = sum(shapes[n.name][1] * size[0] * size[1] for n, (_, _, size) in self.windows.items())
        return windows / sum(shapes[n.name][1] * shapes[n.name][2] * shapes[n.name][3] for n in self.windows)

    def needs(self) -> set[str]:
        """The node values a forward pass must keep for this cone."""
        names = {self.upstream.name, self.downstream.name}
        for step in self.steps:
            if step.kind not in ("conv", "norm"):
                names |= {n.name for n in step.node.all_input_nodes}
        return names

    def sums(self, values: dict[str, torch.Tensor], chosen: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
        """Σ over the batch of gradient × activation: (chosen downstream channels, `sources` upstream channels).

        Each chosen channel's maximum over the map seeds its cone, tied maxima sharing the gradient evenly
        as torch's amax does (the ties of a map that is zero everywhere pass no gradient through the models'
        activations, and are skipped)."""
        maps = values[self.downstream.name][:, chosen].detach()
        flat = maps.flatten(2)
        peak = flat.amax(dim=2, keepdim=True)
        ties = flat == peak
        counts = ties.sum(dim=2, keepdim=True)
        ties &= ~((peak == 0) & (counts > 1))
        image, row, position = torch.nonzero(ties, as_tuple=True)
        weight = 1.0 / counts[image, row, 0].to(maps.dtype)
        width = maps.shape[3]
        y, x = position // width, position % width
        total = torch.zeros((len(chosen), len(sources)), dtype=torch.float64, device=maps.device)
        largest = max(self.traced.shapes[n.name][1] * size[0] * size[1] for n, (_, _, size) in self.windows.items())
        chunk = max(1, MAX_WINDOW_ELEMENTS // largest)
        for start in range(0, len(image), chunk):
            part = slice(start, start + chunk)
            seeds = (image[part], chosen[row[part]], y[part], x[part], weight[part])
            total.index_add_(0, row[part], self._seed_sums(values, seeds, sources).double())
        return total

    def _seed_sums(self, values, seeds, sources: torch.Tensor) -> torch.Tensor:
        image, channel, y, x, weight = seeds
        seed = torch.zeros((len(image), self.traced.shapes[self.downstream.name][1], 1, 1), dtype=weight.dtype,
                           device=weight.device)
        seed[torch.arange(len(image), device=image.device), channel, 0, 0] = weight
        grads = {self.downstream: seed}
        for step in self.steps:
            grad = grads.pop(step.node) * self._grid(step.node, y, x)[2]
            for source, handed in zip(step.inputs, self._hand_back(step, grad, values, seeds, sources)):
                if source is self.upstream and handed.shape[1] != len(sources):
                    handed = handed[:, sources]
                self._accumulate(grads, step.node, source, handed)
        grad = grads[self.upstream] * self._grid(self.upstream, y, x)[2]
        activation = self._crop(values[self.upstream.name][:, sources], self.upstream, image, y, x)
        return (grad * activation).sum(dim=(2, 3))

    def _corner(self, node, y, x, offset=None):
        scale, base, _ = self.windows[node]
        offset = base if offset is None else offset
        return scale[0] * y + offset[0], scale[1] * x + offset[1]

    def _grid(self, node, y, x, offset=None, size=None):
        """Per seed, the rows and columns of a window of the node's map, and whether each lies on the map."""
        size = self.windows[node][2] if size is None else size
        height, width = self.traced.shapes[node.name][2:]
        top, left = self._corner(node, y, x, offset)
        rows = top[:, None] + torch.arange(size[0], device=y.device)
        cols = left[:, None] + torch.arange(size[1], device=y.device)
        inside = ((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[:, None, :]
        return rows.clamp(0, height - 1), cols.clamp(0, width - 1), inside[:, None]

    def _crop(self, value, node, image, y, x, pad: float = 0.0, offset=None, size=None) -> torch.Tensor:
        """Each seed's window of a recorded (batch, channels, height, width) value, `pad` off the map."""
        rows, cols, inside = self._grid(node, y, x, offset, size)
        crop = value.detach()[image[:, None, None], :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
        return crop.masked_fill(~inside, pad)

    def _hand_back(self, step: _Step, grad, values, seeds, sources) -> list[torch.Tensor]:
        """The gradient each of the step's path inputs receives, over the window the step needs of it."""
        image, _, y, x, _ = seeds
        node = step.node
        module = self.traced.module.get_submodule(node.target) if node.op == "call_module" else None
        if step.kind == "conv":
            (source,) = step.inputs
            weight = module.weight[:, sources] if source is self.upstream and module.groups == 1 else module.weight
            size = self.requests[node, source][1]
            return [conv2d_input((len(grad), weight.shape[1] * module.groups) + tuple(size), weight, grad,
                                 module.stride, 0, module.dilation, module.groups)]
        if step.kind == "norm":
            if node not in self._scales:
                self._scales[node] = _norm_scale(self.traced.module, node)[None, :, None, None]
            return [grad * self._scales[node]]
        crops = {}

        def argument(arg):
            if not isinstance(arg, fx.Node):
                return arg
            value = values[arg.name]
            if arg.op == "get_attr" or not torch.is_tensor(value):
                return value
            if arg in step.inputs:
                offset, size = self.requests[node, arg]
                pad = PAD_BELOW if step.kind == "pool" and _is_max_pool(module) else 0.0
                crops[arg] = self._crop(value, arg, image, y, x, pad, offset, size).requires_grad_(True)
                return crops[arg].clone()
            if arg in self.held or _spatial(value.shape) in (None, (1, 1)):
                return value.detach()[image]
            return self._crop(value, node, image, y, x)

        with torch.enable_grad():
            args = fx.node.map_arg(node.args, argument)
            kwargs = fx.node.map_arg(node.kwargs, argument)
            if step.kind == "pool":
                output = (F.max_pool2d(args[0], module.kernel_size, module.stride, 0, module.dilation)
                          if _is_max_pool(module) else F.avg_pool2d(args[0], module.kernel_size, module.stride))
            elif module is not None:
                output = module(*args, **kwargs)
            elif node.op == "call_method":
                output = getattr(args[0], node.target)(*args[1:], **kwargs)
            else:
                output = node.target(*args, **kwargs)
            inputs = [crops[source] for source in step.inputs]
            handed = torch.autograd.grad(output, inputs, grad, allow_unused=True)
        return [torch.zeros_like(c) if g is None else g for c, g in zip(inputs, handed)]

    def _accumulate(self, grads, node, source, handed) -> None:
        """Add a gradient over the window `node` needs of `source` into source's own (wider) window."""
        _, base, size = self.windows[source]
        offset, part = self.requests[node, source]
        top, left = offset[0] - base[0], offset[1] - base[1]
        if source not in grads:
            grads[source] = handed.new_zeros((len(handed), handed.shape[1]) + tuple(size))
        grads[source][:, :, top:top + part[0], left:left + part[1]] += handed


def _norm_scale(module: fx.GraphModule, node: fx.Node) -> torch.Tensor:
    """An inference batch norm's per-channel scale: weight / √(running variance + ε)."""
    if node.op == "call_module":
        norm = module.get_submodule(node.target)
        variance, weight, eps = norm.running_var, norm.weight, norm.eps
    else:
        fetch = lambda a: None if a is None else _attribute(module, a.target)  # noqa: E731
        variance, weight = fetch(node.args[2]), fetch(_argument(node, 3, "weight", None))
        eps = _argument(node, 7, "eps", 1e-5)
    scale = variance.add(eps).rsqrt()
    return scale if weight is None else scale * weight


def _attribute(module: nn.Module, target: str) -> torch.Tensor:
    owner, _, name = target.rpartition(".")
    return getattr(module.get_submodule(owner) if owner else module, name)


def _reachable(start: fx.Node, neighbours) -> set:
    seen, todo = {start}, [start]
    while todo:
        for other in neighbours(todo.pop()):
            if other not in seen:
                seen.add(other)
                todo.append(other)
    return seen


def _union(requests: list, name: str):
    """One window covering every window its consumers need of a node (all at one resolution)."""
    if not requests or len({scale for scale, _, _ in requests}) != 1:
        raise Unsupported(f"node {name} is read at {'no' if not requests else 'several'} resolution(s)")
    lo = tuple(min(offset[a] for _, offset, _ in requests) for a in range(2))
    hi = tuple(max(offset[a] + size[a] for _, offset, size in requests) for a in range(2))
    return requests[0][0], lo, (hi[0] - lo[0], hi[1] - lo[1])


def _step(traced: TracedModel, node: fx.Node, carrying: set, held: set) -> _Step:
    """How a node on the paths hands back its gradient; `Unsupported` for an op the cone cannot follow."""
    shapes = traced.shapes
    inputs = [n for n in node.all_input_nodes if n in carrying]
    grid = _spatial(shapes.get(node.name))
    if node.op == "call_module":
        module = traced.module.get_submodule(node.target)
        if isinstance(module, nn.Conv2d):
            if module.padding_mode != "zeros" or isinstance(module.padding, str) or len(node.all_input_nodes) != 1:
                raise Unsupported(f"convolution {node.target}")
            return _step_geometry(node, "conv", inputs, module.stride, module.kernel_size, module.padding,
                                  module.dilation, shapes)
        if isinstance(module, nn.BatchNorm2d) and not module.training and module.track_running_stats:
            return _Step(node, "norm", inputs)
        if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
            padded = _pair(module.padding) != (0, 0)
            if (isinstance(module, nn.AvgPool2d) and (module.divisor_override or (padded and not module.count_include_pad))) \
                    or len(node.all_input_nodes) != 1:
                raise Unsupported(f"pooling {node.target}")
            dilation = module.dilation if isinstance(module, nn.MaxPool2d) else 1
            return _step_geometry(node, "pool", inputs, module.stride, module.kernel_size, module.padding,
                                  dilation, shapes)
    if node.op == "call_function" and node.target is F.batch_norm and len(node.args) >= 3 \
            and not _argument(node, 5, "training", False) and all(
                isinstance(a, fx.Node) and a.op == "get_attr" for a in node.args[1:3]) \
            and getattr(_argument(node, 3, "weight", None), "op", "get_attr") == "get_attr":
        return _Step(node, "norm", inputs[:1])
    if node.op == "call_function" and node.target in SPATIAL_FUNCTIONS:
        raise Unsupported(f"{node.name} mixes positions")
    for other in node.all_input_nodes:
        if other.op == "get_attr" or other in held or other.name not in shapes:
            continue
        if _spatial(shapes[other.name]) not in (grid, (1, 1)):
            raise Unsupported(f"{node.name} changes the map's size")
    if grid is None:
        raise Unsupported(f"{node.name} is not a map")
    return _Step(node, "local", inputs)


def _argument(node: fx.Node, position: int, name: str, default):
    return node.args[position] if len(node.args) > position else node.kwargs.get(name, default)


def _step_geometry(node, kind, inputs, stride, kernel, padding, dilation, shapes) -> _Step:
    stride, kernel, padding, dilation = map(_pair, (stride, kernel, padding, dilation))
    (source,) = inputs
    size_in, size_out = _spatial(shapes[source.name]), _spatial(shapes[node.name])
    reach = tuple(d * (k - 1) + 1 for d, k in zip(dilation, kernel))
    if size_out != tuple((n + 2 * p - r) // s + 1 for n, p, r, s in zip(size_in, padding, reach, stride)):
        raise Unsupported(f"{node.name}: its output size is not the floor of its kernel's steps")
    return _Step(node, kind, inputs, stride, reach, padding)
