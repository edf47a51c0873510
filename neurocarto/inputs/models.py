"""Models and layers: what `--model`, `--weights` and `--layers` name, and `layer:channel` ids.

A model spec is one of
- `fashion-inception` (the default) or `parts-inception` (for the generated Parts dataset), the
  package's zoo, weights committed,
- a torchvision classification model name (`googlenet`, `resnet50`, …) with `--weights`
  DEFAULT (torchvision's pretrained weights, from its local cache), a state-dict PATH, or
  none (random initialisation, seeded),
- `path/to/file.py:factory`, where `factory()` returns an `nn.Module`, or a tuple/dict adding
  its preprocessing transform and class names.
"""
from __future__ import annotations

import hashlib
import importlib.util
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from neurocarto.errors import NeuroCartoError, suggest
from neurocarto.inputs.capture import ModuleCall, call_name, layer_of_call, record_calls, why_not_a_map
from neurocarto.neurons import Layer
from neurocarto.zoo import fashion_inception, parts

DEFAULT_MODEL = "fashion-inception"
GOOGLENET_MIXED = ["inception3a", "inception3b", "inception4a", "inception4b", "inception4c",
                   "inception4d", "inception4e", "inception5a", "inception5b"]
# The original's 25 blocks: 9 mixed layers + the 1×1 bottlenecks feeding the 3×3 and 5×5
# branches of every mixed layer but the first (torchvision: branch2.0 and branch3.0).
GOOGLENET_LAYERS = [GOOGLENET_MIXED[0]] + [
    name for mixed in GOOGLENET_MIXED[1:] for name in (f"{mixed}.branch2.0", f"{mixed}.branch3.0", mixed)]
# Layers that only reshape or rescale the block before them: a block's output is taken after them.
_FOLLOWERS = (nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SiLU, nn.GELU,
              nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.GroupNorm, nn.LayerNorm,
              nn.InstanceNorm2d, nn.LocalResponseNorm, nn.Identity)
_SKIPPED = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Dropout,
            nn.Dropout2d, nn.Flatten, nn.Linear)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
PARTS_MEAN, PARTS_STD = 0.5, 0.25


@dataclass
class LoadedModel:
    """A model ready for pass 1, with what the run records about it."""

    spec: str
    module: nn.Module
    transform: Callable          # PIL image → CHW float tensor
    class_names: list[str] | None
    default_layers: list[str]
    weights: str                 # what the weights were: a path, DEFAULT, the zoo file or "random"
    weights_checksum: str
    extra: dict = field(default_factory=dict)


