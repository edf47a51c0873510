"""The coherence evaluation: each score against a hand-computed case, the Parts data, and the command."""
import json

import numpy as np
import pytest

from neurocarto.analysis.embedding_scores import embedding_scores, original_rule_embedding
from neurocarto.analysis.evaluate import (
    class_agreement,
    class_histograms,
    groups_of,
    intruder_accuracy,
    neuron_concepts,
    original_grouping,
    purity,
    random_grouping,
)
from neurocarto.concepts.embed import image_sentences
from neurocarto.config import EmbedParams
from neurocarto.neurons import Layer
from neurocarto.zoo.parts import OBJECT_OF_PART, PARTS_OF_CLASS, PartsDataset


def test_concept_is_the_part_under_the_argmax_cell():
    maps = np.zeros((3, 8, 8), dtype=np.uint8)
    maps[0, 0:2, 0:2] = 5          # top-left cell of a 4×4 map (2 px cells)
    maps[1, 0:2, 0:2] = 5
    maps[2, 6:8, 6:8] = 7          # bottom-right
    layers = [Layer("a", 2, 4, 4)]
    top_images = np.array([[0, 1, 2], [2, 0, 1]])
    top_values = np.array([[3.0, 2.0, 1.0], [3.0, 2.0, 0.0]])
    top_positions = np.array([[0, 0, 15], [15, 15, 0]])     # neuron 1's 2nd argmax misses image 0's part
    concepts, dominance = neuron_concepts(top_images, top_values, top_positions, np.zeros(2, dtype=int), layers, maps)
    assert concepts.tolist() == [5, 0] and dominance[0] == pytest.approx(2 / 3)
    assert dominance[1] == pytest.approx(2 / 3)     # one part 7, one miss, one silent entry: background 2 of 3


def test_original_grouping_joins_a_chain_that_shares_buckets():
    # a chain a–b–c where a and c share nothing: one LSH component, never one average-linkage cluster
    base = np.arange(100)
    sets = np.stack([base, np.r_[base[50:], 1000 + base[:50]], np.r_[1000 + base[:50], 2000 + base[:50]],
                     5000 + base])
    labels = original_grouping(sets, np.zeros(4, dtype=int), threshold=0.3)
    assert labels[0] == labels[1] == labels[2] >= 0 and labels[3] == -1
    assert original_grouping(sets, np.array([0, 0, 1, 1]), threshold=0.3)[2] == -1   # layers apart


def test_random_grouping_keeps_sizes_within_layers():
    labels = np.array([0, 0, 0, -1, 1, 1, -1, -1])
    layer_of = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    shuffled = random_grouping(labels, layer_of, np.random.default_rng(0))
    assert sorted(len(g) for g in groups_of(shuffled)) == [2, 3]
    assert all(len(set(layer_of[g])) == 1 for g in groups_of(shuffled))


def test_purity_and_intruders_on_designed_clusters():
    concepts = np.array([1, 1, 1, 2, 2, 2, 3, 3, 3, 4])
    pure = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, -1])
    mixed = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, -1])
    assert purity(pure, concepts).tolist() == [1.0, 1.0, 1.0]
    assert purity(mixed, concepts).tolist() == pytest.approx([1 / 3] * 3)
    layer_of = np.zeros(10, dtype=int)
    rng = np.random.default_rng(0)
    assert intruder_accuracy(pure, concepts, layer_of, rng) == 1.0           # the odd concept is the intruder
    same = np.ones(10, dtype=int)
    assert intruder_accuracy(pure, same, layer_of, rng, other_concept=False) == pytest.approx(0.25)  # a guess
    assert np.isnan(intruder_accuracy(pure, same, layer_of, rng))      # no intruder of another concept exists
    # {1, 1, 2}: the intruder is never of the majority concept 1, so always a 2, which ties with the member 2
    concepts = np.array([1, 1, 2, 1, 1, 1, 2, 2])
    labels = np.array([0, 0, 0, -1, -1, -1, -1, -1])
    assert intruder_accuracy(labels, concepts, np.zeros(8, dtype=int), rng) == pytest.approx(0.25)
    # any intruder: a 1 (3 of 5) leaves the member 2 rarest (0); a 2 (2 of 5) ties all four (1/4): 0.1 expected
    assert intruder_accuracy(labels, concepts, np.zeros(8, dtype=int), rng, trials=400,
                             other_concept=False) == pytest.approx(0.1, abs=0.03)


def test_embedding_scores_and_the_original_rule_recover_planted_cooccurrence():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(6), 10)
    # every image is in the top set of 4 neurons of one group
    images = [rng.choice(np.flatnonzero(groups == g), 4, replace=False) for g in rng.integers(0, 6, 3000)]
    top = [[] for _ in range(60)]
    for image, neurons in enumerate(images):
        for n in neurons:
            top[n].append(image)
    k = min(len(t) for t in top)
    top_images = np.array([t[:k] for t in top])
    offsets, words = image_sentences(top_images)
    vectors = original_rule_embedding(offsets, words, 60, EmbedParams(dimensions=16, epochs=5, seed=1))
    scores = embedding_scores(vectors, groups)
    assert scores["same group"] > scores["other groups"] + 0.3
    assert scores["neighbors in group"] > 0.8 > scores["chance"] * 4
    random_scores = embedding_scores(rng.normal(size=(60, 16)), groups)
    assert random_scores["neighbors in group"] < 0.4


