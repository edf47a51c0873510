"""The stages of a run, in data-flow order: pass1 → cluster → graph;  pass1 → embed;  pass1 → patches; a run with
dictionary units trains its dictionaries first.

Each is a `compute(context) -> details` of the stage contract (`contract.py`).
"""
from __future__ import annotations

import time

import numpy as np
import torch

from neurocarto.compute import attribution, coactivation, patches
from neurocarto.compute.cone import TracedModel
from neurocarto.compute.contract import Stage, StageContext
from neurocarto.compute.dictionary_fit import dictionary_weights, fit_layers
from neurocarto.compute.dictionary_units import splices_off
from neurocarto.compute.pass1 import SUM_SCALE
from neurocarto.compute.pass1_stream import CheckpointedPass1
from neurocarto.concepts import cluster, concept_graph, embed, hierarchy
from neurocarto.errors import NeuroCartoError
from neurocarto.inputs.capture import LayerCapture, record_calls
from neurocarto.inputs.feeding import feeding_map
from neurocarto.inputs.prepared_run import PreparedRun, resolve_device
from neurocarto.neurons import neuron_ids, neuron_layers, neuron_offsets
from neurocarto.store import keys, patch_images
from neurocarto.store.dictionaries import quality_line, store_dictionary, stored_quality

SKIPPED_LISTED = 20         # unreadable files the manifest names


def dictionary_stage(context: StageContext) -> dict:
    """The sparse dictionary of each of the run's spliced layers (`dictionary_units`), trained, measured, stored and
    installed layer by layer: a stopped stage resumes with the layers it had not stored."""
    run, store = context.run, context.store
    stored = frozenset(splice.base.name for splice in run.splices
                       if stored_quality(store, run.key, splice.base.name) is not None)
    splice_of = {splice.base.name: splice for splice in run.splices}
    progress = context.progress(len(run.splices), "layers", initial=len(stored))
    if len(stored) < len(run.splices):
        with splices_off(run):
            for layer, dictionary, quality in fit_layers(run, [splice.base for splice in run.splices],
                                                         run.config.dictionary, resolve_device(context.execution.device),
                                                         context.log, stored):
                weights = dictionary_weights(dictionary)
                store_dictionary(store, run.key, layer.name, weights, quality)
                splice_of[layer.name].install(weights)
                context.log(f"  {quality_line(quality)}")
                progress.update()
    progress.close()
    return {"layers": [quality_line(stored_quality(store, run.key, splice.base.name)) for splice in run.splices]}


def pass1(context: StageContext) -> dict:
    """Top-k images per neuron and the class matrix, in one streaming pass, checkpointed and resumable; across a
    torchrun group, sharded at batch boundaries and merged exactly on rank 0."""
    run, store, execution, group = context.run, context.store, context.execution, context.group
    device = resolve_device(execution.device)
    n_images = len(run.indices)
    results = CheckpointedPass1(context, device).compute()
    if not group.leader:
        return {}
    if len(results[keys.SKIPPED]) >= n_images:
        raise NeuroCartoError(f"none of the {n_images} images of this run could be read")
    for name in keys.PASS1_ARRAYS:
        store.put_array(run.key, name, results[name])
    class_images = np.maximum(results[keys.CLASS_IMAGES], 1)[:, None]
    store.put_array(run.key, keys.CLASS_MEAN_MAXIMA,
                    (results["class_maxima_sums"] / SUM_SCALE / class_images).astype(np.float32))
    store.put_array(run.key, keys.IMAGE_INDEX, run.indices)
    store.put_array(run.key, keys.MAXIMA_SAMPLE, results["sample_maxima"])
    store.put_array(run.key, keys.IMAGE_LABELS, np.array([run.dataset.label(int(i)) for i in run.indices], dtype=np.int64))
    store.put_json(run.key, keys.CLASS_NAMES, list(run.dataset.class_names))
    store.put_json(run.key, keys.NEURON_IDS, neuron_ids(run.layers))
    store.clear_checkpoint(run.key, keys.PASS1)
    skipped = results[keys.SKIPPED]
    return {"device": str(device), "batch_size": execution.batch_size, "processes": group.world,
            keys.SKIPPED: int(len(skipped)),
            "skipped_files": [_image_reference(run, int(i)) for i in skipped[:SKIPPED_LISTED]]}


