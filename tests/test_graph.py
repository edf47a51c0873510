"""Class graphs: nodes against a direct computation, edges only along the feeding map, and edges
that mean something (ablating the strongest upstream node hurts more than the weakest)."""
import numpy as np
import pytest
import torch

from neurocarto.feeding import feeding_map
from neurocarto.graph import class_nodes
from neurocarto.models import Layer
from neurocarto.run import prepare
from neurocarto.store import Store


def test_class_nodes_match_a_direct_computation():
    layers = [Layer("a", 10, 4, 4), Layer("b", 20, 2, 2)]
    row = np.zeros(30)
    row[[1, 4, 7]] = [5, 9, 0]                 # layer a: top 10% = 1 channel → channel 4
    row[10:30] = np.arange(20)                 # layer b: top 2 = channels 19, 18 (neurons 29, 28)
    labels = np.full(30, -1)
    labels[[28, 29, 15]] = 3                   # 28 and 29 form cluster 3 (15 is a member not in the top)
    nodes = class_nodes(row, layers, labels, top_fraction=0.1)
    assert [node["id"] for node in nodes] == ["a:4", "b:c3"]
    assert nodes[0]["members"] == [4] and nodes[0]["score"] == 9
    assert nodes[1]["members"] == [29, 28] and nodes[1]["score"] == pytest.approx((19 + 18) / 2)


def test_edges_follow_the_feeding_map(small_fashion_run):
    config, execution, manifest = small_fashion_run
    run = prepare(config, execution)
    names = [layer.name for layer in run.layers]
    allowed = {(names[f.upstream], names[f.downstream]) for f in feeding_map(run.model.module, run.layers)}
    with Store(execution.cache) as store:
        graphs = [store.get_json(manifest["key"], f"graph/{c}") for c in range(10)]
    n_edges = 0
    for class_graph in graphs:
        layer_of = {node["id"]: node["layer"] for node in class_graph["nodes"]}
        for edge in class_graph["edges"]:
            assert (layer_of[edge["source"]], layer_of[edge["target"]]) in allowed and edge["weight"] > 0
        n_edges += len(class_graph["edges"])
    assert n_edges > 100 and manifest["stages"]["graph"]["images_per_class"] is None


def _node_activation(model, module, members_channels, images):
    captured = {}
    handle = module.register_forward_hook(lambda _m, _i, out: captured.__setitem__("map", out.detach()))
    with torch.no_grad():
        model(images)
    handle.remove()
    return captured["map"][:, members_channels].flatten(2).amax(2).sum().item()


def test_ablating_the_strongest_edge_hurts_more_than_the_weakest(small_fashion_run):
    config, execution, manifest = small_fashion_run
    run = prepare(config, execution)
    model = run.model.module
    modules = dict(model.named_modules())
    offsets = np.cumsum([0] + [layer.channels for layer in run.layers])
    outcomes = []
    with Store(execution.cache) as store:
        labels = store.get_array(manifest["key"], "image_labels")
        for label in range(0, 10, 3):
            class_graph = store.get_json(manifest["key"], f"graph/{label}")
            nodes = {node["id"]: node for node in class_graph["nodes"]}
            images = run.load_images(np.flatnonzero(labels == label)[:40])
            targets = {}
            for edge in class_graph["edges"]:
                targets.setdefault(edge["target"], []).append(edge)
            for target, edges in list(targets.items())[:12]:
                if len(edges) < 2:
                    continue
                edges.sort(key=lambda e: -e["weight"])
                node = nodes[target]
                channels = [n - offsets[node["layer_index"]] for n in node["members"]]
                module = modules[node["layer"]]
                base = _node_activation(model, module, channels, images)
                drops = []
                for edge in (edges[0], edges[-1]):
                    source = nodes[edge["source"]]
                    zeroed = [n - offsets[source["layer_index"]] for n in source["members"]]

                    def ablate(_m, _i, out, zeroed=zeroed):
                        out = out.clone()
                        out[:, zeroed] = 0
                        return out
                    handle = modules[source["layer"]].register_forward_hook(ablate)
                    drops.append(base - _node_activation(model, module, channels, images))
                    handle.remove()
                outcomes.append(drops[0] > drops[1])
    fraction = float(np.mean(outcomes))
    print(f"strongest-edge ablation hurts more than weakest for {fraction:.0%} of {len(outcomes)} nodes")
    assert len(outcomes) >= 10 and fraction >= 0.75
