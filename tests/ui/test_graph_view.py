"""The Graph View's pure builders: the summary's budget and layout, edges, the cascade, the "all nodes" view."""
import numpy as np

from neurocarto.ui.graph_view import (
    GUTTER,
    NODE_MIN,
    SLOT,
    Frame,
    Grid,
    NodeLook,
    cascade,
    graph_elements,
    strongest_edges,
    summary_nodes,
    visible_nodes,
)

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
LOOKS = {node["id"]: NodeLook(f"label of {node['id']}", f"/img/{node['id']}.png") for node in GRAPH["nodes"]}


def nodes_of(elements):
    return {e["data"]["id"]: e for e in elements
            if "source" not in e["data"] and not e["data"]["id"].startswith(("row:", "frame:"))}


def edges_of(elements):
    return {e["data"]["id"]: e for e in elements if "source" in e["data"]}


def test_all_nodes_rows_put_the_input_side_at_the_bottom_and_rank_by_score():
    elements = graph_elements(GRAPH, ["a", "b", "c"], IDS, LOOKS)
    nodes = nodes_of(elements)
    assert nodes["a:c0"]["position"]["y"] > nodes["b:0"]["position"]["y"] > nodes["c:0"]["position"]["y"]
    assert nodes["a:c0"]["position"]["x"] < nodes["a:2"]["position"]["x"]          # higher score further left
    assert nodes["a:c0"]["data"]["members"] == ["a:0", "a:1"] and nodes["a:c0"]["data"]["image"] == "/img/a:c0.png"
    assert nodes["a:c0"]["data"]["label"] == "label of a:c0"
    assert "cluster" in nodes["a:c0"]["classes"] and nodes["b:0"]["data"]["size"] > nodes["a:2"]["data"]["size"]
    edges = edges_of(elements)
    assert set(edges) == {"a:c0->b:0", "a:2->b:0", "b:0->c:0"}
    assert edges["a:c0->b:0"]["data"]["width"] == max(e["data"]["width"] for e in edges.values())
    assert edges["a:c0->b:0"]["data"]["opacity"] > edges["a:2->b:0"]["data"]["opacity"]


def test_threshold_hides_nodes_and_their_edges():
    assert visible_nodes(GRAPH, 0.2) == {"a:c0", "b:0", "c:0"}
    elements = graph_elements(GRAPH, ["a", "b", "c"], IDS, LOOKS, threshold=0.2)
    ids = {e["data"]["id"] for e in elements}
    assert "a:2" not in ids and "a:2->b:0" not in ids and "a:c0->b:0" in ids


def test_cascade_follows_the_strongest_edges_both_ways():
    nodes, edges = cascade(GRAPH, "b:0")
    assert nodes == {"a:c0", "b:0", "c:0"} and edges == {"a:c0->b:0", "b:0->c:0"}
    elements = graph_elements(GRAPH, ["a", "b", "c"], IDS, LOOKS, selected={"b:0"}, chain=(nodes, edges))
    by_id = {e["data"]["id"]: e["classes"] for e in elements}
    assert "chain" in by_id["a:c0"] and "faded" in by_id["a:2"] and "selected" in by_id["b:0"]


def test_a_selection_brings_its_neighbourhood_forward():
    by_id = {e["data"]["id"]: e["classes"] for e in graph_elements(GRAPH, ["a", "b", "c"], IDS, LOOKS, selected={"c:0"})}
    assert "faded" not in by_id["b:0"] and "faded" not in by_id["b:0->c:0"]
    assert "faded" in by_id["a:c0"] and "faded" in by_id["a:c0->b:0"]