def _image_reference(run: PreparedRun, image_id: int) -> str:
    index = int(run.indices[image_id])
    files = getattr(run.dataset, "files", None)
    return files[index] if files is not None else f"#{index}"


def cluster_stage(context: StageContext) -> dict:
    """Similar pairs (MinHash + LSH, exact Jaccard), co-activation refinement, average-linkage clusters."""
    run, store, execution = context.run, context.store, context.execution
    params = run.config.cluster
    progress = context.progress(3, "steps")
    top_images = store.get_array(run.key, keys.TOP_IMAGES)
    sets = cluster.clustering_sets(top_images, store.get_array(run.key, keys.TOP_VALUES), len(run.indices))
    layer_of = neuron_layers(run.layers)
    groups = layer_of if params.per_layer else np.zeros(run.n_neurons, dtype=np.int64)
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
    cuts = (np.full(int(groups.max()) + 1, params.threshold) if params.threshold is not None else np.maximum.reduce([
        hierarchy.null_cuts(sets, layer_of, groups, params.null_quantile, seed=params.seed),
        params.mean_multiple * hierarchy.within_group_means(sets, groups, seed=params.seed),
        np.full(int(groups.max()) + 1, params.floor)]))
    caps = np.floor(params.max_share * np.bincount(groups))
    merge_group = hierarchy.merge_groups(run.n_neurons, merges, groups)
    labels = hierarchy.cut_labels(run.n_neurons, merges, cuts[merge_group], caps[merge_group])
    progress.update()
    progress.close()
    tables = cluster.cluster_tables(labels, sets, top_images)
    arrays = {keys.CLUSTER_LABELS: labels, **{name: tables[name] for name in keys.CLUSTER_TABLES},
              keys.PAIRS: np.stack([first, second]).T if len(first) else np.empty((0, 2), dtype=np.int64),
              keys.PAIR_JACCARD: jaccard, keys.PAIR_COACTIVATION: rates, keys.CLUSTER_MERGES: merges,
              keys.CLUSTER_CUTS: cuts, keys.CLUSTER_CAPS: caps}
    for name, value in arrays.items():
        store.put_array(run.key, name, value)
    sizes = np.diff(tables[keys.CLUSTER_OFFSETS])
    first_members = tables[keys.CLUSTER_MEMBERS][tables[keys.CLUSTER_OFFSETS][:-1]]
    per_layer = []
    for index, layer in enumerate(run.layers):
        in_layer = sizes[layer_of[first_members] == index]
        per_layer.append({"layer": layer.name, "clusters": len(in_layer), "clustered": int(in_layer.sum()),
                          "largest": int(in_layer.max(initial=0)),
                          "cut": round(float(cuts[groups[layer_of == index][0]]), 4) if layer.channels else None})
    return {"candidates": int(candidates), "verified_pairs": int(len(first)), "coactive_pairs": int(kept.sum()),
            "merges": len(merges), "cut": "automatic" if params.threshold is None else params.threshold,
            "clusters": len(sizes), "per_layer": per_layer}


