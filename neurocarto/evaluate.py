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

import math
from dataclasses import dataclass

import numba
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from . import cluster, embed
from .config import EmbedParams
from .errors import NeuroCartoError
from .models import Layer
from .stages import clustering_sets
from .store import Store

NEIGHBOURS = 10


@dataclass
class RunArrays:
    """What the evaluation reads of a run."""

    key: str
    name: str
    data: str | None
    layers: list[Layer]
    layer_of: np.ndarray
    top_images: np.ndarray
    top_values: np.ndarray
    top_positions: np.ndarray
    image_index: np.ndarray
    image_labels: np.ndarray
    class_names: list[str]
    cluster_labels: np.ndarray
    embedding: np.ndarray
    config: dict


def load_arrays(store: Store, reference: str) -> RunArrays:
    key = store.resolve(reference)
    manifest = store.manifest(key)
    missing = [s for s in ("pass1", "cluster", "embed") if manifest["stages"].get(s, {}).get("status") != "done"]
    if missing:
        raise NeuroCartoError(f"run {manifest['name']} lacks the {', '.join(missing)} stage(s): "
                              "finish it with `python -m neurocarto precompute`")
    layers = [Layer.from_description(layer) for layer in manifest["layers"]]
    return RunArrays(
        key=key, name=manifest["name"], data=manifest["config"].get("data"), layers=layers,
        layer_of=np.repeat(np.arange(len(layers)), [layer.channels for layer in layers]),
        top_images=store.get_array(key, "top_images"), top_values=store.get_array(key, "top_values"),
        top_positions=store.get_array(key, "top_positions"), image_index=store.get_array(key, "image_index"),
        image_labels=store.get_array(key, "image_labels"), class_names=store.get_json(key, "class_names"),
        cluster_labels=store.get_array(key, "cluster_labels"), embedding=store.get_array(key, "embedding"),
        config=manifest["config"])


# ---- ground truth: a concept per neuron ----

