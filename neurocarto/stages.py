"""The stages of a run, in data-flow order; each reads its inputs from the store and writes its results.

pass1 → cluster → graph;  pass1 → embed;  pass1 → patches.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from torch.utils.data import DataLoader
from tqdm import tqdm

from . import cluster, coactivation, concept_graph, embed, graph, hierarchy, patch_images, patches
from .config import ExecutionConfig, RunConfig
from .errors import NeuroCartoError
from .distributed import Group
from .extract import SUM_SCALE, ClassStatistics, Pass1State, StreamingTopK, merge_states, run_pass1
from .capture import record_calls
from .feeding import feeding_map
from .interrupt import deferred_interrupt
from .models import neuron_ids, neuron_offsets
from .run import PreparedRun, RunImages, collate_readable, resolve_device
from .store import Store

PASS1_ARRAYS = ("top_values", "top_images", "top_positions", "class_matrix", "class_images", "skipped")


def pass1(run: PreparedRun, store: Store | None, manifest: dict | None, execution: ExecutionConfig, log,
          group: Group = Group()) -> dict:
    """Top-k images per neuron and the class matrix, in one streaming pass, checkpointed and resumable; across a
    torchrun group, sharded at batch boundaries and merged exactly on rank 0."""
    device = resolve_device(execution.device)
    n_images = len(run.indices)
    results = _checkpointed_pass1(run, store, execution, device, log, group)
    if not group.leader:
        return {}
    if len(results["skipped"]) >= n_images:
        raise NeuroCartoError(f"none of the {n_images} images of this run could be read")
    for name in PASS1_ARRAYS:
        store.put_array(run.key, name, results[name])
    class_images = np.maximum(results["class_images"], 1)[:, None]
    store.put_array(run.key, "class_mean_maxima",
                    (results["class_maxima_sums"] / SUM_SCALE / class_images).astype(np.float32))
    store.put_array(run.key, "image_index", run.indices)
    store.put_array(run.key, "image_labels", np.array([run.dataset.label(int(i)) for i in run.indices], dtype=np.int64))
    store.put_json(run.key, "class_names", list(run.dataset.class_names))
    store.put_json(run.key, "neuron_ids", neuron_ids(run.layers))
    store.clear_checkpoint(run.key, "pass1")
    skipped = results["skipped"]
    manifest["counts"]["skipped"] = int(len(skipped))
    manifest["skipped_files"] = [_image_reference(run, int(i)) for i in skipped[:20]]
    return {"device": str(device), "batch_size": execution.batch_size, "processes": group.world}


def _new_state(run: PreparedRun, device, next_image: int = 0) -> Pass1State:
    return Pass1State(StreamingTopK(run.n_neurons, run.config.top_k, device),
                      ClassStatistics(len(run.dataset.class_names), run.n_neurons, device), next_image)


def _stream(run: PreparedRun, state: Pass1State, stop: int, execution: ExecutionConfig, device, show: bool,
            on_batch=None) -> None:
    """Run pass 1 from the state's next image up to `stop`, with a progress bar."""
    images = RunImages(run.dataset, run.indices, run.model.transform)
    loader = DataLoader(images, batch_size=execution.batch_size, sampler=range(state.next_image, stop),
                        collate_fn=collate_readable, num_workers=execution.workers, pin_memory=device.type == "cuda")
    progress = tqdm(total=stop, initial=state.next_image, desc="pass 1", unit="img", disable=not show,
                    dynamic_ncols=True)

    def advance(current: Pass1State, n: int) -> None:
        progress.update(current.next_image - progress.n)
        if on_batch is not None:
            on_batch(current, n)

    try:
        run_pass1(run.model.module.to(device), run.layers, loader, state, run.config.threshold, device,
                  run.config.amp, advance)
    finally:
        progress.close()


