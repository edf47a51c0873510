"""Comparing two runs in the app, its callbacks called as functions: the runs offered, a comparison computed by its
job and then read at once, both projections coloured by category with a selection's rings moved by a patch, the two
class graphs with matched nodes linked, the table and the layers' correspondence, picking from each view, and the
URL. (A new selection patches only the rings: tests/ui/test_compare_browser.py.)"""
import time

import numpy as np
import pytest
from dash import no_update

from neurocarto.concepts.matching import CATEGORIES
from neurocarto.store.comparisons import compare
from neurocarto.store.disk import Store
from neurocarto.ui import callbacks, compare_view
from neurocarto.ui.app import Catalog

NO_SELECTION = {"nodes": [], "neuron": None, "neurons": []}


@pytest.fixture(scope="module")
def catalog(compared_runs):
    cache, key_a, key_b = compared_runs
    with Store(cache) as store:
        catalog = Catalog(store)
        compare(catalog.get(key_a), catalog.get(key_b))
        yield catalog, key_a, key_b


def test_a_comparison_not_stored_is_computed_by_its_job_while_the_page_polls(compared_runs_uncompared):
    cache, key_a, key_b = compared_runs_uncompared
    with Store(cache) as store:
        catalog = Catalog(store)
        assert [option["value"] for option in compare_view.compare_options(catalog, key_a)] == [key_b]
        outputs = compare_view.open_comparison(catalog, key_b, key_a, "auto", None)
        assert outputs[:2] == ("views hidden", {}) and "comparing" in outputs[2] and outputs[3:] == (False, None)
        deadline = time.monotonic() + 240
        while outputs[4] is None and time.monotonic() < deadline:
            time.sleep(0.5)
            outputs = compare_view.open_comparison(catalog, key_b, key_a, "auto", 1)
        assert outputs == ("views hidden", {}, "", True, f"{key_a}|{key_b}|auto"), outputs[2]
        assert compare_view.open_comparison(catalog, None, key_a, "auto", None)[:2] == ("views", {"display": "none"})
        serving_only = Catalog(store, compute_jobs=False)
        message = compare_view.open_comparison(serving_only, key_b, key_a, "0.3", None)[2]
        assert "--no-jobs" in str(message) and f"python -m neurocarto compare {key_a} {key_b}" in str(message)


