"""Runs a run's stages in order: validation first, then each stage whose inputs changed.

A stage's inputs are its parameters and its upstream stages' inputs, hashed; a finished stage
with the same hash is skipped, a changed one reruns with everything downstream of it. Status
and timing go to the manifest after every stage, so an interrupted precompute resumes.
"""
from __future__ import annotations

import time
from dataclasses import asdict, replace
from datetime import datetime, timezone

from neurocarto.compute import distributed
from neurocarto.compute.contract import StageContext
from neurocarto.compute.dictionary_units import with_dictionary_units
from neurocarto.compute.stages import STAGES
from neurocarto.config import ExecutionConfig, RunConfig, stable_hash
from neurocarto.errors import NeuroCartoError
from neurocarto.inputs.data import dataset_summary
from neurocarto.inputs.models import LoadedModel
from neurocarto.inputs.prepared_run import PreparedRun, prepare
from neurocarto.store.disk import Store
from neurocarto.store.stored_run import skipped_images
from neurocarto.threads import limit_threads

STAGE_BY_NAME = {stage.name: stage for stage in STAGES}


def _new_manifest(run: PreparedRun) -> dict:
    data = dataset_summary(run.dataset)
    return {
        "key": run.key,
        "name": run.config.name or "-".join([run.model.spec.rsplit('/', 1)[-1], data["kind"], str(len(run.indices)),
                                             *([run.config.units] if run.config.units != "neurons" else [])]),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": run.config.as_dict(), "identity": run.identity,
        "model": {"spec": run.model.spec, "weights": run.model.weights, "checksum": run.model.weights_checksum},
        "data": data,
        "layers": [layer.describe() for layer in run.layers],
        "counts": {"images": int(len(run.indices)), "neurons": run.n_neurons, "classes": len(run.dataset.class_names)},
        "stages": {},
    }


def stage_inputs(config: RunConfig, key: str) -> dict[str, str]:
    """Hash of each stage's inputs: its parameters, its version and its upstream stages' input hashes."""
    hashes: dict[str, str] = {}
    for stage in STAGES:
        params = stage.params(config)
        hashes[stage.name] = stable_hash({"run": key, "params": asdict(params) if params is not None else None,
                                          "version": stage.version, "upstream": [hashes[name] for name in stage.inputs]})
    return hashes


def _name_owner(store: Store, manifest: dict) -> str | None:
    """The key of another run with this manifest's name, if any."""
    for key, other, _ in store.list_runs():
        if key != manifest["key"] and other and other.get("name") == manifest["name"]:
            return key
    return None


def wanted_stages(names: list[str] | None) -> set[str]:
    """The named stages and everything upstream of them or to run before them (all stages when None)."""
    if not names:
        return set(STAGE_BY_NAME)
    unknown = [name for name in names if name not in STAGE_BY_NAME]
    if unknown:
        raise NeuroCartoError(f"unknown stage {unknown[0]!r}: valid: {', '.join(STAGE_BY_NAME)}")
    wanted, pending = set(), list(names)
    while pending:
        name = pending.pop()
        if name not in wanted:
            wanted.add(name)
            pending.extend(STAGE_BY_NAME[name].inputs + STAGE_BY_NAME[name].after)
    return wanted


def precompute(config: RunConfig, execution: ExecutionConfig, rebuild: bool = False, log=print,
               stages: list[str] | None = None, model: LoadedModel | None = None,
               command: str | None = None) -> dict | None:
    """Compute (or resume, or skip) the stages (default: all) of the run `config` defines (with `model` in place
    of `config.model` if given); returns its manifest. `command` (the command line that resumes it) is recorded
    for the app's progress view.

    Under torchrun every process calls this: rank 0 keeps the store and the manifest and returns the
    manifest; the others join the sharded stages (pass 1, graphs) and return None.
    """
    wanted = wanted_stages(stages)
    limit_threads()
    group = distributed.join(execution.device)
    try:
        execution = replace(execution, device=distributed.device_for(group, execution.device))
        run = prepare(config, execution, model)
        if config.units != "neurons" and group.world > 1:
            raise NeuroCartoError(f"--units {config.units} runs in one process: run it without torchrun")
        if not group.leader:
            context = StageContext(run, None, execution, log, group)
            for name in group.broadcast(None):
                if STAGE_BY_NAME[name].sharded:
                    STAGE_BY_NAME[name].compute(replace(context, stage=name))
            group.barrier()     # leave together: a process that tears down while rank 0 works can abort
            return None
        with Store(execution.cache) as store, store.writer(run.key):
            if rebuild:
                store.delete_run(run.key)
            run = with_dictionary_units(run, store)
            manifest = _lead(run, store, execution, log, wanted, group, command)
        group.barrier()
        return manifest
    finally:
        distributed.leave(group)


