"""Two stored runs over the same images compared (`concepts.matching`, `concepts.alignment`), kept in the store.

    comparison = compare(run_a, run_b)         # computed once per pair and cut, then read
    comparison.table()                          # every concept of both runs: category, best match, similarity
    comparison.partner("b", "mixed4b:c3")       # the concepts of run A a concept of run B matches

A comparison is kept under the first run's key (`keys.comparison`) and read in either order; it is computed again
when either run's clusters or projection were. Both runs' views share one frame: run A's projection as it is and
run B's transferred onto it (`concepts.alignment`). Torch-free.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from neurocarto.concepts import matching
from neurocarto.concepts.alignment import transferred_projection
from neurocarto.concepts.cluster import clustering_sets
from neurocarto.concepts.hierarchy import AUTO, parse_cut
from neurocarto.errors import NeuroCartoError
from neurocarto.store import keys

SIDES = ("a", "b")
VERSION = 3                 # of the matching: a comparison stored by another version is computed again
CANDIDATE_SHARE = 0.5       # cross pairs are looked for down to this share of the lowest match threshold


def shared_images_problem(run_a, run_b) -> str | None:
    """Why two runs cannot be compared, naming what to run; None when they can."""
    data_a, data_b = run_a.manifest["data"], run_b.manifest["data"]
    config_a = run_a.config
    if data_a.get("fingerprint") != data_b.get("fingerprint") or not np.array_equal(
            run_a.array(keys.IMAGE_INDEX), run_b.array(keys.IMAGE_INDEX)):
        model_b = run_b.manifest["model"]
        command = " ".join(part for part in (
            "python -m neurocarto precompute", f"--model {model_b['spec']}",
            f"--weights {model_b['weights']}" if model_b.get("weights") else "",
            f"--data {config_a['data']}" if config_a.get("data") else "",
            f"--max-images {config_a['max_images']}" if config_a.get("max_images") else "",
            f"--seed {config_a.get('seed', 0)}") if part)
        return (f"runs {run_a.name} and {run_b.name} do not share images ({data_a['description']}, "
                f"{run_a.manifest['counts']['images']:,} images against {data_b['description']}, "
                f"{run_b.manifest['counts']['images']:,}): compare runs over the same images, e.g. run B's model on "
                f"A's: {command}")
    if run_a.top_images.shape[1] != run_b.top_images.shape[1]:
        return (f"runs {run_a.name} and {run_b.name} keep {run_a.top_images.shape[1]} and "
                f"{run_b.top_images.shape[1]} top images a neuron: compute both with the same --top-k")
    return None


def _stamp(run) -> dict:
    """What a comparison of `run` depends on: its clusters' and its projection's stage inputs."""
    stages = run.manifest["stages"]
    return {"key": run.key, keys.CLUSTER: stages[keys.CLUSTER].get("inputs"), keys.EMBED: stages[keys.EMBED].get("inputs")}


@dataclass
class Comparison:
    """Run A and run B matched: per side ("a", "b") each neuron's best partner in the other run and their Jaccard,
    the concepts (`matching.Concepts` at `cut`) with their category, best match and similarity, and the matched
    concepts; the layer × layer similarity and thresholds (A's layers × B's); both projections in A's frame."""

    runs: dict                  # side → StoredRun
    cut: str | float
    arrays: dict                # name → array, as stored (sides "a", "b" for A, B)
    seconds: float = 0.0
    frame: str = "a"            # the side whose own projection both views share

    def run(self, side: str):
        return self.runs[side]

    def concepts(self, side: str) -> matching.Concepts:
        return matching.Concepts(self.arrays[f"{side}/concept_offsets"], self.arrays[f"{side}/concept_members"],
                                 self.arrays[f"{side}/concept_layer"])

    @cached_property
    def _concept_of_neuron(self) -> dict:
        return {side: self.concepts(side).of_neuron(len(self.run(side).layer_of)) for side in SIDES}

    def concept_of_neuron(self, side: str) -> np.ndarray:
        """(neurons,) the concept of each neuron of that side."""
        return self._concept_of_neuron[side]

    def concept_ids(self, side: str) -> list[str]:
        """Names as the class graph gives them: `layer:c<anchor>` for a cluster, `layer:<channel>` alone."""
        run, concepts = self.run(side), self.concepts(side)
        anchors = concepts.members[concepts.offsets[:-1]]
        return [f"{run.layer_names[layer]}:{'c' if size > 1 else ''}{anchor - run.layer_offsets[layer]}"
                for anchor, layer, size in zip(anchors.tolist(), concepts.layer.tolist(), concepts.sizes.tolist())]

    def matches(self, side: str, concept: int) -> np.ndarray:
        """The other side's concepts this concept matches, most similar first."""
        offsets, items = self.arrays[f"{side}/match_offsets"], self.arrays[f"{side}/match_items"]
        return items[offsets[concept]:offsets[concept + 1]]

    def category(self, side: str) -> np.ndarray:
        return self.arrays[f"{side}/category"].astype(str)

    def projection(self, side: str) -> np.ndarray:
        """(neurons, 2) in the frame's projection: its own, or anchored on it."""
        return self.run(side).projection if side == self.frame else self.arrays["aligned_projection"]

    def counts(self) -> dict:
        """Per side, how many concepts (clusters of two or more neurons, and all units) fall in each category."""
        found = {}
        for side in SIDES:
            category, sizes = self.category(side), self.concepts(side).sizes
            found[side] = {"clusters": {name: int(((category == name) & (sizes > 1)).sum())
                                        for name in matching.CATEGORIES},
                           "units": {name: int((category == name).sum()) for name in matching.CATEGORIES}}
        return found

    def table(self, side: str | None = None, clusters_only: bool = False) -> list[dict]:
        """One row per concept (of one side, or both): its id, layer, size, category, best match in the other run
        and their similarity, and every concept it matches."""
        rows = []
        for mine in SIDES if side is None else (side,):
            theirs = "b" if mine == "a" else "a"
            ids, other_ids = self.concept_ids(mine), self.concept_ids(theirs)
            concepts, run = self.concepts(mine), self.run(mine)
            best, similarity = self.arrays[f"{mine}/best"], self.arrays[f"{mine}/similarity"]
            for concept, (name, layer, size) in enumerate(zip(ids, concepts.layer.tolist(), concepts.sizes.tolist())):
                if clusters_only and size < 2:
                    continue
                rows.append({"run": mine, "concept": name, "layer": run.layer_names[layer], "size": size,
                             "category": str(self.arrays[f"{mine}/category"][concept]),
                             "best": other_ids[best[concept]] if best[concept] >= 0 else None,
                             "similarity": round(float(similarity[concept]), 4),
                             "matches": [other_ids[m] for m in self.matches(mine, concept).tolist()]})
        return rows

    def concept_index(self, side: str, name: str) -> int:
        """A concept by the id `concept_ids` gives it, or a neuron id (its concept)."""
        run = self.run(side)
        neuron = run.neuron_index(name)
        if neuron is not None:
            return int(self.concept_of_neuron(side)[neuron])
        ids = self.concept_ids(side)
        if name not in ids:
            raise NeuroCartoError(f"run {run.name} has no concept or neuron {name!r} at this cut: e.g. {ids[0]}")
        return ids.index(name)

    def partner(self, side: str, name: str) -> list[str]:
        """The other run's concepts that the concept (or neuron's concept) `name` of `side` matches."""
        other_ids = self.concept_ids("b" if side == "a" else "a")
        return [other_ids[m] for m in self.matches(side, self.concept_index(side, name)).tolist()]

    def summary(self) -> dict:
        names = {side: self.run(side).name for side in SIDES}
        return {"runs": {side: {"key": self.run(side).key, "name": names[side]} for side in SIDES},
                "cut": self.cut, "counts": self.counts(), "seconds": round(self.seconds, 3),
                "matched_neurons": {side: int((self.arrays[f"{side}/neuron_matched"]).sum()) for side in SIDES},
                "layers": {side: self.run(side).layer_names for side in SIDES},
                "layer_similarity": np.round(self.arrays["layer_similarity"], 4).tolist()}

    def swapped(self) -> "Comparison":
        """The same comparison read as (B, A); both projections stay in the same frame."""
        arrays = {}
        for name, value in self.arrays.items():
            side, _, rest = name.partition("/")
            if side in SIDES and rest:
                arrays[f"{'b' if side == 'a' else 'a'}/{rest}"] = value
            else:
                arrays[name] = value if name == "aligned_projection" else value.T     # layer × layer tables
        return Comparison({"a": self.runs["b"], "b": self.runs["a"]}, self.cut, arrays, self.seconds,
                          "b" if self.frame == "a" else "a")


