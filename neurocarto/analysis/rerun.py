"""A stored run's model and data loaded again, for the analyses that run the model (ablation, explanation)."""
from __future__ import annotations

from dataclasses import replace

from neurocarto.compute.dictionary_units import with_dictionary_units
from neurocarto.config import ExecutionConfig, RunConfig
from neurocarto.errors import NeuroCartoError
from neurocarto.inputs.models import from_module
from neurocarto.inputs.prepared_run import PreparedRun, prepare


def prepared_for(run, model=None, task: str = "ablation") -> PreparedRun:
    """A stored run's model and data, loaded as its manifest names them (`model`: the nn.Module of a run made from a
    Python object); NeuroCartoError saying what differs where they are not the run's (`task` names what needs
    them)."""
    config, loaded = RunConfig.from_dict(run.config), None
    if run.manifest["model"]["spec"].startswith("python:"):
        if model is None:
            raise NeuroCartoError(f"run {run.name} was made from a Python model object ({run.manifest['model']['spec']}): "
                                  "pass it as model=module")
        loaded = from_module(model)
        config = replace(config, model=loaded.spec)
    try:
        prepared = prepare(config, ExecutionConfig(cache=run.store.directory, progress=False), loaded)
    except NeuroCartoError as problem:
        raise NeuroCartoError(f"{task} needs run {run.name}'s model and data here: {problem}") from problem
    if prepared.key != run.key:
        raise NeuroCartoError(f"the model or data here differ from those run {run.name} was computed on (its key "
                              f"{run.key}, here {prepared.key}): run the {task} where its model, weights and data are")
    return with_dictionary_units(prepared, run.store)