def _pack_shards(states: list[dict[str, np.ndarray]], batch_size: int) -> dict[str, np.ndarray]:
    """The states of all shards as one checkpoint (one transaction: the shards always agree)."""
    packed = {"shards": np.array(len(states)), "batch_size": np.array(batch_size)}
    for rank, state in enumerate(states):
        packed.update({f"{rank}/{name}": value for name, value in state.items()})
    return packed


def _unpack_shards(checkpoint: dict[str, np.ndarray], world: int, batch_size: int) -> list[dict[str, np.ndarray]]:
    """Each shard's state from a checkpoint, if it was written by `world` processes with this batch size."""
    if "shards" not in checkpoint:           # one process, before checkpoints recorded their shards
        shards, saved_batch_size, states = 1, batch_size, [checkpoint]
    else:
        shards, saved_batch_size = int(checkpoint["shards"]), int(checkpoint["batch_size"])
        states = [{name.split("/", 1)[1]: value for name, value in checkpoint.items() if name.startswith(f"{rank}/")}
                  for rank in range(shards)]
    if (shards, saved_batch_size) != (world, batch_size):
        raise NeuroCartoError(
            f"pass 1 has a checkpoint written by {shards} process{'es' * (shards > 1)} with --batch-size "
            f"{saved_batch_size}; this command has {world} with --batch-size {batch_size}. Resume with the same "
            "process count and batch size (the shards are cut by them), or start over with --rebuild")
    return states


def _checkpointed_pass1(run: PreparedRun, store: Store | None, execution: ExecutionConfig, device, log,
                        group: Group) -> dict | None:
    """Pass 1 over this process's shard (all images in one process), from the checkpoint if there is one.

    Every `checkpoint_every` batches, and after a Ctrl-C once the batch in flight is merged, rank 0 gathers
    every shard's state into one checkpoint. The processes agree after each batch every shard has (they
    differ by at most one) whether any was interrupted, so all stop after the same batch; a Ctrl-C during a
    shard's extra last batch stops them all once every shard is whole. Returns the whole stream's state on rank 0.
    """
    n_images, batch_size = len(run.indices), execution.batch_size
    shard = group.batch_shard(n_images, batch_size)
    common = group.common_batches(n_images, batch_size)
    saved = None
    if group.leader:
        checkpoint = store.load_checkpoint(run.key, "pass1")
        saved = None if checkpoint is None else _unpack_shards(checkpoint, group.world, batch_size)
    state = _new_state(run, device, shard.start)
    mine = group.scatter(saved if saved is not None else [None] * group.world)
    if mine is not None:
        state.load(mine)
        log(f"pass 1: resuming at image {state.next_image} of {n_images} from its checkpoint" if group.world == 1 else
            f"pass 1: resuming {group.world} shards, each from batch {(state.next_image - shard.start) // batch_size}")
    done = (state.next_image - shard.start) // batch_size

    def save(current: Pass1State) -> None:
        states = group.gather(current.state())
        if group.leader:
            store.save_checkpoint(run.key, "pass1", _pack_shards(states, batch_size))

    def stop(current: Pass1State, where: str) -> None:
        save(current)
        group.barrier()         # torchrun ends the others as soon as one process exits: only after the save
        raise NeuroCartoError(
            f"pass 1 interrupted at image {current.next_image} of {n_images}; its state is saved: the same command "
            "resumes from there" if group.world == 1 else
            f"pass 1 interrupted {where}; their state is saved: the same torchrun command resumes from there")

    def on_batch(current: Pass1State, _n: int) -> None:
        # called only where every accumulator has taken the whole batch: a consistent state to save
        nonlocal done
        done += 1
        if done > common:       # a shard's extra last batch: the others have no batch to agree on
            return
        if group.any(interrupt.requested):
            stop(current, f"after batch {done} of each of {group.world} shards")
        if done % execution.checkpoint_every == 0 and done < common:
            save(current)

    with deferred_interrupt() as interrupt:
        _stream(run, state, shard.stop, execution, device, group.leader and execution.progress, on_batch)
        if group.any(interrupt.requested):      # during the extra last batches: every shard is whole
            stop(state, f"as its {group.world} shards ended")
    states = group.gather(state.state())
    if not group.leader:
        return None
    return states[0] if len(states) == 1 else merge_states(states, run.config.top_k)