def test_both_projections_and_graphs_show_the_comparison_and_a_pick_rings_its_matches(catalog):
    catalog, key_a, key_b = catalog
    ready = compare_view.open_comparison(catalog, key_b, key_a, "auto", None)[4]
    assert ready == f"{key_a}|{key_b}|auto"
    comparison = compare_view.comparison_of(catalog, key_a, key_b, "auto")
    figure = compare_view.draw_compare_projection(catalog, ready, None, [], key_a, key_b, "auto")
    assert len(figure["data"]) == 2 * len(CATEGORIES) + 2 and figure["layout"]["xaxis2"]["matches"] == "x"
    shown = sum(len(trace["customdata"]) for trace in figure["data"][:-2])
    assert shown == len(comparison.run("a").layer_of) + len(comparison.run("b").layer_of)

    heatmap, summary, layers = compare_view.compare_overview(catalog, ready, [], key_a, key_b, "auto")
    assert np.array(heatmap["data"][0]["z"]).shape == comparison.arrays["layer_similarity"].shape
    assert "clusters" in str(summary) and "mixed4b" in layers
    every = compare_view.table_rows(comparison)
    assert len(every) == sum(sum(counts["clusters"].values()) for counts in comparison.counts().values())
    shared_count = sum(row["category"] == "shared" for row in every)
    table, label = compare_view.compare_page(catalog, ready, 0, None, None, ["shared"], key_a, key_b, "auto")
    pages = -(-shared_count // compare_view.PAGE_ROWS)
    assert label == f"1 / {pages} ({shared_count} clusters)"
    rows = compare_view._filtered(comparison, None, None, ["shared"])[:compare_view.PAGE_ROWS]
    shown = [compare_view.shown_row(comparison, row) for row in rows]
    assert str(table) == str(compare_view.table_view(shown, None)) and {row["category"] for row in rows} == {"shared"}
    assert all(row["size"] >= 2 and row["patches"].startswith("/members/") and row["label"] for row in shown)
    by_size = compare_view._filtered(comparison, {"column": "size", "descending": True}, "mixed4b", list(CATEGORIES))
    assert [row["size"] for row in by_size] == sorted((row["size"] for row in every if row["layer"] == "mixed4b"),
                                                      reverse=True)
    assert compare_view.compare_page(catalog, ready, 10 ** 6, None, None, ["shared"], key_a, key_b, "auto")[1] == \
        f"{pages} / {pages} ({shared_count} clusters)"          # a page past the last shows the last
    shared = next(row for row in rows if row["id"].startswith("a:"))
    pick = compare_view.pick_in_comparison(catalog, None, None, shared["id"], key_a, key_b, "auto")
    assert pick == {"side": "a", "concept": int(shared["id"][2:])}
    rings = compare_view.highlighted_neurons(comparison, pick)
    assert len(rings["a"]) == shared["size"] and rings["b"]
    ringed = compare_view.draw_compare_projection(catalog, ready, pick, [], key_a, key_b, "auto")["data"][-2:]
    assert [sorted(n for _, n in trace["customdata"]) for trace in ringed] == [sorted(rings["a"]), sorted(rings["b"])]

    neuron = rings["b"][0]
    clicked = compare_view.pick_in_comparison(catalog, {"points": [{"customdata": [1, neuron]}]}, None, None,
                                              key_a, key_b, "auto")
    assert clicked == {"side": "b", "concept": int(comparison.concept_of_neuron("b")[neuron])}

    elements, title = compare_view.draw_compare_graph(catalog, ready, 7, pick, None, [], key_a, key_b, "auto")
    nodes = [e for e in elements if "position" in e and "score" in e["data"]]
    links = [e for e in elements if e.get("classes") == "match"]
    assert {e["data"]["id"][:2] for e in nodes} == {"a|", "b|"} and "Sneaker" in title
    assert links and all(link["data"]["source"].startswith("a|") and link["data"]["target"].startswith("b|")
                         for link in links)
    categories = {e["data"]["id"]: set(e["classes"].split()) & set(CATEGORIES) for e in nodes}
    assert all(len(found) == 1 for found in categories.values())
    node = next(e["data"] for e in nodes if e["data"]["id"].startswith("b|"))
    tapped = compare_view.pick_in_comparison(catalog, None, node, None, key_a, key_b, "auto")
    assert tapped["side"] == "b"


def test_the_url_carries_the_run_compared(catalog):
    catalog, key_a, key_b = catalog
    url = callbacks.to_url(catalog, key_a, 0, 0, [], [], "auto", "summary", NO_SELECTION, "zero", None, key_b)
    assert f"compare={key_b}" in url
    assert callbacks.restore(catalog, "/", None, url)[-3] == key_b
    values = callbacks.restore(catalog, "/", None, f"?run={key_a}&compare=nope")
    assert values[-3] is None and "Unknown run to compare with “nope”" in values[-1]
    assert compare_view.pick_in_comparison(catalog, {"points": [{"customdata": [0, 10 ** 8]}]}, None, None,
                                           key_a, key_b, "auto") is no_update


def test_a_run_with_checkpoints_in_the_store_gets_a_slider_over_them(catalog):
    """The moved run has the small run's model, data and settings with other weights: a checkpoint of it."""
    catalog, key_a, key_b = catalog
    ready = f"{key_a}|{key_b}|auto"
    style, last, marks, position, figure = compare_view.checkpoint_timeline(catalog, ready, key_a, key_b, "auto", [])
    assert style == {} and (last, position) == (0, 0) and list(marks) == [0]
    comparison = compare_view.comparison_of(catalog, key_a, key_b, "auto")
    clusters = comparison.counts()["a"]["clusters"]
    share = (sum(clusters.values()) - clusters["unique"]) / sum(clusters.values())
    assert figure["data"][0]["y"] == [pytest.approx(share)]
    assert compare_view.pick_checkpoint(catalog, 0, key_a, key_b) is no_update
    assert compare_view.checkpoint_timeline(catalog, ready, key_b, key_a, "auto", [])[0] == {}   # either way round