def _sets(run_a, run_b) -> tuple[np.ndarray, np.ndarray]:
    """Both runs' top-k sets, run B's silent entries numbered past run A's."""
    n_images = len(run_a.image_labels)
    past_a = n_images + run_a.top_images.size
    return run_a.top_sets, clustering_sets(run_b.top_images, run_b.array(keys.TOP_VALUES), past_a)


def _labels(run, cut) -> np.ndarray:
    return run.clustering(cut).labels


def candidate_threshold(thresholds: np.ndarray, sets_a: np.ndarray, sets_b: np.ndarray) -> float:
    """The Jaccard down to which cross pairs are found: CANDIDATE_SHARE of the lowest match threshold; in runs too
    large for every pair (matching.EXACT_PAIRS), at least that of two shared images, since pairs that share one
    image are as many as chance makes them and each says nothing."""
    candidate = CANDIDATE_SHARE * float(thresholds.min())
    if len(sets_a) * len(sets_b) > matching.EXACT_PAIRS:
        k_a, k_b = sets_a.shape[1], sets_b.shape[1]
        candidate = max(candidate, 2 / (k_a + k_b - 2) - 1e-6)       # below float32 rounding
    return candidate


def compute(run_a, run_b, cut: str | float = AUTO) -> Comparison:
    """Match the two runs' neurons and concepts and move B's projection into A's frame (not stored)."""
    started = time.perf_counter()
    sets_a, sets_b = _sets(run_a, run_b)
    layer_a, layer_b = run_a.layer_of, run_b.layer_of
    quantiles, means = matching.layer_pair_null(sets_a, layer_a, sets_b, layer_b)
    thresholds = matching.match_thresholds(quantiles, means, min(run_a.floor, run_b.floor))
    first, second, jaccard = matching.cross_pairs(sets_a, sets_b, candidate_threshold(thresholds, sets_a, sets_b))
    arrays = {"thresholds": thresholds, "layer_similarity": matching.layer_similarity(first, second, jaccard, layer_a,
                                                                                       layer_b)}
    clears = jaccard >= thresholds[layer_a[first], layer_b[second]]
    for side, (mine, theirs, n) in {"a": (first, second, len(layer_a)), "b": (second, first, len(layer_b))}.items():
        partner, best = matching.best_partners(n, mine, theirs, jaccard)
        matched = np.zeros(n, dtype=bool)
        matched[mine[clears]] = True
        arrays.update({f"{side}/neuron_partner": partner, f"{side}/neuron_jaccard": best,
                       f"{side}/neuron_matched": matched})
    concepts = {side: matching.Concepts.from_labels(_labels(run, cut), run.layer_of)
                for side, run in (("a", run_a), ("b", run_b))}
    similarity = matching.concept_similarity(concepts["a"], concepts["b"], len(layer_a), len(layer_b), first, second,
                                             jaccard)
    for side, found in matching.categories(similarity, concepts["a"], concepts["b"], thresholds).items():
        offsets = np.concatenate([[0], np.cumsum([len(m) for m in found["matches"]])]).astype(np.int64)
        arrays.update({f"{side}/concept_offsets": concepts[side].offsets, f"{side}/concept_members": concepts[side].members,
                       f"{side}/concept_layer": concepts[side].layer, f"{side}/best": found["best"],
                       f"{side}/similarity": found["similarity"], f"{side}/category": found["category"].astype("U6"),
                       f"{side}/match_offsets": offsets,
                       f"{side}/match_items": np.concatenate([np.empty(0, np.int64), *found["matches"]]).astype(np.int64)})
    anchored = np.flatnonzero(arrays["b/neuron_matched"])       # each at its best partner
    arrays["aligned_projection"] = transferred_projection(
        run_b.projection, run_a.projection, anchored, arrays["b/neuron_partner"][anchored],
        arrays["b/neuron_jaccard"][anchored].astype(np.float64), run_b.neighbor_table)
    return Comparison({"a": run_a, "b": run_b}, cut, arrays, time.perf_counter() - started)


