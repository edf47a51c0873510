"""Concept graphs at any cut: nodes, anchors and node edges against direct computations."""
import numpy as np
import pytest

from neurocarto.concepts.concept_graph import (
    WEIGHT_DTYPE,
    anchor_neuron,
    chosen_neurons,
    class_graph_at,
    class_nodes,
    cluster_anchors,
    node_holding,
    typical_images,
)

LAYERS = ["a", "b"]
OFFSETS = np.array([0, 10, 30])
LAYER_OF = np.repeat([0, 1], [10, 20])


def test_chosen_neurons_are_each_layers_top_share_by_descending_score():
    row = np.zeros(30)
    row[[1, 4, 7]] = [5, 9, 0]                 # layer a: top 10% = 1 channel → channel 4
    row[10:30] = np.arange(20)                 # layer b: top 2 = channels 19, 18 (neurons 29, 28)
    chosen = chosen_neurons(row, [10, 20], 0.1)
    assert chosen["neuron"].tolist() == [4, 29, 28] and chosen["score"].tolist() == [9, 19, 18]
    assert len(chosen_neurons(np.zeros(30), [10, 20], 0.5)) == 0       # A = 0 is never chosen
    capped = chosen_neurons(row, [10, 20], 0.5, max_neurons=3)         # layer b: top 10 capped at 3
    assert capped["neuron"].tolist() == [4, 1, 29, 28, 27]


def test_nodes_group_the_chosen_neurons_by_cluster_named_by_its_smallest_member():
    row = np.zeros(30)
    row[[1, 4]] = [5, 9]
    row[10:30] = np.arange(20)
    labels = np.full(30, -1)
    labels[[28, 29, 15]] = 3                   # cluster 3: 28 and 29 chosen; 15, its smallest member, is not
    chosen = chosen_neurons(row, [10, 20], 0.1)
    nodes = class_nodes(chosen, LAYERS, OFFSETS, LAYER_OF, labels, cluster_anchors(labels, LAYER_OF))
    assert [node["id"] for node in nodes] == ["a:4", "b:c5"]
    assert nodes[0]["members"] == [4] and nodes[0]["score"] == 9 and nodes[0]["cluster"] == -1
    assert nodes[1]["members"] == [29, 28] and nodes[1]["score"] == pytest.approx((19 + 18) / 2)
    assert nodes[1]["cluster"] == 3


def test_cluster_anchors_are_the_smallest_member_in_the_layer():
    rng = np.random.default_rng(0)
    labels = rng.integers(-1, 5, 30)
    anchors = cluster_anchors(labels, LAYER_OF)
    for neuron in range(30):
        same = [m for m in range(30) if labels[m] == labels[neuron] >= 0 and LAYER_OF[m] == LAYER_OF[neuron]]
        assert anchors[neuron] == (min(same) if same else neuron)


def _brute_force_edges(nodes, weights, max_in_edges):
    sums = {}
    for source in nodes:
        for target in nodes:
            total = sum(float(w["weight"]) for w in weights
                        if w["source"] in source["members"] and w["target"] in target["members"])
            if total > 0:
                sums.setdefault(target["id"], []).append((-total, source["id"]))
    return {(source, target): -weight for target, sources in sums.items()
            for weight, source in sorted(sources)[:max_in_edges]}


@pytest.mark.parametrize("seed", range(4))
def test_node_edges_are_the_sums_of_the_neuron_weights_at_every_cut(seed):
    rng = np.random.default_rng(seed)
    row = rng.integers(0, 50, 30).astype(float)
    chosen = chosen_neurons(row, [10, 20], 0.6)
    upstream = chosen["neuron"][LAYER_OF[chosen["neuron"]] == 0]
    downstream = chosen["neuron"][LAYER_OF[chosen["neuron"]] == 1]
    pairs = [(u, d) for u in upstream for d in downstream if rng.random() < 0.7]
    weights = np.rec.fromarrays([[u for u, _ in pairs], [d for _, d in pairs], rng.normal(0.1, 1, len(pairs))],
                                dtype=WEIGHT_DTYPE)
    for n_labels in (2, 5, 12):          # coarse to fine cuts
        labels = np.where(rng.random(30) < 0.6, rng.integers(0, n_labels, 30) * 2 + LAYER_OF, -1)
        graph = class_graph_at(chosen, weights, 7, LAYERS, OFFSETS, LAYER_OF, labels, cluster_anchors(labels, LAYER_OF),
                               max_in_edges=3)
        assert sorted(n for node in graph["nodes"] for n in node["members"]) == sorted(chosen["neuron"].tolist())
        found = {(e["source"], e["target"]): e["weight"] for e in graph["edges"]}
        expected = _brute_force_edges(graph["nodes"], weights, 3)
        assert found.keys() == expected.keys()
        assert all(found[key] == pytest.approx(expected[key], rel=1e-5) for key in found)
        assert graph["images"] == 7


def test_a_node_id_of_any_cut_finds_the_node_that_holds_its_neuron():
    row = np.zeros(30)
    row[10:30] = np.arange(20)
    chosen = chosen_neurons(row, [10, 20], 0.2)             # b: neurons 29, 28, 27, 26
    index = {f"{LAYERS[LAYER_OF[n]]}:{n - OFFSETS[LAYER_OF[n]]}": n for n in range(30)}.get
    fine = np.full(30, -1)
    coarse = fine.copy()
    coarse[[26, 27, 28, 15]] = 0
    graph = {"nodes": class_nodes(chosen, LAYERS, OFFSETS, LAYER_OF, coarse, cluster_anchors(coarse, LAYER_OF))}
    assert anchor_neuron("b:c5", index) == (15, True) and anchor_neuron("b:18", index) == (28, False)
    assert anchor_neuron("b:cx", index) == (None, True) and anchor_neuron("zz:3", index) == (None, False)
    assert node_holding(graph, 28, coarse, LAYER_OF, False)["id"] == "b:c5"     # a neuron, now in a cluster
    assert node_holding(graph, 15, coarse, LAYER_OF, True)["id"] == "b:c5"      # the cluster, by its anchor
    assert node_holding(graph, 15, coarse, LAYER_OF, False) is None              # 15 itself is not in the graph
    graph = {"nodes": class_nodes(chosen, LAYERS, OFFSETS, LAYER_OF, fine, cluster_anchors(fine, LAYER_OF))}
    assert node_holding(graph, 28, fine, LAYER_OF, True)["id"] == "b:18"         # the cluster split: its own node


@pytest.mark.parametrize("seed", range(5))
def test_typical_images_are_the_class_images_most_held_shown_by_the_highest_layer(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, 40)
    top = rng.integers(0, 40, (30, 6))
    top[rng.random(top.shape) < 0.1] = -1                   # unfilled top-k slots
    neurons = rng.choice(30, 12, replace=False)
    found = typical_images(top, labels, neurons, LAYER_OF, 1, 4, 5)
    held: dict[int, list[tuple]] = {}                       # brute force: every (image, holder, rank) of the class
    for neuron in neurons:
        for rank in range(4):
            image = int(top[neuron, rank])
            if image >= 0 and labels[image] == 1:
                held.setdefault(image, []).append((-LAYER_OF[neuron], rank, int(neuron)))
    order = sorted(held, key=lambda image: (-len(held[image]), image))[:5]
    assert [image for image, _, _ in found] == order
    for image, neuron, rank in found:
        _, best_rank, best_neuron = min(held[image])
        assert (neuron, rank) == (best_neuron, best_rank) and top[neuron, rank] == image
    assert typical_images(top, labels, neurons, LAYER_OF, 7, 4, 5) == []      # a class with no images held
