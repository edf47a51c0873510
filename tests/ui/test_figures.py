"""The pure figure builders of the app."""
import base64

import numpy as np

from neurocarto.ui.figures import class_bar_figure, concept_outlines, node_title, projection_figure


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


def test_class_bar_lists_classes_with_top_images():
    figure = class_bar_figure(np.array([0, 5, 2]), ["x", "y", "z"])
    assert list(figure["data"][0]["y"]) == ["z", "y"]


def test_type_ahead_emphasises_the_typed_text():
    from neurocarto.ui.panels import emphasised

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
    assert node_title({**single, "outside": True}, 0, 0.0) == "mixed4b:17: 1 neuron · not in this class's graph"



def inside(polygon: np.ndarray, point: np.ndarray) -> bool:
    """Ray casting: is the point inside the polygon."""
    crossings = 0
    for (x1, y1), (x2, y2) in zip(polygon, np.roll(polygon, -1, axis=0)):
        if (y1 > point[1]) != (y2 > point[1]) and point[0] < x1 + (point[1] - y1) * (x2 - x1) / (y2 - y1):
            crossings += 1
    return crossings % 2 == 1


def test_concept_outlines_enclose_their_members_and_carry_the_label():
    rng = np.random.default_rng(0)
    projection = rng.normal(size=(50, 2)).astype(np.float32)
    members = [3, 7, 11, 19, 23, 40]
    outlines = concept_outlines(projection, [(members, "Sneaker 91% (6)"), ([5], "Bag 40%")])
    hull, circle = outlines["shapes"]
    corners = np.array([[float(v) for v in corner.split(",")] for corner in hull["path"][2:-2].split(" L ")])
    assert all(inside(corners, projection[m]) for m in members)
    assert circle["type"] == "circle" and circle["x0"] < projection[5, 0] < circle["x1"]
    assert [a["text"] for a in outlines["annotations"]] == ["Sneaker 91% (6)", "Bag 40%"]
    assert outlines["annotations"][0]["y"] >= projection[members, 1].max()
    figure = projection_figure(projection, np.zeros(50, dtype=int), ["a"], concepts=[(members, "x")])
    assert len(figure["layout"]["shapes"]) == 1 and figure["layout"]["annotations"][0]["text"] == "x"


def test_concept_labels_take_free_room_in_rank_order_and_more_appear_zoomed_in():
    from neurocarto.ui.figures import LABEL_BOX, PLOT_SIZE, placed_labels

    rng = np.random.default_rng(0)
    centres = rng.uniform(0, 10, (400, 2))
    ranked = np.argsort(-rng.random(400))
    whole = placed_labels(centres, ranked, (0, 10, 0, 10), most=50)
    half_w, half_h = LABEL_BOX[0] / PLOT_SIZE[0] * 10 / 2, LABEL_BOX[1] / PLOT_SIZE[1] * 10 / 2
    for i, a in enumerate(whole):          # no two boxes overlap, every box inside the view
        assert half_w <= centres[a, 0] <= 10 - half_w and half_h <= centres[a, 1] <= 10 - half_h
        for b in whole[i + 1:]:
            assert abs(centres[a, 0] - centres[b, 0]) >= 2 * half_w or abs(centres[a, 1] - centres[b, 1]) >= 2 * half_h
    position = {c: i for i, c in enumerate(ranked.tolist())}
    for concept in ranked[:position[whole[-1]]]:      # each one passed over collides with one placed before it
        if concept not in whole:
            x, y = centres[concept]
            inside = half_w <= x <= 10 - half_w and half_h <= y <= 10 - half_h
            assert not inside or any(abs(x - centres[p, 0]) < 2 * half_w and abs(y - centres[p, 1]) < 2 * half_h
                                     for p in whole if position[p] < position[concept])
    zoomed = placed_labels(centres, ranked, (2, 5, 2, 5), most=50)
    assert len(set(zoomed) - set(whole)) > 5 and all(2 <= centres[c, 0] <= 5 for c in zoomed)
