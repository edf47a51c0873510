"""The app's callbacks called as functions, without a server: the URL round trip, the graph, the examples."""
import pytest
from dash import no_update

from neurocarto.store.disk import Store
from neurocarto.ui import ablation_panel, callbacks, compare_view, explain_panel, units_bar
from neurocarto.ui.app import Catalog
from neurocarto.ui.url_state import ViewState, read_query
from neurocarto.ui.wiring import callbacks_of

NO_SELECTION = {"nodes": [], "neuron": None, "neurons": []}


@pytest.fixture(scope="module")
def catalog(small_fashion_run):
    _config, execution, _manifest = small_fashion_run
    with Store(execution.cache) as store:
        yield Catalog(store)


def test_every_callback_is_wired_once():
    modules = (callbacks, ablation_panel, explain_panel, compare_view, units_bar)
    names = [function.__name__ for module in modules for function, _, _ in callbacks_of(module)]
    assert len(names) == len(set(names)) == 36 and {"restore", "examples", "class_strip", "run_test", "poll_explain",
                                                    "prepare_spare", "show_explanation", "open_comparison",
                                                    "relabel_projection", "turn_page"} <= set(names)


def test_the_url_restores_the_view_it_wrote(catalog):
    run = catalog.get(catalog.keys[0])
    coarse = run.graph(4, 0.2)
    node = max(coarse["nodes"], key=lambda n: len(n["members"]))["id"]
    search = ViewState(run.key, "coat", 0.1, "0.2", (node, run.neuron_ids[3]), cascade=True, paper=True).query()
    (run_key, options, class_index, threshold, mode, paper, cut_auto, cut, detail, selection, test, pick, compare,
     show, message) = callbacks.restore(catalog, "/", None, search)
    assert (run_key, class_index, threshold, mode, paper, cut_auto, cut, detail, compare, show, message) == (
        run.key, 4, 0.1, ["cascade"], ["paper"], [], 0.2, "summary", None, ["labels"], None)
    assert pick is no_update
    assert len(options) == len(run.class_names) and selection == {"nodes": [node], "neuron": 3, "neurons": []}
    written = callbacks.to_url(catalog, run_key, class_index, threshold, mode, paper, cut, detail, selection, test,
                               None, None, ["labels", "density"])
    assert callbacks.restore(catalog, "/", None, written)[-2] == ["labels", "density"]
    assert read_query(written)[0] == read_query(search)[0] | {"class": "Coat", "test": "zero",
                                                              "projection": "labels,density"}


def test_bad_urls_give_a_message_and_a_usable_view(catalog):
    run = catalog.get(catalog.keys[0])
    *values, message = callbacks.restore(catalog, "/", None, "?run=nope&class=Zebra&cut=7&select=x:1&threshold=abc")
    assert values[0] == run.key and values[2] == 0 and values[6] == ["auto"]
    for part in ("Unknown run “nope”", "Unknown class “Zebra”", "cut must be “auto”", "Unknown neuron or node “x:1”",
                 "threshold must be a number"):
        assert part in message, part
    assert read_query("?" + "&".join(f"k{i}=1" for i in range(50)))[1]


def test_graph_projection_and_examples_follow_the_selection(catalog):
    run = catalog.get(catalog.keys[0])
    graph = run.graph(4)
    elements, layout, title = callbacks.draw_graph(catalog, run.key, 4, 0, [], "auto", NO_SELECTION, "all", None, [], None)
    shown = {e["data"]["id"] for e in elements if "score" in e["data"]}
    assert shown == {node["id"] for node in graph["nodes"]} and title == "Class graph: Coat"
    node = graph["nodes"][0]
    selection = callbacks.tap_node(catalog, {"id": node["id"]}, NO_SELECTION)
    assert selection["nodes"] == [node["id"]]
    assert callbacks.tap_node(catalog, {"id": node["id"]}, selection)["nodes"] == []
    figure = callbacks.draw_projection(catalog, run.key, 4, "clusters", selection, [], [], "auto", None)
    assert sorted(n for trace in figure["data"][:len(run.layer_names)] for n in trace["customdata"]) == node["members"]
    blocks = callbacks.examples(catalog, run.key, 4, "auto", selection)
    assert run.neuron_ids[node["members"][0]] in str(blocks)
    assert callbacks.hover_point(catalog, {"points": [{}]}, run.key) == (False, no_update, no_update)
    picked = callbacks.pick_neurons(catalog, None, {"points": [{"customdata": 5}, {"customdata": 2}]}, NO_SELECTION)
    assert picked == {"nodes": [], "neuron": None, "neurons": [2, 5]}



def test_a_selection_another_class_lacks_keeps_its_examples(catalog, monkeypatch):
    """After a switch (an explained image's prediction), a selected node that class's graph lacks still shows its
    examples, heat map neurons and outlines, said to be outside the graph."""
    run = catalog.get(catalog.keys[0])
    node, other = next((node, other) for node in run.graph(4)["nodes"] for other in range(len(run.class_names))
                       if not run.resolve_nodes(run.graph(other), [node["id"]], "auto"))
    selection = {"nodes": [node["id"]], "neuron": None, "neurons": []}
    monkeypatch.setattr(callbacks, "triggered", lambda: {"class.value"})
    blocks = str(callbacks.examples(catalog, run.key, other, "auto", selection))
    assert "not in this class's graph" in blocks
    assert all(f"/patch/{run.key}/{member}/0.png" in blocks for member in node["members"][:10])
    monkeypatch.setattr(callbacks, "triggered", set)
    figure = callbacks.draw_projection(catalog, run.key, other, "all", selection, [], [], "auto", None)
    highlighted = figure["data"][len(run.layer_names)]["customdata"]
    assert set(node["members"]) <= set(highlighted)