def _file_checksum(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def _load_state_dict(module: nn.Module, path: str) -> str:
    """Apply a state-dict file to module; returns its checksum. Clear message when it won't fit."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise NeuroCartoError(f"--weights {path}: no such file (give a state-dict file saved with "
                              "torch.save, DEFAULT for torchvision's pretrained weights, or nothing)")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:
        raise NeuroCartoError(f"--weights {path} is not a readable PyTorch state dict: {error}") from error
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise NeuroCartoError(f"--weights {path} holds a {type(state).__name__}, not a state dict")
    try:
        module.load_state_dict(state)
    except RuntimeError as error:
        first_lines = "; ".join(str(error).splitlines()[:3])
        raise NeuroCartoError(f"--weights {path} does not fit this model: {first_lines}") from error
    return _file_checksum(file)


def _grey_transform(image):
    """torchvision's to_tensor and normalize of a grey image, written out: the default model then loads without
    importing torchvision (2 s of a concept test in the app)."""
    pixels = torch.from_numpy(np.array(image.convert("L"), dtype=np.uint8)).to(torch.float32).div(255)[None]
    return pixels.sub(fashion_inception.MEAN).div(fashion_inception.STD)


def _to_rgb(image):
    return image.convert("RGB")


def _imagenet_transform(size: int | None):
    """ImageNet preprocessing: resize to 8/7 of the side, centre crop, normalise."""
    from torchvision import transforms as T
    size = size or 224
    return T.Compose([T.Lambda(_to_rgb), T.Resize(size * 8 // 7), T.CenterCrop(size),
                      T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


@dataclass(frozen=True)
class ZooModel:
    """A model of the package's zoo: how to build it, feed it and train its committed weights."""

    build: Callable[[], nn.Module]
    transform: Callable
    class_names: tuple[str, ...]
    layers: tuple[str, ...]
    weights_file: str
    trainer: str                  # the module that trains it

    @property
    def weights_path(self) -> Path:
        """Where the committed weights are, in the zoo's folder."""
        return Path(fashion_inception.__file__).parent / "weights" / self.weights_file


def _parts_transform(image):
    from torchvision.transforms import functional as TF
    return TF.normalize(TF.to_tensor(image.convert("RGB")), [PARTS_MEAN] * 3, [PARTS_STD] * 3)


ZOO = {
    DEFAULT_MODEL: ZooModel(fashion_inception.FashionInception, _grey_transform, tuple(fashion_inception.CLASS_NAMES),
                            tuple(fashion_inception.DEFAULT_LAYERS), "fashion_inception.pt",
                            "neurocarto.zoo.train_fashion"),
    "parts-inception": ZooModel(lambda: fashion_inception.FashionInception(len(parts.CLASS_NAMES), 3, 2),
                                _parts_transform, tuple(parts.CLASS_NAMES), tuple(fashion_inception.DEFAULT_LAYERS),
                                "parts_inception.pt", "neurocarto.zoo.train_parts"),
}


def _load_zoo(spec: str, weights: str | None) -> LoadedModel:
    zoo = ZOO[spec]
    module = zoo.build()
    path = weights or str(zoo.weights_path)
    if not weights and not Path(path).is_file():
        raise NeuroCartoError(f"the weights of {spec} are missing ({path}): train them with "
                              f"`python -m {zoo.trainer}`")
    checksum = _load_state_dict(module, path)
    return LoadedModel(spec, module, zoo.transform, list(zoo.class_names), list(zoo.layers), weights or "zoo", checksum)


def torchvision_classifiers() -> list[str]:
    import torchvision
    return sorted(torchvision.models.list_models(module=torchvision.models))


def _size_arguments(name: str, image_size: int) -> dict:
    """Constructor arguments of the models whose architecture is built for one input size (random weights)."""
    if name.startswith("vit_"):
        return {"image_size": image_size}
    if name.startswith("maxvit"):
        return {"input_size": (image_size, image_size)}
    return {}


def _load_torchvision(name: str, weights: str | None, seed: int, image_size: int | None) -> LoadedModel:
    import torchvision
    valid = torchvision_classifiers()
    if name not in valid:
        raise NeuroCartoError(
            f"unknown model {name!r}: {suggest(name, list(ZOO) + valid)}; or path/to/file.py:factory")
    kwargs = {"aux_logits": False, "init_weights": True} if name in ("googlenet", "inception_v3") else {}
    enum = torchvision.models.get_model_weights(name)
    class_names, transform = None, _imagenet_transform(image_size)
    if weights and weights.upper() == "DEFAULT":
        chosen = enum.DEFAULT
        try:
            module = torchvision.models.get_model(name, weights=chosen, **{k: v for k, v in kwargs.items() if k != "init_weights"})
        except Exception as error:
            raise NeuroCartoError(
                f"--weights DEFAULT for {name}: torchvision could not load {chosen} ({error}); it needs "
                "the file in torch's hub cache (~/.cache/torch/hub/checkpoints) or network access, "
                "or give --weights PATH") from error
        return LoadedModel(name, module, chosen.transforms() if image_size is None else transform, list(chosen.meta.get("categories") or []) or None,
                           GOOGLENET_LAYERS if name == "googlenet" else [], "DEFAULT", chosen.url.rsplit("/", 1)[-1])
    torch.manual_seed(seed)
    if image_size and not weights:
        kwargs.update(_size_arguments(name, image_size))
    try:
        module = torchvision.models.get_model(name, weights=None, **kwargs)
    except (ValueError, AssertionError, RuntimeError) as error:
        raise NeuroCartoError(f"torchvision cannot build {name} for --image-size {image_size}: "
                              f"{str(error).splitlines()[0]} — choose another --image-size (224 always works for "
                              "torchvision's classifiers)") from error
    if weights:
        checksum = _load_state_dict(module, weights)
        class_names = list(enum.DEFAULT.meta.get("categories") or []) or None
    else:
        checksum = f"random-init-seed{seed}"
    return LoadedModel(name, module, transform, class_names,
                       GOOGLENET_LAYERS if name == "googlenet" else [], weights or "random", checksum)


def _load_factory(spec: str, weights: str | None, image_size: int | None) -> LoadedModel:
    file_name, _, factory_name = spec.rpartition(":")
    path = Path(file_name).expanduser()
    if not path.is_file():
        raise NeuroCartoError(f"--model {spec}: {file_name} is not a file (expected path/to/file.py:factory)")
    module_spec = importlib.util.spec_from_file_location(f"neurocarto_user_{path.stem}", path)
    user_module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(user_module)
    except Exception as error:
        raise NeuroCartoError(f"--model {spec}: importing {path} failed: {type(error).__name__}: {error}") from error
    factory = getattr(user_module, factory_name, None)
    if not callable(factory):
        functions = [n for n, v in vars(user_module).items() if inspect.isfunction(v) and v.__module__ == user_module.__name__]
        raise NeuroCartoError(f"--model {spec}: {path} has no function {factory_name!r}; {suggest(factory_name, functions)}")
    made = factory()
    transform, class_names = None, None
    if isinstance(made, dict):
        made, transform, class_names = made.get("model"), made.get("transform"), made.get("class_names")
    elif isinstance(made, tuple):
        made, transform, class_names = (tuple(made) + (None, None))[:3]
    if not isinstance(made, nn.Module):
        raise NeuroCartoError(f"--model {spec}: {factory_name}() returned {type(made).__name__}, expected an "
                              "nn.Module, (module, transform, class_names) or {'model': …, 'transform': …}")
    checksum = _load_state_dict(made, weights) if weights else _file_checksum(path)
    return LoadedModel(spec, made, transform or _imagenet_transform(image_size), list(class_names) if class_names else None,
                       [], weights or "factory", checksum)


def module_checksum(module: nn.Module) -> str:
    """A checksum of a module's class, parameters and buffers: runs of changed weights get other keys."""
    digest = hashlib.sha256(type(module).__qualname__.encode())
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes() if tensor.dtype != torch.bfloat16
                      else tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def from_module(module: nn.Module, transform: Callable | None = None, class_names: list[str] | None = None,
                image_size: int | None = None) -> LoadedModel:
    """A model object made in Python (not named by a spec), in eval mode; ImageNet preprocessing unless given."""
    if not isinstance(module, nn.Module):
        raise NeuroCartoError(f"model: expected a torch.nn.Module, a torchvision name or path/to/file.py:factory, "
                              f"not a {type(module).__name__}")
    if transform is not None and not callable(transform):
        raise NeuroCartoError(f"transform: expected a callable (PIL image → CHW tensor), not a {type(transform).__name__}")
    module.eval()
    return LoadedModel(f"python:{type(module).__name__}", module, transform or _imagenet_transform(image_size),
                       list(class_names) if class_names else None, [], "in memory", module_checksum(module))


def load_model(spec: str | None, weights: str | None = None, seed: int = 0,
               image_size: int | None = None) -> LoadedModel:
    """Build the model a spec names, in eval mode; NeuroCartoError with valid names otherwise."""
    spec = spec or DEFAULT_MODEL
    if spec in ZOO:
        loaded = _load_zoo(spec, weights)
    elif ":" in spec and spec.rpartition(":")[0].endswith(".py"):
        loaded = _load_factory(spec, weights, image_size)
    else:
        loaded = _load_torchvision(spec, weights, seed, image_size)
    loaded.module.eval()
    return loaded


def _is_stack(module: nn.Module) -> bool:
    """A Sequential/ModuleList of at least 4 blocks of one type (a transformer's or a stage's layers)."""
    children = list(module.children())
    return (isinstance(module, (nn.Sequential, nn.ModuleList)) and len(children) >= 4
            and len({type(child) for child in children}) == 1 and all(any(True for _ in c.children()) for c in children))


def candidate_blocks(model: nn.Module, calls: list[ModuleCall]) -> list[str]:
    """The default layers of a model without a layer map: its top-level blocks, as layer names.

    Blocks are the top-level children, with plain nn.Sequential containers and ModuleLists opened, and
    a top-level child that holds a stack of blocks (e.g. a ViT's encoder) opened too; pooling, dropout
    and linear layers are not blocks. They are taken as the forward pass calls them, one layer per
    call: a norm or activation called right after a block of the same container, with the same output
    shape, replaces it (conv → norm → activation is one block, read after its activation), so a module
    that forward() reuses, such as a shared activation, joins each block it follows.
    """
    modules: dict[str, nn.Module] = {}

    def visit(prefix: str, module: nn.Module) -> None:
        for name, child in module.named_children():
            full = f"{prefix}{name}"
            if type(child) is nn.Sequential or isinstance(child, nn.ModuleList) or (
                    not prefix and any(_is_stack(grandchild) for grandchild in child.children())):
                visit(f"{full}.", child)
            elif not isinstance(child, _SKIPPED):
                modules[full] = child

    visit("", model)
    blocks: list[ModuleCall] = []
    for call in calls:
        module = modules.get(call.module)
        if module is None:
            continue
        if isinstance(module, _FOLLOWERS):
            previous = blocks[-1] if blocks else None
            if (previous is not None and previous.module.rpartition(".")[0] == call.module.rpartition(".")[0]
                    and previous.outputs[:1] == call.outputs[:1]):
                blocks[-1] = call
        else:
            blocks.append(call)
    return [call.name for call in blocks]


def _fx_node_names(model: nn.Module) -> set[str]:
    """Names torchvision's FX feature extraction gives the model's operations (empty if it cannot trace it)."""
    try:
        from torchvision.models.feature_extraction import get_graph_node_names
        train_nodes, eval_nodes = get_graph_node_names(model)
    except Exception:
        return set()
    finally:
        model.eval()
    return set(train_nodes) | set(eval_nodes)


def _explicit_layer(loaded: LoadedModel, name: str, calls: dict[str, ModuleCall], image: tuple[int, int],
                    valid: list[str], notes: list[str]) -> Layer:
    call = calls.get(name)
    if call is not None:
        layer = layer_of_call(call, image)
        if layer is None:
            raise NeuroCartoError(f"layer {name!r} {why_not_a_map(call)}: choose a block with spatial output; "
                                  f"{suggest(name, valid)}")
        repeats = sum(1 for other in calls.values() if other.module == call.module)
        if repeats > 1 and call.call == 0:
            others = ", ".join(call_name(call.module, c) for c in range(1, repeats))
            notes.append(f"{name} is called {repeats} times per forward pass; its first call is used ({others} "
                         "name the others)")
        return layer
    modules = dict(loaded.module.named_modules())
    if name in modules and name:
        raise NeuroCartoError(f"layer {name!r} is never called in the forward pass: choose one that is; "
                              f"{suggest(name, valid)}")
    if name in _fx_node_names(loaded.module):
        owner = name.rpartition(".")[0]
        raise NeuroCartoError(
            f"layer {name!r} is an operation inside a forward() (an FX graph node), not a module: NeuroCarto reads "
            f"module outputs; name the module that holds it{f' ({owner})' if owner in modules else ''} or one of "
            f"the model's module calls: {suggest(name, valid)}")
    raise NeuroCartoError(f"unknown layer {name!r} in {loaded.spec}: {suggest(name, valid)}")


def resolve_layers(loaded: LoadedModel, requested: list[str] | None, example: torch.Tensor,
                   notes: list[str] | None = None) -> list[Layer]:
    """The layers of a run, with their shapes and layouts; clear messages for unknown or map-less layers.

    Requested layers keep their order; a default map is ordered as the forward pass reaches it, and what it
    leaves out (no maps, never called) goes to `notes`.
    """
    notes = [] if notes is None else notes
    image = (int(example.shape[-2]), int(example.shape[-1]))
    calls = record_calls(loaded.module, example)
    by_name = {call.name: call for call in calls}
    valid = [call.name for call in calls if layer_of_call(call, image) is not None]
    if requested:
        if len(set(requested)) != len(requested):
            raise NeuroCartoError(f"--layers names a layer twice: "
                                  f"{', '.join(sorted({n for n in requested if requested.count(n) > 1}))}")
        return [_explicit_layer(loaded, name, by_name, image, valid, notes) for name in requested]
    if loaded.default_layers:
        occurrences: dict[str, int] = {}
        names = []
        for module in loaded.default_layers:
            names.append(call_name(module, occurrences.get(module, 0)))
            occurrences[module] = occurrences.get(module, 0) + 1
    else:
        names = candidate_blocks(loaded.module, calls)
    layers, left_out = [], []
    for name in names:
        layer = layer_of_call(by_name[name], image) if name in by_name else None
        if layer is None:
            left_out.append(f"{name} ({why_not_a_map(by_name[name]) if name in by_name else 'never called'})")
        else:
            layers.append(layer)
    if not layers:
        raise NeuroCartoError(
            f"{loaded.spec} has no block whose output reads as feature maps or patch tokens (its blocks: "
            f"{'; '.join(left_out) or 'none: its forward uses functional calls only'}); name layers with --layers "
            f"(module calls with maps: {', '.join(valid[:12]) or 'none'}), or wrap the operations to study in modules")
    if left_out:
        notes.append(f"default layer map of {loaded.spec}: {len(layers)} layers; left out: {'; '.join(left_out)}")
    return layers