def _store_comparison(comparison: Comparison) -> None:
    run_a, run_b = comparison.run("a"), comparison.run("b")
    name = keys.comparison(run_b.key, comparison.cut)
    for array_name, value in comparison.arrays.items():
        run_a.store.put_array(run_a.key, f"{name}/{array_name}", value)
    run_a.store.put_json(run_a.key, name, {"version": VERSION, "stamps": [_stamp(run_a), _stamp(run_b)],
                                           "cut": comparison.cut,
                                           "arrays": sorted(comparison.arrays), "seconds": comparison.seconds})


def stored_comparison(run_a, run_b, cut: str | float = AUTO) -> Comparison | None:
    """The comparison of the two runs at `cut` if the store holds one that is up to date, in either order."""
    for first, second, flip in ((run_a, run_b, False), (run_b, run_a, True)):
        name = keys.comparison(second.key, cut)
        if not first.store.has_json(first.key, name):
            continue
        record = first.store.get_json(first.key, name)
        if record.get("version") != VERSION or record["stamps"] != [_stamp(first), _stamp(second)]:
            continue
        arrays = {array: first.store.get_array(first.key, f"{name}/{array}") for array in record["arrays"]}
        found = Comparison({"a": first, "b": second}, cut, arrays, record["seconds"])
        return found.swapped() if flip else found
    return None


