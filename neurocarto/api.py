"""`nc.precompute` from Python: a run of a model object (or any model spec the CLI takes) on a data set.

    import neurocarto as nc
    run = nc.precompute(model=my_module, data="path/to/folder", transform=my_transform, max_images=2000)
    run.clusters, run.graph(0)

The same stages, store and resumption as `python -m neurocarto precompute`; returns the run as `nc.open_run`
reads it.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

from neurocarto.store.stored_run import StoredRun, open_run


def precompute(model=None, data: str | None = None, *, transform: Callable | None = None,
               class_names: list[str] | None = None, weights: str | None = None, layers: list[str] | None = None,
               max_images: int | None = None, top_k: int | None = None, image_size: int | None = None,
               name: str | None = None, cache: str | Path = "cache", device: str = "auto", batch_size: int = 256,
               stages: list[str] | None = None, rebuild: bool = False, progress: bool = True,
               log: Callable[[str], None] = print, **run_options) -> StoredRun:
    """Compute (or resume) a run and open it.

    model: an `nn.Module` (with `transform`, PIL image → CHW tensor, ImageNet preprocessing by default, and
    optionally `class_names`), or a spec as `--model` takes one (None: the embedded default). data: as `--data`
    (an image folder, `fashion-mnist`, `parts`, …). `run_options` are further `RunConfig` fields (seed,
    threshold, amp, cluster=ClusterParams(…), …).
    """
    from neurocarto.compute.pipeline import precompute as run_stages
    from neurocarto.config import ExecutionConfig, RunConfig
    from neurocarto.errors import NeuroCartoError
    from neurocarto.inputs.models import from_module

    loaded = None
    if not (model is None or isinstance(model, str)):
        loaded = from_module(model, transform, class_names, image_size)     # says what a model may be
    elif transform is not None or class_names is not None:
        raise NeuroCartoError("transform and class_names go with a model object (an nn.Module); a model spec "
                              "brings its own (a factory file returns them)")
    unknown = sorted(set(run_options) - set(RunConfig.__dataclass_fields__))
    if unknown:
        raise NeuroCartoError(f"unknown run option {unknown[0]!r}: valid: "
                              f"{', '.join(sorted(set(RunConfig.__dataclass_fields__) - {'model', 'data'}))}")
    config = RunConfig(model=loaded.spec if loaded else model, weights=weights, data=data,
                       layers=tuple(layers) if layers else None, max_images=max_images, top_k=top_k,
                       image_size=image_size, name=name)
    config = replace(config, **run_options)
    execution = ExecutionConfig(cache=Path(cache), device=device, batch_size=batch_size, progress=progress)
    manifest = run_stages(config, execution, rebuild=rebuild, log=log, stages=stages, model=loaded)
    return open_run(manifest["key"], cache)