def _lead(run: PreparedRun, store: Store, execution: ExecutionConfig, log, wanted: set[str],
          group: distributed.Group, command: str | None) -> dict:
    """Rank 0's (or the only process's) part: the store, the manifest and every unsharded stage."""
    config = run.config                 # with the defaults that depend on the data resolved (top-k)
    inputs = stage_inputs(config, run.key)
    stages = [stage for stage in STAGES if stage.applies(config)]
    manifest = store.manifest(run.key) or _new_manifest(run)
    if config.name and manifest["name"] != config.name:
        manifest["name"] = config.name
    owner = _name_owner(store, manifest)
    if owner is not None and config.name:
        raise NeuroCartoError(f"the run name {config.name!r} is taken by run {owner}; choose another --name")
    if owner is not None:       # a generated name (model-data-images) shared by runs of other parameters
        manifest["name"] += f"-{run.key[:6]}"
    manifest["config"] = config.as_dict()
    manifest["layer_notes"] = run.notes
    manifest["command"] = command
    for note in run.notes:
        log(note)
    todo = []
    for stage in stages:
        if stage.name not in wanted:
            continue
        recorded = manifest["stages"].get(stage.name, {})
        if recorded.get("status") == "done" and recorded.get("inputs") == inputs[stage.name]:
            log(f"{stage.name}: unchanged, skipped (done in {recorded['seconds']:.1f} s)")
            continue
        todo.append(stage.name)
    group.broadcast(todo)
    context = StageContext(run, store, execution, log, group)
    for name in todo:
        stage = STAGE_BY_NAME[name]
        manifest["complete"] = False
        manifest["stages"][stage.name] = {"status": "running", "inputs": inputs[stage.name]}
        store.write_manifest(manifest)
        started = time.perf_counter()
        try:
            details = stage.compute(replace(context, stage=stage.name))
        except BaseException as error:      # recorded for the app's progress view, then raised again
            message = str(error) if isinstance(error, NeuroCartoError) else (
                "interrupted (Ctrl-C)" if isinstance(error, KeyboardInterrupt) else f"{type(error).__name__}: {error}")
            manifest["stages"][stage.name] = {"status": "failed", "inputs": inputs[stage.name], "error": message}
            store.write_manifest(manifest)
            raise
        manifest["stages"][stage.name] = {"status": "done", "inputs": inputs[stage.name],
                                          "seconds": round(time.perf_counter() - started, 3), **details}
        store.write_manifest(manifest)
    manifest["complete"] = all(manifest["stages"].get(stage.name, {}).get("inputs") == inputs[stage.name]
                               and manifest["stages"][stage.name].get("status") == "done" for stage in stages)
    store.write_manifest(manifest)
    return manifest


def summary(manifest: dict) -> str:
    """Human-readable end-of-run report: neurons and clusters per layer, embedding loss, time per stage."""
    counts, (skipped, skipped_files) = manifest["counts"], skipped_images(manifest)
    stages = manifest["stages"]
    lines = [f"run {manifest['name']} ({manifest['key']}): {manifest['model']['spec']} on "
             f"{manifest['data']['description']}",
             f"  {counts['images']} images ({skipped} unreadable, skipped), {counts['neurons']} neurons "
             f"in {len(manifest['layers'])} layers, {counts['classes']} classes"]
    clusters = {row["layer"]: row for row in stages.get("cluster", {}).get("per_layer", [])}
    lines.append(f"    {'layer':<36} {'neurons':>7} {'map':>7} {'clusters':>8} {'clustered':>9} {'largest':>7} {'cut':>6}")
    for layer in manifest["layers"]:
        row = clusters.get(layer["name"], {})
        cut = f"{row['cut']:.3f}" if row.get("cut") is not None else "-"
        lines.append(f"    {layer['name']:<36} {layer['channels']:>7} {str(layer['height']) + '×' + str(layer['width']):>7} "
                     f"{row.get('clusters', '-'):>8} {row.get('clustered', '-'):>9} {row.get('largest', '-'):>7} {cut:>6}")
    if "cluster" in stages and stages["cluster"].get("status") == "done":
        c = stages["cluster"]
        cut = "each layer's own cut" if c.get("cut") == "automatic" else f"cut {c.get('cut')}"
        lines.append(f"  clustering: {c['candidates']} LSH candidates, {c['verified_pairs']} verified pairs, "
                     f"{c['coactive_pairs']} co-active, {c.get('merges', '-')} merges in the hierarchy, "
                     f"{c['clusters']} clusters at {cut}")
    if stages.get("dictionary", {}).get("status") == "done":
        lines += ["  dictionaries:"] + [f"    {line}" for line in stages["dictionary"]["layers"]]
    if "embed" in stages and stages["embed"].get("status") == "done":
        e = stages["embed"]
        lines.append(f"  embedding: {e['sentences']} sentences, loss per epoch {e['loss']}")
    if "graph" in stages and stages["graph"].get("status") == "done" and "seconds_per_class" in stages["graph"]:
        g = stages["graph"]
        feeds = ", ".join(f"{count} {kind.replace('_', ' ')}" for kind, count in g["feed_methods"].items() if count)
        lines.append(f"  graph: {g['classes']} classes, {g['seconds_per_class']['mean']:.2f} s a class "
                     f"(at most {g['seconds_per_class']['max']:.2f} s); feeds: {feeds}")
    timings = ", ".join(f"{stage.name} {stages[stage.name]['seconds']:.1f} s" for stage in STAGES
                        if stages.get(stage.name, {}).get("status") == "done")
    lines.append(f"  time: {timings}")
    if skipped_files:
        lines.append(f"  unreadable files (first {len(skipped_files)}): " + ", ".join(skipped_files))
    return "\n".join(lines)