def compare(run_a, run_b, cut: str | float = AUTO, recompute: bool = False) -> Comparison:
    """The comparison of two complete runs over the same images, read from the store or computed and kept there;
    NeuroCartoError says why two runs cannot be compared and what to run."""
    for run in (run_a, run_b):
        if not run.complete:
            raise NeuroCartoError(f"run {run.name} is not complete: finish it with `python -m neurocarto precompute`")
    if run_a.key == run_b.key:
        raise NeuroCartoError(f"run {run_a.name} compared with itself: name two different runs")
    problem = shared_images_problem(run_a, run_b)
    if problem:
        raise NeuroCartoError(problem)
    cut = parse_cut(cut, max(run_a.floor, run_b.floor))
    found = None if recompute else stored_comparison(run_a, run_b, cut)
    if found is None:
        found = compute(run_a, run_b, cut)
        _store_comparison(found)
    return found


def comparison_text(comparison: Comparison, shown: int = 10) -> str:
    """The comparison for a terminal: each run's concepts by category, the layers' correspondence, and the shared
    clusters most alike."""
    runs = {side: comparison.run(side) for side in SIDES}
    lines = [f"{runs['a'].name} ({runs['a'].key}) and {runs['b'].name} ({runs['b'].key}), cut {comparison.cut}:"]
    counts = comparison.counts()
    for side in SIDES:
        clusters, units = counts[side]["clusters"], counts[side]["units"]
        lines.append(f"  {runs[side].name}: clusters " + ", ".join(f"{clusters[c]} {c}" for c in matching.CATEGORIES)
                     + "; all units " + ", ".join(f"{units[c]} {c}" for c in matching.CATEGORIES))
    similarity = comparison.arrays["layer_similarity"]
    lines.append("  layers (A → most alike in B, mean best Jaccard):")
    for layer, row in enumerate(similarity):
        best = int(np.argmax(row))
        lines.append(f"    {runs['a'].layer_names[layer]:<28} → {runs['b'].layer_names[best]:<28} {row[best]:.3f}")
    shared = sorted((row for row in comparison.table("a", clusters_only=True) if row["category"] == "shared"),
                    key=lambda row: -row["similarity"])
    if shared:
        lines.append(f"  shared clusters most alike (of {len(shared)}):")
        lines += [f"    {row['concept']:<24} ↔ {row['best']:<24} {row['similarity']:.3f}" for row in shared[:shown]]
    return "\n".join(lines)