def _image_reference(run: PreparedRun, image_id: int) -> str:
    index = int(run.indices[image_id])
    files = getattr(run.dataset, "files", None)
    return files[index] if files is not None else f"#{index}"


def _layer_of_neuron(run: PreparedRun) -> np.ndarray:
    return np.repeat(np.arange(len(run.layers)), [layer.channels for layer in run.layers])


def cluster_stage(run: PreparedRun, store: Store, manifest: dict, execution: ExecutionConfig, log) -> dict:
    """Similar pairs (MinHash + LSH, exact Jaccard), co-activation refinement, average-linkage clusters."""
    params = run.config.cluster
    progress = tqdm(total=3, desc="cluster", unit="step", disable=not execution.progress)
    top_images = store.get_array(run.key, "top_images")
    sets = cluster.clustering_sets(top_images, store.get_array(run.key, "top_values"), len(run.indices))
    groups = _layer_of_neuron(run) if params.per_layer else np.zeros(run.n_neurons, dtype=np.int64)
    if params.method == "exact":
        first, second, jaccard = cluster.exact_similar_pairs(sets, params.floor, groups)
        candidates = len(first)
    else:
        banding = cluster.Banding.for_threshold(params.floor, params.recall, params.max_hashes)
        first, second, jaccard, candidates = cluster.similar_pairs(sets, params.floor, groups, banding, params.seed)
    progress.update()
    device = resolve_device(execution.device)
    rates = coactivation.coactivation_rates(
        run.model.module.to(device), run.layers, run.load_images, top_images, first, second, params.sample,
        params.active, params.overlap, execution.batch_size, device, params.seed)
    progress.update()
    kept = rates >= params.min_coactive
    merges = hierarchy.linkage_merges(run.n_neurons, first[kept], second[kept], jaccard[kept], params.floor)
    layer_of = _layer_of_neuron(run)
    cuts = (np.full(int(groups.max()) + 1, params.threshold) if params.threshold is not None else np.maximum(
        hierarchy.null_cuts(sets, layer_of, groups, params.null_quantile, seed=params.seed), params.floor))
    caps = np.floor(params.max_share * np.bincount(groups))
    merge_group = hierarchy.merge_groups(run.n_neurons, merges, groups)
    labels = hierarchy.cut_labels(run.n_neurons, merges, cuts[merge_group], caps[merge_group])
    progress.update()
    progress.close()
    members = [np.flatnonzero(labels == label) for label in range(labels.max() + 1)]
    offsets = np.concatenate([[0], np.cumsum([len(m) for m in members])]).astype(np.int64)
    flat_members = np.concatenate(members) if members else np.empty(0, dtype=np.int64)
    similarity = np.array([_mean_jaccard(sets, m) for m in members], dtype=np.float32)
    unions = [np.unique(top_images[m]) for m in members]
    for name, value in (("cluster_labels", labels), ("cluster_offsets", offsets), ("cluster_members", flat_members),
                        ("cluster_similarity", similarity),
                        ("cluster_image_offsets", np.concatenate([[0], np.cumsum([len(u) for u in unions])]).astype(np.int64)),
                        ("cluster_images", np.concatenate(unions) if unions else np.empty(0, dtype=np.int64)),
                        ("pairs", np.stack([first, second]).T if len(first) else np.empty((0, 2), dtype=np.int64)),
                        ("pair_jaccard", jaccard), ("pair_coactivation", rates), ("cluster_merges", merges),
                        ("cluster_cuts", cuts), ("cluster_caps", caps)):
        store.put_array(run.key, name, value)
    per_layer = []
    for index, layer in enumerate(run.layers):
        in_layer = [m for m in members if layer_of[m[0]] == index]
        per_layer.append({"layer": layer.name, "clusters": len(in_layer), "clustered": int(sum(len(m) for m in in_layer)),
                          "largest": int(max((len(m) for m in in_layer), default=0)),
                          "cut": round(float(cuts[groups[layer_of == index][0]]), 4) if layer.channels else None})
    return {"candidates": int(candidates), "verified_pairs": int(len(first)), "coactive_pairs": int(kept.sum()),
            "merges": len(merges), "cut": "automatic" if params.threshold is None else params.threshold,
            "clusters": len(members), "per_layer": per_layer}