def test_class_histograms_and_agreement():
    top_images = np.array([[0, 1], [0, 1], [2, 3]])
    top_values = np.array([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    histograms = class_histograms(top_images, top_values, np.array([0, 1, 2, 2]), 3)
    assert histograms.tolist() == [[0.5, 0.5, 0], [1, 0, 0], [0, 0, 1]]
    assert class_agreement(np.array([0, 0, -1]), histograms) == pytest.approx(1 / np.sqrt(2))


def test_parts_images_are_reproducible_and_their_maps_match_the_drawing():
    dataset = PartsDataset(12, seed=3)
    assert [dataset.label(i) for i in range(7)] == [0, 1, 2, 3, 4, 5, 0]
    first, again = np.asarray(dataset.load(4)), np.asarray(PartsDataset(12, seed=3).load(4))
    np.testing.assert_array_equal(first, again)
    assert PartsDataset(12, seed=4).fingerprint != dataset.fingerprint
    for index in range(12):
        part_map = dataset.part_map(index)
        present = set(np.unique(part_map)) - {0}
        own = set(PARTS_OF_CLASS[dataset.label(index)])
        assert own <= present and len(present - own) <= 1          # both parts, at most one distractor
        assert set(OBJECT_OF_PART[list(present)]) <= {dataset.label(index)} | set(OBJECT_OF_PART[list(present - own)])
    with pytest.raises(ValueError):
        PartsDataset.from_spec("parts:many")


def _runs_json(cache) -> str:
    from neurocarto.cli import run_rows
    from neurocarto.store.disk import Store

    with Store(cache) as store:
        return json.dumps([{k: v for k, v in row.items() if k in ("name", "data")} for row in run_rows(store)])


def evaluate_run_json(cache, run: str, *flags: str) -> dict:
    from neurocarto.cli import main

    assert main(["evaluate", "--cache", str(cache), "--run", run, "--json", str(cache / "legacy.json"), *flags]) == 0
    return json.loads((cache / "legacy.json").read_text())


def test_evaluate_command_on_a_small_parts_run(tmp_path, capsys):
    from neurocarto.cli import main
    from neurocarto.compute.pipeline import precompute
    from neurocarto.config import ExecutionConfig, RunConfig

    manifest = precompute(RunConfig(model="parts-inception", data="parts:1800"),
                          ExecutionConfig(cache=tmp_path, progress=False, batch_size=200), stages=["cluster", "embed"],
                          log=lambda _: None)
    assert main(["evaluate", "--cache", str(tmp_path), "--run", manifest["name"], "--json", str(tmp_path / "e.json")]) == 0
    report = capsys.readouterr().out
    assert "## Ground truth (Parts)" in report and "Intruder test" in report and "## Class-label proxy" in report

    result = json.loads((tmp_path / "e.json").read_text())
    parts = result["parts"]
    assert parts["neurons with a clear part"] > 100 and len(parts["neurons"]) == result["neurons"]
    clear = [n for n in parts["neurons"] if n["concept"] != "background" and n["dominance"] >= 0.5]
    assert len(clear) == parts["neurons with a clear part"] and ":" in clear[0]["id"]
    assert parts["purity"]["ours"] > parts["purity"]["random groups"] + 0.2
    assert parts["intruder accuracy"]["ours"] > parts["intruder accuracy"]["random groups"] + 0.2
    # the truth came from a second sample (pass 1 only, stored as its own run), and the curve covers the cut
    held_out = next(row for row in json.loads(_runs_json(tmp_path)) if row["name"].endswith("-held-out"))
    assert held_out["data"].startswith("Parts (1800 generated images, seed 1)")
    curve = result["along the cut"]["ours"]
    assert [point["cut"] for point in curve] == [0.05, 0.06, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5]
    assert curve[0]["coverage"] >= curve[-1]["coverage"] and 0 < result["default cut"]["coverage"] <= 1
    assert all(point["largest share of a layer"] <= 0.15 for point in curve)
    legacy = evaluate_run_json(tmp_path, manifest["name"], "--truth", "top-images", "--intruders", "any")
    assert legacy["definitions"] == {"truth": "top-images", "intruders": "any", "trials": 100}
    # the app's part labels: the part each neuron's own top images show, as the top-images truth reads it
    from neurocarto.store.disk import Store
    from neurocarto.zoo.parts import PartLabels

    with Store(tmp_path) as store:
        key = manifest["key"]
        layer_of = np.repeat(np.arange(len(manifest["layers"])), [layer["channels"] for layer in manifest["layers"]])
        labels = PartLabels("parts:1800", *(store.get_array(key, name) for name in (
            "image_index", "top_images", "top_values", "top_positions")),
            [(manifest["layers"][i]["height"], manifest["layers"][i]["width"]) for i in layer_of])
    ids = [f"{layer['name']}:{c}" for layer in manifest["layers"] for c in range(layer["channels"])]
    for neuron in legacy["parts"]["neurons"][::25]:
        counts = labels.counts((ids.index(neuron["id"]),))
        assert labels.names[int(np.argmax(counts))] == neuron["concept"]
        assert counts.max() / counts.sum() == pytest.approx(neuron["dominance"])
    ours, random = parts["embedding"]["ours"], parts["embedding"]["random"]
    assert ours["neighbors in group"] > 2 * ours["chance"] and random["neighbors in group"] < 1.5 * random["chance"]
    assert main(["evaluate", "--cache", str(tmp_path), "--run", "nope"]) == 2
    assert main(["evaluate", "--cache", str(tmp_path), "--run", manifest["name"], "--trials", "0"]) == 2
    assert "--trials 0: the intruder test needs at least 1 trial" in capsys.readouterr().err