def checkpoint_series(run, runs) -> list:
    """The runs among `runs` that are checkpoints of `run`'s training: the same model, layers, data, images and
    settings, other weights; ordered by their weights' file names, numbers compared as numbers (ckpt_2 < ckpt_10)."""
    import re

    def identity(candidate) -> tuple:
        config = {k: v for k, v in candidate.config.items() if k not in ("weights", "name")}
        return (candidate.manifest["model"]["spec"], candidate.manifest["data"].get("fingerprint"),
                tuple(candidate.layer_names), candidate.manifest["counts"]["images"], repr(sorted(config.items())))

    def natural(candidate) -> list:
        name = str(candidate.config.get("weights") or "")
        return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]

    same = [other for other in runs if other.key != run.key and identity(other) == identity(run)]
    return sorted(same, key=natural)


def timeline(checkpoints: list, final, cut: str | float = AUTO) -> dict:
    """When each of the final run's concepts appears over training: for every checkpoint (in order), the comparison
    with the final run; per checkpoint how many of the final run's clusters (and units) have a match, and per
    cluster the first checkpoint with a match, whether it then stays matched, or dissolves."""
    matched_by = []
    for checkpoint in checkpoints:
        comparison = compare(final, checkpoint, cut)
        matched_by.append(comparison.category("a") != matching.UNIQUE)
    reference = compare(final, checkpoints[0], cut) if checkpoints else None
    sizes = reference.concepts("a").sizes if reference is not None else np.zeros(0, dtype=np.int64)
    ids = reference.concept_ids("a") if reference is not None else []
    matched = np.array(matched_by).reshape(len(checkpoints), -1)
    clusters = sizes > 1
    concepts = []
    for concept in np.flatnonzero(clusters):
        history = matched[:, concept]
        first = int(np.argmax(history)) if history.any() else None
        concepts.append({"concept": ids[concept], "first": first,
                         "state": "never" if first is None else "stays" if history[first:].all() else "dissolves",
                         "matched": history.astype(int).tolist()})
    return {"final": {"key": final.key, "name": final.name},
            "checkpoints": [{"key": run.key, "name": run.name, "weights": run.config.get("weights")}
                            for run in checkpoints],
            "matched_clusters": matched[:, clusters].sum(axis=1).astype(int).tolist(),
            "matched_units": matched.sum(axis=1).astype(int).tolist(),
            "clusters": int(clusters.sum()), "units": int(len(sizes)), "concepts": concepts}


def timeline_text(found: dict) -> str:
    """The timeline for a terminal: per checkpoint the share of the final run's clusters matched, then how many of
    its clusters appear at each checkpoint and whether they stay."""
    lines = [f"{found['final']['name']}: {found['clusters']} clusters, {found['units']} units"]
    for index, checkpoint in enumerate(found["checkpoints"]):
        appear = sum(1 for concept in found["concepts"] if concept["first"] == index)
        lines.append(f"  {checkpoint['name']:<32} clusters matched {found['matched_clusters'][index]:>5} "
                     f"({found['matched_clusters'][index] / max(found['clusters'], 1):.0%}), "
                     f"units {found['matched_units'][index]:>6}; {appear} clusters first matched here")
    states = {state: sum(1 for c in found["concepts"] if c["state"] == state) for state in ("stays", "dissolves", "never")}
    lines.append(f"  clusters: {states['stays']} stay once matched, {states['dissolves']} dissolve again, "
                 f"{states['never']} never matched")
    return "\n".join(lines)