def _mean_jaccard(sets: np.ndarray, members: np.ndarray) -> float:
    first, second = np.triu_indices(len(members), k=1)
    return float(cluster.pair_jaccard(sets, members[first], members[second]).mean())


def embed_stage(run: PreparedRun, store: Store, manifest: dict, execution: ExecutionConfig, log) -> dict:
    """Co-occurrence sentences → skip-gram embedding → UMAP 2D and full-dimensional neighbours."""
    params = run.config.embed
    top_images = store.get_array(run.key, "top_images")
    sets = cluster.clustering_sets(top_images, store.get_array(run.key, "top_values"), len(run.indices))
    offsets, words = embed.image_sentences(sets)
    if len(offsets) < 2:
        raise NeuroCartoError("no image is among the top images of two neurons: nothing co-occurs; "
                              "use more images or a larger --top-k")
    progress = tqdm(total=3, desc="embed", unit="step", disable=not execution.progress)
    vectors, losses = embed.train_skipgram(offsets, words, run.n_neurons, params)
    vectors -= vectors.mean(axis=0)     # drop the direction all vectors share: it only blurs cosine neighbours
    progress.update()
    neighbors, similarities = embed.cosine_neighbors(vectors, params.neighbors)
    progress.update()
    projection = embed.project_2d(vectors, params.projection_seed)
    progress.update()
    progress.close()
    for name, value in (("embedding", vectors), ("projection", projection), ("neighbors", neighbors),
                        ("neighbor_similarity", similarities)):
        store.put_array(run.key, name, value)
    return {"sentences": len(offsets) - 1, "words": int(len(words)), "loss": [round(x, 4) for x in losses]}


def _class_image_ids(labels: np.ndarray, skipped: np.ndarray, label: int, limit: int | None, seed: int) -> np.ndarray:
    candidates = np.setdiff1d(np.flatnonzero(labels == label), skipped)
    if limit is not None and len(candidates) > limit:
        candidates = np.sort(np.random.default_rng(seed + label).choice(candidates, limit, replace=False))
    return candidates


