"""Two runs compared: the default model on the small run against the same model with perturbed weights, over the
same images — categories and matches against direct computations, kept in the store and read in either order,
the anchored projection, the CLI, and runs that cannot be compared."""
import json

import numpy as np
import pytest

import neurocarto as nc
from neurocarto.cli import main as cli_main
from neurocarto.compute.pipeline import precompute
from neurocarto.concepts import alignment, matching
from neurocarto.config import ExecutionConfig, RunConfig
from neurocarto.errors import NeuroCartoError
from neurocarto.store import comparisons
from neurocarto.store.disk import Store
from neurocarto.store.stored_run import StoredRun
from neurocarto.testing.stores import copy_store


@pytest.fixture(scope="module")
def two_runs(compared_runs):
    cache, key_a, key_b = compared_runs
    with Store(cache) as store:
        yield StoredRun(store, key_a), StoredRun(store, key_b)


def test_matches_and_categories_follow_their_definitions(two_runs):
    run_a, run_b = two_runs
    comparison = comparisons.compare(run_a, run_b)
    sets_a, sets_b = comparisons._sets(run_a, run_b)
    brute = np.array([[len(np.intersect1d(a, b)) / len(np.union1d(a, b)) for b in sets_b] for a in sets_a])
    thresholds = comparison.arrays["thresholds"]
    matched = brute >= thresholds[run_a.layer_of][:, run_b.layer_of] - 1e-6     # Jaccards are float32 in the store
    np.testing.assert_array_equal(comparison.arrays["a/neuron_matched"], matched.any(axis=1))
    np.testing.assert_array_equal(comparison.arrays["b/neuron_matched"], matched.any(axis=0))
    seen = brute.max(axis=1) > 0
    np.testing.assert_allclose(comparison.arrays["a/neuron_jaccard"], brute.max(axis=1), rtol=1e-5)
    np.testing.assert_array_equal(comparison.arrays["a/neuron_partner"][seen], brute.argmax(axis=1)[seen])

    concepts_a, concepts_b = comparison.concepts("a"), comparison.concepts("b")
    for side, concepts in (("a", concepts_a), ("b", concepts_b)):     # every neuron in one concept
        assert sorted(concepts.members.tolist()) == list(range(len(comparison.run(side).layer_of)))
    cluster_labels = run_a.cluster_labels
    for c in np.flatnonzero(concepts_a.sizes > 1)[:20]:
        members = concepts_a.members[concepts_a.offsets[c]:concepts_a.offsets[c + 1]]
        assert len(set(cluster_labels[members].tolist())) == 1 and cluster_labels[members[0]] >= 0
    shared = [row for row in comparison.table("a") if row["category"] == "shared"]
    assert shared, comparison.counts()
    for row in shared[:10]:
        c, d = comparison.concept_index("a", row["concept"]), comparison.concept_index("b", row["best"])
        mine = concepts_a.members[concepts_a.offsets[c]:concepts_a.offsets[c + 1]]
        theirs = concepts_b.members[concepts_b.offsets[d]:concepts_b.offsets[d + 1]]
        similarity = brute[np.ix_(mine, theirs)].mean()
        assert row["similarity"] == pytest.approx(similarity, abs=1e-4)
        assert similarity >= thresholds[run_a.layer_of[mine[0]], run_b.layer_of[theirs[0]]] - 1e-6
        assert comparison.partner("a", row["concept"]) == [row["best"]]
        assert row["concept"] in comparison.partner("b", row["best"])
    counts = comparison.counts()
    assert sum(counts["a"]["units"].values()) == len(concepts_a)
    assert set(comparison.category("a")) <= set(matching.CATEGORIES)


def test_a_comparison_is_kept_read_in_either_order_and_recomputed_when_a_run_changes(two_runs):
    run_a, run_b = two_runs
    first = comparisons.compare(run_a, run_b)
    again = comparisons.stored_comparison(run_a, run_b)
    assert again is not None and again.seconds == pytest.approx(first.seconds)
    reverse = comparisons.compare(run_b, run_a)
    assert reverse.run("a").key == run_b.key and reverse.frame == "b"
    assert reverse.table("b") == [dict(row, run="b") for row in first.table("a")]
    np.testing.assert_array_equal(reverse.arrays["layer_similarity"], first.arrays["layer_similarity"].T)
    np.testing.assert_array_equal(reverse.projection("b"), run_a.projection)
    np.testing.assert_array_equal(reverse.projection("a"), first.projection("b"))
    stale = dict(run_b.manifest, stages={**run_b.manifest["stages"], "cluster": {
        **run_b.manifest["stages"]["cluster"], "inputs": "changed"}})
    assert comparisons.stored_comparison(run_a, StoredRun(run_b.store, run_b.key, stale)) is None


