"""How coherent a run's concepts are: `python -m neurocarto evaluate --run RUN`.

On the generated Parts data every neuron gets a ground-truth concept (the part most often under its
argmax over its top images); clusters are scored by purity and by an automatic intruder test, the
embedding by how close it puts parts of the same object. Baselines, computed in the same call:
random groups of the same sizes in the same layers, the original's grouping (connected components of
the LSH buckets, no verification or refinement), a random embedding, and the original's embedding
update rule (one vector per neuron, consecutive pairs of a shuffled sentence, uniform negatives,
constant rate) on the same sentences. On any data, a weaker proxy uses the class labels of the top
images. Everything is read from the store; nothing is recomputed but the baselines.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from neurocarto.analysis.embedding_scores import cosine, embedding_scores, original_rule_embedding
from neurocarto.concepts import cluster, embed, hierarchy
from neurocarto.config import EmbedParams
from neurocarto.errors import NeuroCartoError
from neurocarto.neurons import Layer
from neurocarto.store import keys
from neurocarto.store.dictionaries import store_dictionary, stored_qualities, stored_weights
from neurocarto.store.disk import Store
from neurocarto.store.stored_run import StoredRun
from neurocarto.zoo.parts import part_counts

# ---- ground truth: a concept per neuron ----

def neuron_concepts(top_images: np.ndarray, top_values: np.ndarray, top_positions: np.ndarray,
                    layer_of: np.ndarray, layers: list[Layer], part_maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per neuron, the part most often under its argmax (`part_counts`) and the share of its top images
    showing it; `part_maps` are indexed by run image id."""
    found = part_counts(top_images, top_values, top_positions, [(layers[i].height, layers[i].width) for i in layer_of],
                        part_maps.__getitem__, int(part_maps.max()) + 1)
    concepts = np.argmax(found, axis=1)
    return concepts, found[np.arange(len(found)), concepts] / np.maximum(found.sum(axis=1), 1)


# ---- groupings ----

def original_grouping(sets: np.ndarray, layer_of: np.ndarray, threshold: float, seed: int = 1) -> np.ndarray:
    """The original's clusters: neurons sharing any LSH bucket joined (connected components), unverified."""
    banding = cluster.Banding.for_threshold(threshold)
    signatures = cluster.minhash_signatures(sets, banding.hashes, seed)
    first, second = cluster.lsh_candidates(signatures, banding, layer_of)
    n = len(sets)
    graph = coo_matrix((np.ones(len(first)), (first, second)), shape=(n, n))
    _, components = connected_components(graph, directed=False)
    sizes = np.bincount(components)
    labels = np.where(sizes[components] > 1, components, -1)
    _, dense = np.unique(labels[labels >= 0], return_inverse=True)
    labels[labels >= 0] = dense
    return labels