def embed_stage(context: StageContext) -> dict:
    """Co-occurrence sentences → skip-gram embedding → UMAP 2D and full-dimensional neighbors."""
    run, store = context.run, context.store
    params = run.config.embed
    top_images = store.get_array(run.key, keys.TOP_IMAGES)
    sets = cluster.clustering_sets(top_images, store.get_array(run.key, keys.TOP_VALUES), len(run.indices))
    offsets, words = embed.image_sentences(sets)
    if len(offsets) < 2:
        raise NeuroCartoError("no image is among the top images of two neurons: nothing co-occurs; "
                              "use more images or a larger --top-k")
    progress = context.progress(3, "steps")
    vectors, losses = embed.train_skipgram(offsets, words, run.n_neurons, params)
    vectors -= vectors.mean(axis=0)     # drop the direction all vectors share: it only blurs cosine neighbors
    progress.update()
    neighbors, similarities = embed.cosine_neighbors(vectors, params.neighbors)
    progress.update()
    projection = embed.project_2d(vectors, params.projection_seed, neighbors=(neighbors, similarities))
    progress.update()
    progress.close()
    for name, value in ((keys.EMBEDDING, vectors), (keys.PROJECTION, projection), (keys.NEIGHBORS, neighbors),
                        (keys.NEIGHBOR_SIMILARITY, similarities)):
        store.put_array(run.key, name, value)
    return {"sentences": len(offsets) - 1, "words": int(len(words)), "loss": [round(x, 4) for x in losses]}


def class_image_ids(labels: np.ndarray, skipped: np.ndarray, label: int, limit: int | None, seed: int) -> np.ndarray:
    candidates = np.setdiff1d(np.flatnonzero(labels == label), skipped)
    if limit is not None and len(candidates) > limit:
        candidates = np.sort(np.random.default_rng(seed + label).choice(candidates, limit, replace=False))
    return candidates


def graph_stage(context: StageContext) -> dict:
    """Per class: the chosen neurons and their neuron-level gradient × activation weights on the class's images,
    and the graph at the run's cut (`concept_graph`).
    Across a torchrun group, classes are dealt round-robin and the graphs gathered on rank 0."""
    run, store, execution, group = context.run, context.store, context.execution, context.group
    params = run.config.graph
    device = resolve_device(execution.device)
    model = run.model.module.to(device)
    inputs = group.broadcast({name: store.get_array(run.key, name)
                              for name in (keys.CLASS_MATRIX, keys.CLUSTER_LABELS, keys.IMAGE_LABELS, keys.SKIPPED)}
                             if group.leader else None)
    class_matrix = inputs[keys.CLASS_MATRIX]
    feeds = feeding_map(model, run.layers, [splice.base for splice in run.splices])
    readable = np.setdiff1d(np.arange(len(run.indices)), inputs[keys.SKIPPED])[:1]
    example = run.load_images(readable).to(device)
    traced, untraced = graph_tracing(model, run.layers, example)
    paths = attribution.FeedPaths(model, run.layers, feeds, record_calls(model, example), traced)
    per_class = params.per_class(len(run.indices), len(class_matrix))
    batch_size = max(1, min(execution.batch_size, 64))
    graphs, seconds = {}, []
    mine = group.mine(len(class_matrix))
    progress = context.progress(len(mine), "classes")
    for label in mine:
        ids = class_image_ids(inputs[keys.IMAGE_LABELS], inputs[keys.SKIPPED], label, per_class, params.seed)

        def batches(ids=ids):
            for start in range(0, len(ids), batch_size):
                yield run.load_images(ids[start:start + batch_size])

        started = time.perf_counter()
        graphs[label] = attribution.class_weights(model, run.layers, feeds, class_matrix[label], batches, device,
                                            params.top_fraction, paths, params.neuron_limit())
        seconds.append(time.perf_counter() - started)
        progress.update()
    progress.close()
    gathered = group.gather(graphs)
    if not group.leader:
        return {}
    layer_of, offsets = neuron_layers(run.layers), neuron_offsets(run.layers)
    labels = inputs[keys.CLUSTER_LABELS]
    anchors = concept_graph.cluster_anchors(labels, layer_of)
    totals = {"nodes": 0, "edges": 0, "neuron_weights": 0}
    for label, (chosen, weights, images) in sorted((item for part in gathered for item in part.items())):
        class_graph = concept_graph.class_graph_at(chosen, weights, images, [layer.name for layer in run.layers],
                                                   offsets, layer_of, labels, anchors, params.max_in_edges)
        store.put_json(run.key, keys.class_graph(label), class_graph)
        store.put_array(run.key, keys.graph_neurons(label), chosen)
        store.put_array(run.key, keys.graph_weights(label), weights)
        totals["nodes"] += len(class_graph["nodes"])
        totals["edges"] += len(class_graph["edges"])
        totals["neuron_weights"] += len(weights)
    return {"classes": len(class_matrix), "images_per_class": per_class, "feeds": len(feeds),
            "max_neurons": params.neuron_limit(), **paths.methods(), "untraced": untraced,
            "seconds_per_class": {"mean": round(float(np.mean(seconds)), 4) if seconds else 0.0,
                                  "max": round(float(np.max(seconds)), 4) if seconds else 0.0},
            "processes": group.world, **totals}