def graph_stage(run: PreparedRun, store: Store | None, manifest: dict | None, execution: ExecutionConfig, log,
                group: Group = Group()) -> dict:
    """Per class: the chosen neurons and their neuron-level gradient × activation weights on the class's images,
    and the graph at the run's cut (`concept_graph`).
    Across a torchrun group, classes are dealt round-robin and the graphs gathered on rank 0."""
    params = run.config.graph
    device = resolve_device(execution.device)
    model = run.model.module.to(device)
    inputs = group.broadcast({name: store.get_array(run.key, name)
                              for name in ("class_matrix", "cluster_labels", "image_labels", "skipped")}
                             if group.leader else None)
    class_matrix = inputs["class_matrix"]
    feeds = feeding_map(model, run.layers)
    readable = np.setdiff1d(np.arange(len(run.indices)), inputs["skipped"])[:1]
    paths = graph.FeedPaths(model, run.layers, feeds, record_calls(model, run.load_images(readable).to(device)))
    per_class = params.per_class(len(run.indices), len(class_matrix))
    batch_size = max(1, min(execution.batch_size, 64))
    graphs = {}
    for label in tqdm(group.mine(len(class_matrix)), desc="graphs", unit="class",
                      disable=not (execution.progress and group.leader)):
        ids = _class_image_ids(inputs["image_labels"], inputs["skipped"], label, per_class, params.seed)

        def batches(ids=ids):
            for start in range(0, len(ids), batch_size):
                yield run.load_images(ids[start:start + batch_size])

        graphs[label] = graph.class_weights(model, run.layers, feeds, class_matrix[label], batches, device,
                                            params.top_fraction, paths)
    gathered = group.gather(graphs)
    if not group.leader:
        return {}
    layer_of, offsets = _layer_of_neuron(run), neuron_offsets(run.layers)
    labels = inputs["cluster_labels"]
    anchors = concept_graph.cluster_anchors(labels, layer_of)
    totals = {"nodes": 0, "edges": 0, "neuron_weights": 0}
    for label, (chosen, weights, images) in sorted((item for part in gathered for item in part.items())):
        class_graph = concept_graph.class_graph_at(chosen, weights, images, [layer.name for layer in run.layers],
                                                   offsets, layer_of, labels, anchors, params.max_in_edges)
        store.put_json(run.key, f"graph/{label}", class_graph)
        store.put_array(run.key, f"graph_neurons/{label}", chosen)
        store.put_array(run.key, f"graph_weights/{label}", weights)
        totals["nodes"] += len(class_graph["nodes"])
        totals["edges"] += len(class_graph["edges"])
        totals["neuron_weights"] += len(weights)
    return {"classes": len(class_matrix), "images_per_class": per_class, "feeds": len(feeds),
            "one_conv_feeds": sum(path is not None for path in paths.decided.values()),
            "processes": group.world, **totals}


def patches_stage(run: PreparedRun, store: Store, manifest: dict, execution: ExecutionConfig, log) -> dict:
    """PNG patches of each neuron's top images around its argmax, stored per neuron (`patch_images.pack`)."""
    params = run.config.patches
    model = run.model.module.cpu()
    example = run.load_images(store.get_array(run.key, "top_images")[:1, 0])
    fields = patches.receptive_fields(model, run.layers, example)
    written = 0
    progress = tqdm(total=run.n_neurons, desc="patches", unit="neuron", disable=not execution.progress)

    def save(neuron: int, neuron_patches: list[bytes]) -> None:
        nonlocal written
        store.put_bytes(run.key, f"patches/{neuron}", patch_images.pack(neuron_patches))
        written += len(neuron_patches)
        progress.update()

    patches.neuron_patches(run.layers, store.get_array(run.key, "top_images"), store.get_array(run.key, "top_positions"),
                           run.load_images, run.model.transform, fields, params.per_neuron, params.size,
                           params.min_size, on_neuron=save)
    progress.close()
    store.put_json(run.key, "receptive_fields", [list(f) for f in fields])
    return {"patches": written, "receptive_fields": {layer.name: list(f) for layer, f in zip(run.layers, fields)}}


@dataclass(frozen=True)
class Stage:
    name: str
    compute: Callable
    params: Callable[[RunConfig], object]   # the config section whose change reruns this stage
    inputs: tuple[str, ...]                 # upstream stages
    sharded: bool = False                   # every process of a torchrun group takes part (compute takes `group`)
    version: int = 1                        # raised when the stage computes differently: stored results rerun


STAGES = [
    Stage("pass1", pass1, lambda config: None, (), sharded=True),
    Stage("cluster", cluster_stage, lambda config: config.cluster, ("pass1",)),
    Stage("embed", embed_stage, lambda config: config.embed, ("pass1",), version=2),   # 2: centred vectors
    Stage("graph", graph_stage, lambda config: config.graph, ("cluster",), sharded=True,
          version=2),                                                               # 2: neuron-level weights
    Stage("patches", patches_stage, lambda config: config.patches, ("pass1",)),
]