def random_grouping(labels: np.ndarray, layer_of: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Groups of the same sizes as `labels`' clusters, drawn without replacement from the same layers."""
    shuffled = np.full(len(labels), -1, dtype=np.int64)
    for layer in np.unique(layer_of):
        neurons = np.flatnonzero(layer_of == layer)
        in_layer = labels[neurons]
        shuffled[neurons] = rng.permutation(in_layer)   # same sizes, members drawn at random
    return shuffled


def groups_of(labels: np.ndarray) -> list[np.ndarray]:
    order = np.argsort(labels, kind="stable")
    order = order[labels[order] >= 0]
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    return [group for group in np.split(order, bounds) if len(group) > 1]


def purity(labels: np.ndarray, concepts: np.ndarray) -> np.ndarray:
    """Per cluster, the share of members whose concept is the cluster's most common one."""
    return np.array([np.bincount(concepts[g]).max() / len(g) for g in groups_of(labels)])


def intruder_accuracy(labels: np.ndarray, concepts: np.ndarray, layer_of: np.ndarray, rng: np.random.Generator,
                      trials: int = 50, other_concept: bool = True) -> float:
    """3 members of a cluster (≥ 3) and 1 other neuron of its layer, the intruder; the judge names the
    neuron whose concept is rarest among the four (ties: a uniform guess among them). Expected accuracy.
    With `other_concept`, as in word-intrusion tests, the intruder's concept is not the cluster's
    majority concept (else a perfect cluster could score 1/4: there is nothing to tell)."""
    scores = []
    for group in groups_of(labels):
        if len(group) < 3:
            continue
        others = np.setdiff1d(np.flatnonzero(layer_of == layer_of[group[0]]), group)
        if other_concept:
            others = others[concepts[others] != np.bincount(concepts[group]).argmax()]
        if not len(others):
            continue
        for _ in range(trials):
            four = np.concatenate([rng.choice(group, 3, replace=False), rng.choice(others, 1)])
            counts = np.array([(concepts[four] == concepts[n]).sum() for n in four])
            rarest = np.flatnonzero(counts == counts.min())
            scores.append(1 / len(rarest) if 3 in rarest else 0.0)
    return float(np.mean(scores)) if scores else float("nan")


# ---- the class-label proxy (any data) ----

def class_histograms(top_images: np.ndarray, top_values: np.ndarray, image_labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Per neuron, the class distribution of its top images (entries where it fired)."""
    histograms = np.zeros((len(top_images), n_classes))
    rows = np.repeat(np.arange(len(top_images)), top_images.shape[1])
    fired = top_values.ravel() > 0
    np.add.at(histograms, (rows[fired], image_labels[top_images.ravel()[fired]]), 1)
    return histograms / np.maximum(histograms.sum(axis=1, keepdims=True), 1)


def class_agreement(labels: np.ndarray, histograms: np.ndarray) -> float:
    """Mean over clusters of the mean cosine between members' class distributions."""
    values = []
    for group in groups_of(labels):
        similarity = cosine(histograms[group])
        values.append(similarity[np.triu_indices(len(group), 1)].mean())
    return float(np.mean(values)) if values else float("nan")


# ---- the report ----

def _mean(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()) if values.size else float("nan")


CUTS = (0.05, 0.06, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)


def _part_maps(spec: str, top_images: np.ndarray, image_index: np.ndarray) -> np.ndarray:
    """Part maps of a Parts run's top images, indexed by run image id."""
    from neurocarto.zoo.parts import SIZE, PartsDataset

    dataset = PartsDataset.from_spec(spec)
    maps = np.zeros((len(image_index), SIZE, SIZE), dtype=np.uint8)
    for image in np.unique(top_images):
        maps[image] = dataset.part_map(int(image_index[image]))
    return maps


def is_parts(data: str | None) -> bool:
    return bool(data) and (data == "parts" or data.startswith("parts:"))


def held_out_spec(data: str) -> str:
    """Another sample of the same Parts distribution: as many images, the next seed."""
    from neurocarto.zoo.parts import PartsDataset

    dataset = PartsDataset.from_spec(data)
    return f"parts:{dataset.n_images}:{dataset.seed + 1}"


def held_out_concepts(run: StoredRun, spec: str) -> tuple[np.ndarray, np.ndarray]:
    """Each neuron's part read from images the clustering never saw: pass 1 of the same model and layers (and the
    same dictionaries, for a run of dictionary units) on the Parts sample `spec` (computed once into the store),
    then the part under its argmax there."""
    from neurocarto.compute.pipeline import precompute
    from neurocarto.config import ExecutionConfig, RunConfig
    from neurocarto.inputs.prepared_run import prepare

    config = RunConfig.from_dict(run.config)
    held_out = replace(config, data=spec, max_images=None, top_k=None, name=f"{run.name}-held-out")
    execution = ExecutionConfig(cache=run.store.directory, progress=False)
    if config.units != "neurons":       # the run's own dictionaries, so that its latents are read there
        key = prepare(held_out, execution).key
        for quality in stored_qualities(run):
            store_dictionary(run.store, key, quality["layer"], stored_weights(run.store, run.key, quality["layer"]),
                             quality)
    manifest = precompute(held_out, execution, log=lambda _: None, stages=["pass1"])
    key = manifest["key"]
    if manifest["counts"]["neurons"] != len(run.layer_of):
        raise NeuroCartoError(f"the held-out run {manifest['name']} has {manifest['counts']['neurons']} neurons, "
                              f"this run {len(run.layer_of)}: rebuild it, or use --truth top-images")
    top_images, top_values, top_positions = (run.store.get_array(key, name)
                                             for name in (keys.TOP_IMAGES, keys.TOP_VALUES, keys.TOP_POSITIONS))
    maps = _part_maps(spec, top_images, run.store.get_array(key, keys.IMAGE_INDEX))
    return neuron_concepts(top_images, top_values, top_positions, run.layer_of, run.layers, maps)


def clustered_share(labels: np.ndarray) -> float:
    return float(sum(len(group) for group in groups_of(labels)) / len(labels))


def cut_point(labels: np.ndarray, run: StoredRun, histograms: np.ndarray, truth: tuple | None,
              rng: np.random.Generator, trials: int, other_concept: bool) -> dict:
    """The scores of one grouping: on any data, and against the parts where they are known."""
    groups = groups_of(labels)
    sizes = np.bincount(run.layer_of)
    point = {"clusters": len(groups), "clustered": clustered_share(labels),
             "layers with clusters": len({int(run.layer_of[g[0]]) for g in groups}),
             "largest share of a layer": max((len(g) / sizes[run.layer_of[g[0]]] for g in groups), default=0.0),
             "class agreement": class_agreement(labels, histograms)}
    if truth is not None:
        concepts, clear = truth
        in_cluster = labels >= 0
        point.update({"coverage": float((in_cluster & clear).sum() / max(clear.sum(), 1)),
                      "purity": _mean(purity(labels, concepts)),
                      "intruder accuracy": intruder_accuracy(labels, concepts, run.layer_of, rng, trials,
                                                             other_concept)})
    return point


def above_original(ours: list[dict], original: list[dict]) -> float | None:
    """Smallest margin of our purity over the original's at each coverage the original reaches (ours
    interpolated along our curve); None where our curve does not reach it."""
    points = sorted((p["coverage"], p["purity"]) for p in ours if p["clusters"])
    margins = []
    for point in original:
        if point["clusters"] and points and points[0][0] <= point["coverage"] <= points[-1][0]:
            ours_at = np.interp(point["coverage"], [c for c, _ in points], [q for _, q in points])
            margins.append(ours_at - point["purity"])
    return float(min(margins)) if margins else None


def parts_scores(run: StoredRun, truth: str, intruders: str, groupings: dict, randoms: list, embeddings: dict,
                 rng: np.random.Generator, trials: int) -> tuple[dict, tuple[np.ndarray, np.ndarray]]:
    """On Parts data: each neuron's part, the purity and intruder accuracy of every grouping, the embedding's
    scores by object; and (concepts, neurons with a clear part) for the scores along the cut."""
    from neurocarto.zoo.parts import OBJECT_OF_PART, PART_NAMES

    layer_of = run.layer_of
    if truth == "held-out":
        concepts, dominance = held_out_concepts(run, held_out_spec(run.config.get("data")))
    else:
        maps = _part_maps(run.config.get("data"), run.top_images, run.array(keys.IMAGE_INDEX))
        concepts, dominance = neuron_concepts(run.top_images, run.array(keys.TOP_VALUES), run.array(keys.TOP_POSITIONS),
                                              layer_of, run.layers, maps)
    clear = (concepts > 0) & (dominance >= 0.5)
    per_layer = []
    for index, layer in enumerate(run.layers):
        in_layer = layer_of == index
        row = {"layer": layer.name}
        for name, labels in groupings.items():
            row[name] = _mean(purity(np.where(in_layer, labels, -1), concepts))
        row["random groups"] = _mean([_mean(purity(np.where(in_layer, labels, -1), concepts)) for labels in randoms])
        row["clusters"] = len(groups_of(np.where(in_layer, run.cluster_labels, -1)))
        per_layer.append(row)
    purities = {name: _mean(purity(labels, concepts)) for name, labels in groupings.items()}
    purities["random groups"] = _mean([_mean(purity(labels, concepts)) for labels in randoms])
    other_concept = intruders == "other-concept"
    intruder_scores = {name: intruder_accuracy(labels, concepts, layer_of, rng, trials, other_concept)
                       for name, labels in groupings.items()}
    intruder_scores["random groups"] = _mean([intruder_accuracy(labels, concepts, layer_of, rng, trials,
                                                                other_concept) for labels in randoms[:3]])
    scores = {
        "neurons": [{"id": run.neuron_ids[n], "concept": PART_NAMES[concepts[n]], "dominance": round(float(dominance[n]), 3)}
                    for n in range(len(concepts))],
        "concepts": {PART_NAMES[p]: int((concepts[clear] == p).sum()) for p in range(1, len(PART_NAMES))},
        "neurons with a clear part": int(clear.sum()),
        "purity": purities, "purity per layer": per_layer, "intruder accuracy": intruder_scores,
        "embedding": {name: embedding_scores(vectors[clear], OBJECT_OF_PART[concepts[clear]], concepts[clear])
                      for name, vectors in embeddings.items()}}
    return scores, (concepts, clear)


def evaluate_run(store: Store, reference: str, trials: int = 100, repeats: int = 10, seed: int = 0,
                 truth: str = "held-out", intruders: str = "other-concept") -> dict:
    """Every score of the report, ours and the baselines, as a dict (see `format_report`).

    `truth` (Parts data): `held-out` reads each neuron's part from a second Parts sample, `top-images` from
    the run's own top images (which the clustering also used). `intruders`: `other-concept` draws each
    intruder among neurons of another concept than the cluster's, `any` among all other neurons."""
    if trials < 1:
        raise NeuroCartoError(f"--trials {trials}: the intruder test needs at least 1 trial per cluster")
    if truth not in ("held-out", "top-images") or intruders not in ("other-concept", "any"):
        raise NeuroCartoError(f"--truth {truth} --intruders {intruders}: valid: --truth held-out|top-images, "
                              "--intruders other-concept|any")
    run = StoredRun(store, store.resolve(reference))
    run.require(keys.PASS1, keys.CLUSTER, keys.EMBED)
    rng = np.random.default_rng(seed)
    cluster_config, layer_of = run.config["cluster"], run.layer_of
    sets = run.top_sets
    groups = layer_of if cluster_config["per_layer"] else np.zeros_like(layer_of)
    default_cut = cluster_config["threshold"]
    groupings = {"ours": run.cluster_labels,
                 "original (LSH buckets)": original_grouping(sets, groups, default_cut or 0.3, cluster_config["seed"])}
    randoms = [random_grouping(run.cluster_labels, layer_of, rng) for _ in range(repeats)]
    params = EmbedParams(**{k: v for k, v in run.config["embed"].items() if k in EmbedParams.__dataclass_fields__})
    offsets, words = embed.image_sentences(sets)
    embeddings = {"ours": run.embedding,
                  "original update rule": original_rule_embedding(offsets, words, len(layer_of), params),
                  "random": rng.normal(size=run.embedding.shape)}
    result = {"run": run.name, "key": run.key, "neurons": len(layer_of),
              "clusters": {name: len(groups_of(labels)) for name, labels in groupings.items()},
              "cut": "automatic" if default_cut is None else default_cut,
              "definitions": {"truth": truth, "intruders": intruders, "trials": trials}}

    histograms = class_histograms(run.top_images, run.array(keys.TOP_VALUES), run.image_labels, len(run.class_names))
    agreement = {name: class_agreement(labels, histograms) for name, labels in groupings.items()}
    agreement["random groups"] = _mean([class_agreement(labels, histograms) for labels in randoms])
    fired = histograms.sum(axis=1) > 0
    dominant = histograms.argmax(axis=1)
    result["class proxy"] = {
        "cluster class agreement": agreement,
        "embedding": {name: embedding_scores(vectors[fired], dominant[fired]) for name, vectors in embeddings.items()}}

    known_parts = None
    if is_parts(run.config.get("data")):
        result["parts"], known_parts = parts_scores(run, truth, intruders, groupings, randoms, embeddings, rng,
                                                     trials)

    other_concept = intruders == "other-concept"
    curves = {"ours": [], "original (LSH buckets)": []}
    for cut in (t for t in CUTS if t >= cluster_config["floor"]):
        labels = hierarchy.cut_labels(len(layer_of), run.merges, cut, run.merge_caps)
        original = original_grouping(sets, groups, cut, cluster_config["seed"])
        for name, grouping in (("ours", labels), ("original (LSH buckets)", original)):
            curves[name].append({"cut": cut, **cut_point(grouping, run, histograms, known_parts, rng, trials,
                                                         other_concept)})
    result["along the cut"] = curves
    result["default cut"] = cut_point(run.cluster_labels, run, histograms, known_parts, rng, trials,
                                      other_concept)
    if known_parts is not None:
        result["purity margin over the original"] = above_original(curves["ours"], curves["original (LSH buckets)"])
    return result


def _table(header: list[str], rows: list[list]) -> str:
    cells = [[f"{c:.3f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


def format_report(result: dict) -> str:
    """The scores as Markdown tables."""
    definitions = result["definitions"]
    blocks = [f"# Evaluation of {result['run']} ({result['key']}), {result['neurons']} neurons",
              f"clusters (≥ 2 neurons) at the {result['cut']} cut: "
              + ", ".join(f"{name} {count}" for name, count in result["clusters"].items())]
    parts = result.get("parts")
    blocks.append(format_curves(result))
    if parts:
        source = ("a second Parts sample the clustering never saw" if definitions["truth"] == "held-out"
                  else "the run's own top images")
        blocks.append(f"## Ground truth (Parts)\n{parts['neurons with a clear part']} neurons have a clear part "
                      f"(the same part under the argmax for ≥ 50% of their top images in {source}): "
                      + ", ".join(f"{name} {count}" for name, count in parts["concepts"].items()))
        names = list(parts["purity"])
        blocks.append("Cluster purity (share of members with the cluster's majority concept; mean over clusters)\n\n"
                      + _table(["layer", "clusters (ours)"] + names,
                               [[row["layer"], row["clusters"]] + [row[n] for n in names]
                                for row in parts["purity per layer"] if row["clusters"]]
                               + [["all layers", result["clusters"]["ours"]] + [parts["purity"][n] for n in names]]))
        intruder = ("another neuron of the layer whose part is not the cluster's"
                    if definitions["intruders"] == "other-concept" else "any other neuron of the layer")
        blocks.append(f"Intruder test (3 members + 1 intruder, {intruder}; {definitions['trials']} trials per "
                      "cluster; chance 0.25)\n\n"
                      + _table(["grouping", "accuracy"], [[n, v] for n, v in parts["intruder accuracy"].items()]))
        blocks.append("Embedding: mean cosine of pairs of neurons with clear parts; neighbours = share of the 10 "
                      "nearest whose part belongs to the same object\n\n"
                      + _table(["embedding", "same part", "other part, same object", "other object",
                                "neighbours same object", "chance"],
                               [[n, s["same group"], s["same group, other subgroup"],
                                 s["other groups"], s["neighbors in group"], s["chance"]]
                                for n, s in parts["embedding"].items()]))
    proxy = result["class proxy"]
    blocks.append("## Class-label proxy (any data)\nCluster class agreement (mean cosine between members' "
                  "top-image class distributions)\n\n"
                  + _table(["grouping", "agreement"], [[n, v] for n, v in proxy["cluster class agreement"].items()]))
    blocks.append("Embedding: mean cosine of neurons with the same / another dominant class; neighbours = share of "
                  "the 10 nearest with the same dominant class\n\n"
                  + _table(["embedding", "same class", "other class", "neighbours same class", "chance"],
                           [[n, s["same group"], s["other groups"], s["neighbors in group"], s["chance"]]
                            for n, s in proxy["embedding"].items()]))
    return "\n\n".join(blocks)


def format_curves(result: dict) -> str:
    """The default cut and both groupings along the cut, as one table."""
    parts = "coverage" in result["default cut"]
    columns = (["coverage", "purity", "intruder accuracy"] if parts else []) + \
        ["clustered", "layers with clusters", "largest share of a layer", "class agreement", "clusters"]
    rows = [["ours, default cut", "—"] + [result["default cut"][c] for c in columns]]
    for name, points in result["along the cut"].items():
        rows += [[name, point["cut"]] + [point[c] for c in columns] for point in points]
    coverage = "coverage = share of neurons with a clear part that are in a cluster of ≥ 2; " if parts else ""
    text = ("## Along the cut\nEach grouping cut at each mean Jaccard (the original: its LSH tuned to that "
            f"threshold); {coverage}clustered = share of all neurons in a cluster of ≥ 2\n\n"
            + _table(["grouping", "cut"] + columns, rows))
    margin = result.get("purity margin over the original")
    if margin is not None:
        text += (f"\n\nOurs against the original at every coverage it reaches: purity higher by at least "
                 f"{margin:.3f}" if margin > 0 else f"\n\nOurs is not purer than the original everywhere "
                 f"(smallest margin {margin:.3f})")
    return text
