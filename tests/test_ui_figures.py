"""The pure figure builders of the app."""
import base64

import numpy as np

from neurocarto.ui.figures import (cascade, class_bar_figure, graph_elements, node_title, projection_figure,
                                  visible_nodes)

GRAPH = {
    "nodes": [
        {"id": "a:c0", "layer": "a", "layer_index": 0, "cluster": 0, "members": [0, 1], "listed": [0, 1], "score": 4.0},
        {"id": "a:2", "layer": "a", "layer_index": 0, "cluster": -1, "members": [2], "listed": [2], "score": 1.0},
        {"id": "b:0", "layer": "b", "layer_index": 1, "cluster": -1, "members": [3], "listed": [3], "score": 8.0},
        {"id": "c:0", "layer": "c", "layer_index": 2, "cluster": -1, "members": [5], "listed": [5], "score": 2.0},
    ],
    "edges": [
        {"source": "a:c0", "target": "b:0", "weight": 3.0},
        {"source": "a:2", "target": "b:0", "weight": 1.0},
        {"source": "b:0", "target": "c:0", "weight": 2.0},
    ],
}
IDS = ["a:0", "a:1", "a:2", "b:0", "b:1", "c:0"]


def url(neuron, rank):
    return f"/patch/k/{neuron}/{rank}.png"


def test_projection_has_a_trace_per_layer_and_highlights():
    projection = np.arange(12, dtype=np.float32).reshape(6, 2)
    layer_of = np.array([0, 0, 0, 1, 1, 2])
    figure = projection_figure(projection, layer_of, ["a", "b", "c"], highlighted=[3, 1, 3], selected=5)
    names = [trace["name"] for trace in figure["data"]]
    assert names == ["a", "b", "c", "highlighted", "selected"]
    assert figure["data"][0]["customdata"] == [0, 1, 2] and figure["data"][3]["customdata"] == [1, 3]
    assert decoded(figure["data"][3]["x"]).tolist() == [2.0, 6.0] and decoded(figure["data"][4]["y"]).tolist() == [11.0]
    shown = np.array([True, False, True, True, True, True])
    plain = projection_figure(projection, layer_of, ["a", "b", "c"], shown)
    assert plain["data"][0]["customdata"] == [0, 2]
    assert [len(decoded(trace["x"])) for trace in plain["data"][3:]] == [0, 0]     # overlays present, empty


def decoded(typed: dict) -> np.ndarray:
    """Plotly.js's typed-array form back to numpy."""
    return np.frombuffer(base64.b64decode(typed["bdata"]), dtype={"f4": np.float32, "i4": np.int32}[typed["dtype"]])


def test_graph_rows_put_the_input_side_at_the_bottom_and_rank_by_score():
    elements = graph_elements(GRAPH, ["a", "b", "c"], IDS, url)
    nodes = {e["data"]["id"]: e for e in elements if "source" not in e["data"] and not e["data"]["id"].startswith("row:")}
    assert nodes["a:c0"]["position"]["y"] > nodes["b:0"]["position"]["y"] > nodes["c:0"]["position"]["y"]
    assert nodes["a:c0"]["position"]["x"] < nodes["a:2"]["position"]["x"]          # higher score further left
    assert nodes["a:c0"]["data"]["members"] == ["a:0", "a:1"] and nodes["a:c0"]["data"]["image"] == url(0, 0)
    assert "cluster" in nodes["a:c0"]["classes"] and nodes["b:0"]["data"]["size"] > nodes["a:2"]["data"]["size"]
    edges = [e for e in elements if "source" in e["data"]]
    assert {e["data"]["id"] for e in edges} == {"a:c0->b:0", "a:2->b:0", "b:0->c:0"}
    assert max(e["data"]["width"] for e in edges) == edges[0]["data"]["width"]


def test_threshold_hides_nodes_and_their_edges():
    assert visible_nodes(GRAPH, 0.2) == {"a:c0", "b:0", "c:0"}
    elements = graph_elements(GRAPH, ["a", "b", "c"], IDS, url, threshold=0.2)
    ids = {e["data"]["id"] for e in elements}
    assert "a:2" not in ids and "a:2->b:0" not in ids and "a:c0->b:0" in ids


def test_cascade_follows_the_strongest_edges_both_ways():
    nodes, edges = cascade(GRAPH, "b:0")
    assert nodes == {"a:c0", "b:0", "c:0"} and edges == {"a:c0->b:0", "b:0->c:0"}
    elements = graph_elements(GRAPH, ["a", "b", "c"], IDS, url, selected={"b:0"}, chain=(nodes, edges))
    by_id = {e["data"]["id"]: e["classes"] for e in elements}
    assert "chain" in by_id["a:c0"] and "faded" in by_id["a:2"] and "selected" in by_id["b:0"]


def test_class_bar_lists_classes_with_top_images():
    figure = class_bar_figure(np.array([0, 5, 2]), ["x", "y", "z"])
    assert list(figure["data"][0]["y"]) == ["z", "y"]


def test_type_ahead_emphasises_the_typed_text():
    from neurocarto.ui.callbacks import emphasised

    assert emphasised("T-shirt/top", "") == "T-shirt/top" and emphasised("Bag", "shirt") == "Bag"
    span = emphasised("T-shirt/top", "SHIRT")
    before, mark, after = span.children
    assert (before, mark.children, after) == ("T-", "shirt", "/top") and type(mark).__name__ == "Mark"


def test_node_title_says_how_much_of_its_cluster_the_class_graph_holds():
    single = {"id": "mixed4b:17", "cluster": -1, "members": [17]}
    assert node_title(single, 0, 0.0) == "mixed4b:17: 1 neuron"
    part = {"id": "mixed4b:c3", "cluster": 3, "members": [4, 9]}
    assert node_title(part, 5, 0.456) == "mixed4b:c3: 2 neurons of the cluster's 5 in this class's graph, " \
                                          "mean within-cluster similarity 0.46"
    assert node_title(part, 2, 0.5) == "mixed4b:c3: 2 neurons, mean within-cluster similarity 0.50"