def neuron_concepts(top_images: np.ndarray, top_values: np.ndarray, top_positions: np.ndarray,
                    layer_of: np.ndarray, layers: list[Layer], part_maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per neuron, the part most often under its argmax (0: background) and the share of its top images
    showing it. Under the argmax = the map cell of the position widened by half a cell on each side;
    its most common non-background part, else background. Entries where the neuron did not fire count
    as background."""
    height, width = part_maps.shape[1:]
    n_parts = int(part_maps.max()) + 1
    concepts = np.zeros(len(top_images), dtype=np.int64)
    dominance = np.zeros(len(top_images), dtype=np.float64)
    for neuron in range(len(top_images)):
        layer = layers[layer_of[neuron]]
        cell_h, cell_w = height / layer.height, width / layer.width
        found = np.zeros(n_parts, dtype=np.int64)
        for image, value, position in zip(top_images[neuron], top_values[neuron], top_positions[neuron]):
            if value <= 0:
                found[0] += 1
                continue
            y, x = divmod(int(position), layer.width)
            window = part_maps[image, max(0, math.floor((y - 0.5) * cell_h)):math.ceil((y + 1.5) * cell_h),
                               max(0, math.floor((x - 0.5) * cell_w)):math.ceil((x + 1.5) * cell_w)]
            counts = np.bincount(window.ravel(), minlength=n_parts)
            found[int(np.argmax(counts[1:])) + 1 if counts[1:].any() else 0] += 1
        concepts[neuron] = int(np.argmax(found))
        dominance[neuron] = found[concepts[neuron]] / max(found.sum(), 1)
    return concepts, dominance


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
                      trials: int = 20) -> float:
    """3 members of a cluster (≥ 3) and 1 other neuron of its layer; the judge names the neuron whose
    concept is rarest among the four (ties: a uniform guess among them). Expected accuracy."""
    scores = []
    for group in groups_of(labels):
        if len(group) < 3:
            continue
        others = np.setdiff1d(np.flatnonzero(layer_of == layer_of[group[0]]), group)
        if not len(others):
            continue
        for _ in range(trials):
            four = np.concatenate([rng.choice(group, 3, replace=False), rng.choice(others, 1)])
            counts = np.array([(concepts[four] == concepts[n]).sum() for n in four])
            rarest = np.flatnonzero(counts == counts.min())
            scores.append(1 / len(rarest) if 3 in rarest else 0.0)
    return float(np.mean(scores)) if scores else float("nan")


# ---- embeddings ----

@numba.njit(cache=True)
def _original_rule(offsets, words, vectors, epochs, negatives, learning_rate, seed):
    np.random.seed(seed)
    n_sentences, n_neurons = len(offsets) - 1, vectors.shape[0]
    for _ in range(epochs):
        for s in np.random.permutation(n_sentences):
            sentence = words[offsets[s]:offsets[s + 1]].copy()
            np.random.shuffle(sentence)
            for i in range(len(sentence) - 1):
                u, v = sentence[i], sentence[i + 1]
                coefficient = 1.0 - 1.0 / (1.0 + math.exp(-np.dot(vectors[u], vectors[v])))
                gradient_u = -coefficient * vectors[v]
                gradient_v = -coefficient * vectors[u]
                for _ in range(negatives):
                    w = np.random.randint(n_neurons)
                    gradient_u += vectors[w] / (1.0 + math.exp(-np.dot(vectors[w], vectors[u])))
                    gradient_v += vectors[w] / (1.0 + math.exp(-np.dot(vectors[w], vectors[v])))
                vectors[u] -= learning_rate * gradient_u
                vectors[v] -= learning_rate * gradient_v
    return vectors


def original_rule_embedding(offsets: np.ndarray, words: np.ndarray, n_neurons: int, params: EmbedParams) -> np.ndarray:
    """The original's update rule on the same sentences, same dimensions, epochs, negatives and rate."""
    start = np.random.default_rng(params.seed).random((n_neurons, params.dimensions)) - 0.5
    return _original_rule(offsets, words, start, params.epochs, params.negatives, params.learning_rate, params.seed)


def _cosine(vectors: np.ndarray) -> np.ndarray:
    unit = embed.unit_rows(vectors)
    return unit @ unit.T


def _pair_cosine_sums(unit: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
    """Sum of cosines over ordered pairs i ≠ j with equal labels, and their number, from per-label sums of
    unit vectors: Σ_{i,j in g} u_i·u_j = ‖Σ_g u‖², so no n × n matrix is formed."""
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    sums = np.zeros((len(counts), unit.shape[1]))
    np.add.at(sums, inverse, unit)
    return float((sums ** 2).sum() - (unit ** 2).sum()), int((counts * (counts - 1)).sum())


def _ratio(total: float, count: int) -> float:
    return total / count if count else float("nan")


def embedding_scores(vectors: np.ndarray, groups: np.ndarray, subgroups: np.ndarray | None = None) -> dict:
    """Mean cosine of pairs in the same group vs different groups (and, with `subgroups`, same group but
    another subgroup), and the share of each neuron's 10 nearest that share its group, against chance.

    Vectors are centred first: skip-gram vectors share a common direction that makes every raw cosine
    near 1 without changing which neurons are nearest. O(neurons × dimensions) but for the neighbours."""
    centred = vectors - vectors.mean(axis=0)
    unit = embed.unit_rows(centred)
    n = len(unit)
    all_sum, all_count = _pair_cosine_sums(unit, np.zeros(n, dtype=np.int64))
    same_sum, same_count = _pair_cosine_sums(unit, groups)
    scores = {"same group": _ratio(same_sum, same_count),
              "other groups": _ratio(all_sum - same_sum, all_count - same_count)}
    if subgroups is not None:
        _, both = np.unique(np.stack([groups, subgroups], axis=1), axis=0, return_inverse=True)
        sub_sum, sub_count = _pair_cosine_sums(unit, both.ravel())
        scores["same group, other subgroup"] = _ratio(same_sum - sub_sum, same_count - sub_count)
    nearest, _ = embed.cosine_neighbors(centred, NEIGHBOURS)
    scores["neighbours in group"] = float((groups[nearest] == groups[:, None]).mean())
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    scores["chance"] = float(((counts[inverse] - 1) / (n - 1)).mean())
    return scores


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
        similarity = _cosine(histograms[group])
        values.append(similarity[np.triu_indices(len(group), 1)].mean())
    return float(np.mean(values)) if values else float("nan")


# ---- the report ----

def _mean(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()) if values.size else float("nan")


def _part_maps(arrays: RunArrays) -> np.ndarray | None:
    """Part maps of the run's top images (indexed by run image id), if the run is on Parts data."""
    if not arrays.data or not (arrays.data == "parts" or arrays.data.startswith("parts:")):
        return None
    from .zoo.parts import SIZE, PartsDataset

    dataset = PartsDataset.from_spec(arrays.data)
    maps = np.zeros((len(arrays.image_index), SIZE, SIZE), dtype=np.uint8)
    for image in np.unique(arrays.top_images):
        maps[image] = dataset.part_map(int(arrays.image_index[image]))
    return maps


def evaluate_run(store: Store, reference: str, trials: int = 20, repeats: int = 10, seed: int = 0) -> dict:
    """Every score of the report, ours and the baselines, as a dict (see `format_report`)."""
    if trials < 1:
        raise NeuroCartoError(f"--trials {trials}: the intruder test needs at least 1 trial per cluster")
    arrays = load_arrays(store, reference)
    rng = np.random.default_rng(seed)
    cluster_config, layer_of = arrays.config["cluster"], arrays.layer_of
    sets = clustering_sets(arrays.top_images, arrays.top_values, len(arrays.image_index))
    groups = layer_of if cluster_config["per_layer"] else np.zeros_like(layer_of)
    groupings = {"ours": arrays.cluster_labels,
                 "original (LSH buckets)": original_grouping(sets, groups, cluster_config["threshold"],
                                                             cluster_config["seed"])}
    randoms = [random_grouping(arrays.cluster_labels, layer_of, rng) for _ in range(repeats)]
    params = EmbedParams(**{k: v for k, v in arrays.config["embed"].items() if k in EmbedParams.__dataclass_fields__})
    offsets, words = embed.image_sentences(sets)
    embeddings = {"ours": arrays.embedding,
                  "original update rule": original_rule_embedding(offsets, words, len(layer_of), params),
                  "random": rng.normal(size=arrays.embedding.shape)}
    result = {"run": arrays.name, "key": arrays.key, "neurons": len(layer_of),
              "clusters": {name: len(groups_of(labels)) for name, labels in groupings.items()}}

    histograms = class_histograms(arrays.top_images, arrays.top_values, arrays.image_labels, len(arrays.class_names))
    agreement = {name: class_agreement(labels, histograms) for name, labels in groupings.items()}
    agreement["random groups"] = _mean([class_agreement(labels, histograms) for labels in randoms])
    fired = histograms.sum(axis=1) > 0
    dominant = histograms.argmax(axis=1)
    result["class proxy"] = {
        "cluster class agreement": agreement,
        "embedding": {name: embedding_scores(vectors[fired], dominant[fired]) for name, vectors in embeddings.items()}}

    maps = _part_maps(arrays)
    if maps is not None:
        from .zoo.parts import OBJECT_OF_PART, PART_NAMES

        concepts, dominance = neuron_concepts(arrays.top_images, arrays.top_values, arrays.top_positions, layer_of,
                                              arrays.layers, maps)
        per_layer = []
        for index, layer in enumerate(arrays.layers):
            in_layer = layer_of == index
            row = {"layer": layer.name}
            for name, labels in groupings.items():
                row[name] = _mean(purity(np.where(in_layer, labels, -1), concepts))
            row["random groups"] = _mean([_mean(purity(np.where(in_layer, labels, -1), concepts)) for labels in randoms])
            row["clusters"] = len(groups_of(np.where(in_layer, arrays.cluster_labels, -1)))
            per_layer.append(row)
        purities = {name: _mean(purity(labels, concepts)) for name, labels in groupings.items()}
        purities["random groups"] = _mean([_mean(purity(labels, concepts)) for labels in randoms])
        intruders = {name: intruder_accuracy(labels, concepts, layer_of, rng, trials) for name, labels in groupings.items()}
        intruders["random groups"] = _mean([intruder_accuracy(labels, concepts, layer_of, rng, trials)
                                            for labels in randoms[:3]])
        clear = (concepts > 0) & (dominance >= 0.5)
        neuron_ids = store.get_json(arrays.key, "neuron_ids")
        result["parts"] = {
            "neurons": [{"id": neuron_ids[n], "concept": PART_NAMES[concepts[n]], "dominance": round(float(dominance[n]), 3)}
                        for n in range(len(concepts))],
            "concepts": {PART_NAMES[p]: int((concepts[clear] == p).sum()) for p in range(1, len(PART_NAMES))},
            "neurons with a clear part": int(clear.sum()),
            "purity": purities, "purity per layer": per_layer, "intruder accuracy": intruders,
            "embedding": {name: embedding_scores(vectors[clear], OBJECT_OF_PART[concepts[clear]], concepts[clear])
                          for name, vectors in embeddings.items()}}
    return result


def _table(header: list[str], rows: list[list]) -> str:
    cells = [[f"{c:.3f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


def format_report(result: dict) -> str:
    """The scores as Markdown tables."""
    blocks = [f"# Evaluation of {result['run']} ({result['key']}), {result['neurons']} neurons",
              "clusters (≥ 2 neurons): " + ", ".join(f"{name} {count}" for name, count in result["clusters"].items())]
    parts = result.get("parts")
    if parts:
        blocks.append(f"## Ground truth (Parts)\n{parts['neurons with a clear part']} neurons have a clear part "
                      "(the same part under the argmax for ≥ 50% of their top images): "
                      + ", ".join(f"{name} {count}" for name, count in parts["concepts"].items()))
        names = list(parts["purity"])
        blocks.append("Cluster purity (share of members with the cluster's majority concept; mean over clusters)\n\n"
                      + _table(["layer", "clusters (ours)"] + names,
                               [[row["layer"], row["clusters"]] + [row[n] for n in names]
                                for row in parts["purity per layer"] if row["clusters"]]
                               + [["all layers", result["clusters"]["ours"]] + [parts["purity"][n] for n in names]]))
        blocks.append("Intruder test (3 members + 1 other neuron of the layer; chance 0.25)\n\n"
                      + _table(["grouping", "accuracy"], [[n, v] for n, v in parts["intruder accuracy"].items()]))
        blocks.append("Embedding: mean cosine of pairs of neurons with clear parts; neighbours = share of the 10 "
                      "nearest whose part belongs to the same object\n\n"
                      + _table(["embedding", "same part", "other part, same object", "other object",
                                "neighbours same object", "chance"],
                               [[n, s["same group"], s["same group, other subgroup"],
                                 s["other groups"], s["neighbours in group"], s["chance"]]
                                for n, s in parts["embedding"].items()]))
    proxy = result["class proxy"]
    blocks.append("## Class-label proxy (any data)\nCluster class agreement (mean cosine between members' "
                  "top-image class distributions)\n\n"
                  + _table(["grouping", "agreement"], [[n, v] for n, v in proxy["cluster class agreement"].items()]))
    blocks.append("Embedding: mean cosine of neurons with the same / another dominant class; neighbours = share of "
                  "the 10 nearest with the same dominant class\n\n"
                  + _table(["embedding", "same class", "other class", "neighbours same class", "chance"],
                           [[n, s["same group"], s["other groups"], s["neighbours in group"], s["chance"]]
                            for n, s in proxy["embedding"].items()]))
    return "\n\n".join(blocks)
