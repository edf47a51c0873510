"""Runs the stages of a run in order, with validation first, progress, timing and resume.

`prepare` checks everything that can be checked cheaply (model, weights, data, layers,
parameters) before any long work; `precompute` then runs each stage whose inputs changed,
records its status and timing in the manifest, and leaves other runs untouched.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from .config import ExecutionConfig, RunConfig, run_key
from .data import dataset_summary, open_dataset, subsample
from .errors import NeuroCartoError
from .extract import ClassStatistics, Pass1State, StreamingTopK, run_pass1
from .models import Layer, LoadedModel, load_model, resolve_layers
from .store import Store

PROBE_ATTEMPTS = 50


class RunImages(Dataset):
    """The run's images in run order: item i is (tensor or None if unreadable, label, i)."""

    def __init__(self, dataset, indices: np.ndarray, transform):
        self.dataset, self.indices, self.transform = dataset, indices, transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        index = int(self.indices[i])
        try:
            image = self.transform(self.dataset.load(index))
        except Exception:  # unreadable or corrupt file: counted and skipped, never a crash
            image = None
        return image, self.dataset.label(index), i


def collate_readable(items):
    """Batch of readable items → (images, labels, image ids, ids of unreadable items)."""
    readable = [item for item in items if item[0] is not None]
    skipped = [item[2] for item in items if item[0] is None]
    if not readable:
        return torch.empty(0), torch.empty(0, dtype=torch.int64), torch.empty(0, dtype=torch.int64), skipped
    return (torch.stack([item[0] for item in readable]),
            torch.tensor([item[1] for item in readable], dtype=torch.int64),
            torch.tensor([item[2] for item in readable], dtype=torch.int64), skipped)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise NeuroCartoError(f"--device {name}: not a device; valid: auto, cpu, cuda, cuda:N") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise NeuroCartoError(f"--device {name}: no CUDA GPU is available here; use --device cpu or auto")
    if device.type not in ("cpu", "cuda"):
        raise NeuroCartoError(f"--device {name}: unsupported; valid: auto, cpu, cuda, cuda:N")
    return device


@dataclass
class PreparedRun:
    """A run's validated inputs and its key."""

    config: RunConfig
    model: LoadedModel
    dataset: object
    indices: np.ndarray
    layers: list[Layer]
    identity: dict
    key: str

    @property
    def n_neurons(self) -> int:
        return sum(layer.channels for layer in self.layers)


def _first_readable(dataset, indices: np.ndarray, transform) -> torch.Tensor:
    problems = []
    for index in indices[:PROBE_ATTEMPTS]:
        try:
            return transform(dataset.load(int(index))).unsqueeze(0)
        except Exception as error:
            problems.append(f"{type(error).__name__}: {error}")
    raise NeuroCartoError(f"none of the first {min(len(indices), PROBE_ATTEMPTS)} images could be read and "
                          f"transformed for this model (first problem: {problems[0]})")


def prepare(config: RunConfig, execution: ExecutionConfig) -> PreparedRun:
    """Validate the config and build the model, dataset and layers; raises NeuroCartoError early."""
    config.check()
    execution.check()
    model = load_model(config.model, config.weights, config.seed, config.image_size)
    dataset = open_dataset(config.data, execution.cache, model.class_names)
    if len(dataset) == 0:
        raise NeuroCartoError(f"the dataset {dataset.describe()} has no images")
    indices = subsample(len(dataset), config.max_images, config.seed)
    if config.top_k > len(indices):
        raise NeuroCartoError(f"--top-k {config.top_k} is larger than the {len(indices)} images of this run: "
                              f"choose --top-k ≤ {len(indices)} or more images")
    example = _first_readable(dataset, indices, model.transform)
    layers = resolve_layers(model, list(config.layers) if config.layers else None, example)
    identity = {
        "model": model.spec, "weights_checksum": model.weights_checksum,
        "data_fingerprint": dataset.fingerprint, "layers": [layer.name for layer in layers],
        "top_k": config.top_k, "threshold": config.threshold, "max_images": config.max_images,
        "seed": config.seed, "amp": config.amp, "image_size": config.image_size,
    }
    return PreparedRun(config, model, dataset, indices, layers, identity, run_key(identity))


def _new_manifest(run: PreparedRun) -> dict:
    data = dataset_summary(run.dataset)
    return {
        "key": run.key,
        "name": run.config.name or f"{run.model.spec.rsplit('/', 1)[-1]}-{data['kind']}-{len(run.indices)}",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": run.config.as_dict(), "identity": run.identity,
        "model": {"spec": run.model.spec, "weights": run.model.weights, "checksum": run.model.weights_checksum},
        "data": data,
        "layers": [{"name": l.name, "channels": l.channels, "height": l.height, "width": l.width} for l in run.layers],
        "counts": {"images": int(len(run.indices)), "neurons": run.n_neurons, "classes": len(run.dataset.class_names),
                   "skipped": 0},
        "stages": {},
    }