def test_the_panel_decides_rows_columns_and_slots():
    grid = Grid.for_panel(Frame(520, 560), 11)
    assert (grid.rows, grid.columns, grid.gutter, grid.slots) == (11, 1, GUTTER, (520 - GUTTER) // SLOT)
    wide = Grid.for_panel(Frame(520, 300), 11)          # 6 rows of ≥ 46 px: two columns of 6 and 5 layers
    assert (wide.rows, wide.columns) == (6, 2) and wide.row_height == 50 and wide.slots >= 1
    deep = Grid.for_panel(Frame(520, 500), 40)
    assert deep.rows * deep.columns >= 40 and deep.row_height >= 46 and deep.gutter + deep.slots * deep.slot <= 130
    assert Frame.of(None) == Frame() and Frame.of({"width": "x"}) == Frame() and Frame.of({"width": 1, "height": 1e9}) \
        == Frame(200, 8000)


def random_graph(seed: int, layers: int = 6, per_layer: int = 20) -> dict:
    rng = np.random.default_rng(seed)
    nodes = [{"id": f"l{layer}:{i}", "layer": f"l{layer}", "layer_index": layer, "cluster": -1, "members": [i],
              "listed": [i], "score": float(rng.uniform(1, 100))} for layer in range(layers) for i in range(per_layer)]
    edges = [{"source": f"l{layer}:{i}", "target": f"l{layer + 1}:{j}", "weight": float(rng.exponential())}
             for layer in range(layers - 1) for i in range(per_layer) for j in range(per_layer) if rng.random() < 0.3]
    return {"nodes": nodes, "edges": edges}


def test_the_summary_fits_the_panel_at_readable_sizes_with_few_edges():
    graph = random_graph(0)
    looks = {node["id"]: NodeLook("Sneaker 91%", "/x.png") for node in graph["nodes"]}
    frame = Frame(520, 560)
    elements = graph_elements(graph, [f"l{i}" for i in range(6)], [str(i) for i in range(20)], looks, frame=frame)
    nodes, edges = nodes_of(elements), edges_of(elements)
    slots = Grid.for_panel(frame, 6).slots
    assert len(nodes) == 6 * slots
    for layer in range(6):     # each layer's best nodes
        best = sorted((n for n in graph["nodes"] if n["layer_index"] == layer), key=lambda n: -n["score"])[:slots]
        assert {n["id"] for n in best} <= set(nodes)
    for node in nodes.values():
        assert node["data"]["size"] >= NODE_MIN
        assert 0 <= node["position"]["x"] - node["data"]["size"] / 2 and node["position"]["x"] + SLOT / 2 <= 520
        assert 0 <= node["position"]["y"] - node["data"]["size"] / 2 <= node["position"]["y"] + 30 <= 560
    assert len(edges) <= 3 * len(nodes)
    frames = [e for e in elements if e["data"]["id"].startswith("frame:")]
    assert [f["position"] for f in frames] == [{"x": 0, "y": 0}, {"x": 520, "y": 560}]


def test_strongest_edges_keep_two_in_and_one_out_per_node():
    graph = random_graph(1, layers=3, per_layer=5)
    shown = {n["id"] for n in graph["nodes"]}
    kept = strongest_edges(graph["edges"], shown)
    for node in shown:
        incoming = sorted((e for e in graph["edges"] if e["target"] == node), key=lambda e: -e["weight"])[:2]
        outgoing = sorted((e for e in graph["edges"] if e["source"] == node), key=lambda e: -e["weight"])[:1]
        assert all(e in kept for e in incoming + outgoing)
    for edge in kept:       # and nothing else
        top_in = sorted((x for x in graph["edges"] if x["target"] == edge["target"]), key=lambda x: -x["weight"])[:2]
        top_out = sorted((x for x in graph["edges"] if x["source"] == edge["source"]), key=lambda x: -x["weight"])[:1]
        assert edge in top_in + top_out


def test_the_summary_keeps_selected_and_cascade_nodes_past_the_budget():
    graph = random_graph(2, layers=2, per_layer=10)
    weakest = min((n for n in graph["nodes"] if n["layer_index"] == 0), key=lambda n: n["score"])["id"]
    shown = summary_nodes(graph, {n["id"] for n in graph["nodes"]}, 3, keep={weakest})
    assert weakest in shown and sum(node.startswith("l0:") for node in shown) == 3