def graph_tracing(model, layers, example) -> tuple[TracedModel | None, str | None]:
    """The model traced for the feeds' cones (`cone.py`), or None and why it could not be."""
    captured = {}
    with torch.no_grad(), LayerCapture(model, layers, lambda i, maps: captured.__setitem__(i, maps.clone())):
        model(example)
    try:
        traced = TracedModel(model, layers, example, captured)
    except Exception as error:        # torch.fx raises many kinds on code it cannot trace
        return None, f"torch.fx cannot trace the model: {type(error).__name__}: {str(error).splitlines()[0][:200]}"
    missing = [layer.name for i, layer in enumerate(layers) if i not in traced.nodes]
    if missing:
        return None, f"no traced node reproduces layer(s) {', '.join(missing[:5])}"
    return traced, None


def patches_stage(context: StageContext) -> dict:
    """PNG patches of each neuron's top images around its argmax, stored per neuron (`patch_images.pack`)."""
    run, store = context.run, context.store
    params = run.config.patches
    model = run.model.module.cpu()
    example = run.load_images(store.get_array(run.key, keys.TOP_IMAGES)[:1, 0])
    fields = patches.receptive_fields(model, run.layers, example)
    written = 0
    progress = context.progress(run.n_neurons, "neurons")

    def save(neuron: int, neuron_patches: list[bytes]) -> None:
        nonlocal written
        store.put_bytes(run.key, keys.neuron_patches(neuron), patch_images.pack(neuron_patches))
        written += len(neuron_patches)
        progress.update()

    patches.neuron_patches(run.layers, store.get_array(run.key, keys.TOP_IMAGES), store.get_array(run.key, keys.TOP_POSITIONS),
                           run.load_images, run.model.transform, fields, params.per_neuron, params.size,
                           params.min_size, on_neuron=save)
    progress.close()
    store.put_json(run.key, keys.RECEPTIVE_FIELDS, [list(f) for f in fields])
    return {"patches": written, "receptive_fields": {layer.name: list(f) for layer, f in zip(run.layers, fields)}}


STAGES = [
    Stage(keys.DICTIONARY, dictionary_stage, lambda config: config.dictionary, (),
          applies=lambda config: config.units != "neurons"),
    Stage(keys.PASS1, pass1, lambda config: None, (), sharded=True, version=2,   # 2: a sample of maxima
          after=(keys.DICTIONARY,)),
    Stage(keys.CLUSTER, cluster_stage, lambda config: config.cluster, (keys.PASS1,), version=2),  # 2: one draw a chunk
    Stage(keys.EMBED, embed_stage, lambda config: config.embed, (keys.PASS1,), version=3),  # 3: UMAP, exact neighbours
    Stage(keys.GRAPH, graph_stage, lambda config: config.graph, (keys.CLUSTER,), sharded=True, version=4),
    Stage(keys.PATCHES, patches_stage, lambda config: config.patches, (keys.PASS1,)),
]