def _stage_pass1(run: PreparedRun, store: Store, manifest: dict, execution: ExecutionConfig, log) -> dict:
    device = resolve_device(execution.device)
    model = run.model.module.to(device)
    n_images, n_classes = len(run.indices), len(run.dataset.class_names)
    state = Pass1State(StreamingTopK(run.n_neurons, run.config.top_k, device),
                       ClassStatistics(n_classes, run.n_neurons, device))
    checkpoint = store.load_checkpoint(run.key, "pass1")
    if checkpoint is not None:
        state.load(checkpoint)
        log(f"pass 1: resuming at image {state.next_image} of {n_images} from its checkpoint")
    images = RunImages(run.dataset, run.indices, run.model.transform)
    loader = DataLoader(images, batch_size=execution.batch_size, sampler=range(state.next_image, n_images),
                        collate_fn=collate_readable, num_workers=execution.workers,
                        pin_memory=device.type == "cuda", persistent_workers=False)
    progress = tqdm(total=n_images, initial=state.next_image, desc="pass 1", unit="img",
                    disable=not execution.progress, dynamic_ncols=True)
    batches = 0

    def on_batch(current: Pass1State, _n: int) -> None:
        nonlocal batches
        progress.update(current.next_image - progress.n)
        batches += 1
        if batches % execution.checkpoint_every == 0 and current.next_image < n_images:
            store.save_checkpoint(run.key, "pass1", current.state())

    try:
        run_pass1(model, run.layers, loader, state, run.config.threshold, device, run.config.amp, on_batch)
    except KeyboardInterrupt:
        store.save_checkpoint(run.key, "pass1", state.state())
        raise NeuroCartoError(f"pass 1 interrupted at image {state.next_image} of {n_images}; its state is "
                              "saved: the same command resumes from there") from None
    finally:
        progress.close()
    results = state.state()
    if len(results["skipped"]) >= n_images:
        raise NeuroCartoError(f"none of the {n_images} images of this run could be read")
    for name in ("top_values", "top_images", "top_positions", "class_matrix", "class_images", "skipped"):
        store.put_array(run.key, name, results[name])
    class_images = np.maximum(results["class_images"], 1)[:, None]
    store.put_array(run.key, "class_mean_maxima", (results["class_maxima_sums"] / class_images).astype(np.float32))
    store.put_array(run.key, "image_index", run.indices)
    store.put_array(run.key, "image_labels", np.array([run.dataset.label(int(i)) for i in run.indices], dtype=np.int64))
    store.put_json(run.key, "class_names", list(run.dataset.class_names))
    store.clear_checkpoint(run.key, "pass1")
    skipped = results["skipped"]
    manifest["counts"]["skipped"] = int(len(skipped))
    manifest["skipped_files"] = [_image_reference(run, int(i)) for i in skipped[:20]]
    return {"device": str(device), "batch_size": execution.batch_size}


def _image_reference(run: PreparedRun, image_id: int) -> str:
    index = int(run.indices[image_id])
    files = getattr(run.dataset, "files", None)
    return files[index] if files is not None else f"#{index}"


STAGES = [("pass1", _stage_pass1)]


def _check_name(store: Store, manifest: dict) -> None:
    for key, other, _ in store.list_runs():
        if key != manifest["key"] and other and other.get("name") == manifest["name"]:
            raise NeuroCartoError(f"the run name {manifest['name']!r} is taken by run {key}; choose another --name")


def precompute(config: RunConfig, execution: ExecutionConfig, rebuild: bool = False, log=print) -> dict:
    """Compute (or resume, or skip) every stage of the run `config` defines; returns its manifest."""
    run = prepare(config, execution)
    with Store(execution.cache) as store:
        if rebuild:
            store.delete_run(run.key)
        manifest = store.manifest(run.key) or _new_manifest(run)
        if config.name and manifest["name"] != config.name:
            manifest["name"] = config.name
        _check_name(store, manifest)
        for stage, compute in STAGES:
            recorded = manifest["stages"].get(stage, {})
            if recorded.get("status") == "done":
                log(f"{stage}: unchanged, skipped (done in {recorded['seconds']:.1f} s)")
                continue
            manifest["stages"][stage] = {"status": "running"}
            store.write_manifest(manifest)
            started = time.perf_counter()
            details = compute(run, store, manifest, execution, log)
            manifest["stages"][stage] = {"status": "done", "seconds": round(time.perf_counter() - started, 3),
                                         **details}
            store.write_manifest(manifest)
        manifest["complete"] = all(manifest["stages"].get(s, {}).get("status") == "done" for s, _ in STAGES)
        store.write_manifest(manifest)
    return manifest


def summary(manifest: dict) -> str:
    """Human-readable end-of-run report."""
    counts = manifest["counts"]
    lines = [f"run {manifest['name']} ({manifest['key']}): {manifest['model']['spec']} on "
             f"{manifest['data']['description']}",
             f"  {counts['images']} images ({counts['skipped']} unreadable, skipped), {counts['neurons']} neurons "
             f"in {len(manifest['layers'])} layers, {counts['classes']} classes"]
    for layer in manifest["layers"]:
        lines.append(f"    {layer['name']:<40} {layer['channels']:>5} neurons  {layer['height']}×{layer['width']}")
    for stage, details in manifest["stages"].items():
        if details.get("status") == "done":
            lines.append(f"  {stage}: {details['seconds']:.1f} s")
    if manifest.get("skipped_files"):
        lines.append(f"  unreadable files (first {len(manifest['skipped_files'])}): " + ", ".join(manifest["skipped_files"]))
    return "\n".join(lines)