def test_the_transferred_projection_puts_matched_neurons_near_their_partners(two_runs):
    run_a, run_b = two_runs
    comparison = comparisons.compare(run_a, run_b)
    matched = np.flatnonzero(comparison.arrays["b/neuron_matched"])
    partners = comparison.arrays["b/neuron_partner"][matched]
    anchored = comparison.projection("b")
    distance = np.linalg.norm(anchored[matched] - run_a.projection[partners], axis=1)
    own = np.linalg.norm(alignment.aligned(run_b.projection, run_a.projection, matched, partners, np.ones(len(matched)))
                         [matched] - run_a.projection[partners], axis=1)     # B's own layout, only turned and moved
    spread = np.linalg.norm(run_a.projection - run_a.projection.mean(axis=0), axis=1).mean()
    assert len(matched) > 50 and np.median(distance) < 0.25 * spread and np.median(distance) < 0.5 * np.median(own)


def test_the_compare_command_and_runs_that_cannot_be_compared(two_runs, tmp_path, capsys, image_folder,
                                                               factory_file):
    run_a, run_b = two_runs
    out = tmp_path / "compare.json"
    code = cli_main(["compare", run_a.key, "moved", "--cache", str(run_a.store.directory), "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "shared" in printed and "unique" in printed
    written = json.loads(out.read_text())
    assert written["summary"]["runs"]["b"]["name"] == "moved" and len(written["concepts"]) > 0
    assert nc.compare(run_a, run_b).counts() == written["summary"]["counts"]

    with pytest.raises(NeuroCartoError, match="compared with itself"):
        comparisons.compare(run_a, run_a)
    cache = copy_store(run_a.store.directory, tmp_path / "store")       # a third run, on other images
    other = precompute(RunConfig(model=f"{factory_file}:make", data=str(image_folder), top_k=3),
                       ExecutionConfig(cache=cache, progress=False), log=lambda _: None)
    with Store(cache) as store:
        elsewhere = StoredRun(store, other["key"])
        with pytest.raises(NeuroCartoError, match=r"do not share images .* python -m neurocarto precompute --model "):
            comparisons.compare(run_a, elsewhere)
    code = cli_main(["compare", run_a.key, other["key"], "--cache", str(cache)])
    assert code == 2 and "do not share images" in capsys.readouterr().err


def test_a_timeline_over_checkpoints_counts_the_final_runs_concepts_matched_in_each(two_runs, tmp_path, capsys):
    run_a, run_b = two_runs
    assert [run.key for run in comparisons.checkpoint_series(run_a, [run_a, run_b])] == [run_b.key]
    found = comparisons.timeline([run_b], run_a)
    clusters = comparisons.compare(run_a, run_b).counts()["a"]["clusters"]
    assert found["clusters"] == sum(clusters.values())
    assert found["matched_clusters"] == [found["clusters"] - clusters["unique"]]
    assert sum(concept["state"] == "never" for concept in found["concepts"]) == clusters["unique"]
    assert all(concept["state"] == "stays" for concept in found["concepts"] if concept["first"] == 0)
    figure = tmp_path / "timeline.png"
    code = cli_main(["timeline", run_a.key, "--cache", str(run_a.store.directory), "--json", str(tmp_path / "t.json"),
                     "--figure", str(figure)])
    printed = capsys.readouterr().out
    assert code == 0 and "moved" in printed and "clusters matched" in printed
    assert json.loads((tmp_path / "t.json").read_text())["matched_clusters"] == found["matched_clusters"]
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code = cli_main(["timeline", run_a.key, "--cache", str(tmp_path / "empty")])
    assert code == 2


def test_large_runs_look_for_pairs_sharing_at_least_two_images(monkeypatch):
    sets_a, sets_b = np.zeros((10, 20), dtype=np.int64), np.zeros((8, 20), dtype=np.int64)
    assert comparisons.candidate_threshold(np.array([[0.1, 0.2]]), sets_a, sets_b) == pytest.approx(0.05)
    monkeypatch.setattr(matching, "EXACT_PAIRS", 10)
    large = comparisons.candidate_threshold(np.array([[0.1, 0.2]]), sets_a, sets_b)
    assert large == pytest.approx(2 / 38, abs=2e-6) and large < np.float32(2) / np.float32(38)
