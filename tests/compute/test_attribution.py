"""Class graphs: nodes against a direct computation, edges only along the feeding map, and edges
that mean something (ablating the strongest upstream node hurts more than the weakest)."""
import numpy as np
import torch

from neurocarto.inputs.feeding import feeding_map
from neurocarto.inputs.prepared_run import prepare
from neurocarto.store.disk import Store


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


def test_any_cut_of_the_stored_weights_equals_attribution_recomputed_for_its_nodes(small_fashion_run):
    """The graph the app builds at a cut from the stored neuron-level weights is the graph gradient × activation
    gives those nodes directly: per feed, Σ over the target's rows and the source's columns of the attribution sums."""
    from neurocarto.compute.attribution import channel_attributions, needed_channels
    from neurocarto.concepts.concept_graph import class_graph_at, cluster_anchors
    from neurocarto.concepts.hierarchy import cut_labels

    config, execution, manifest = small_fashion_run
    run = prepare(config, execution)
    model = run.model.module
    feeds = feeding_map(model, run.layers)
    offsets = np.cumsum([0] + [layer.channels for layer in run.layers])
    layer_of = np.repeat(np.arange(len(run.layers)), [layer.channels for layer in run.layers])
    names = [layer.name for layer in run.layers]
    label = 4
    with Store(execution.cache) as store:
        key = manifest["key"]
        chosen, weights = store.get_array(key, f"graph_neurons/{label}"), store.get_array(key, f"graph_weights/{label}")
        merges, stored = store.get_array(key, "cluster_merges"), store.get_json(key, f"graph/{label}")
        ids = np.flatnonzero(store.get_array(key, "image_labels") == label)
        auto = store.get_array(key, "cluster_labels")
    assert class_graph_at(chosen, weights, stored["images"], names, offsets, layer_of, auto,
                          cluster_anchors(auto, layer_of), 50) == stored
    channels = needed_channels(chosen, run.layers, feeds)
    sums, n_images = channel_attributions(model, run.layers, feeds, channels,
                                          (run.load_images(ids[s:s + 50]) for s in range(0, len(ids), 50)))
    assert n_images == stored["images"]
    grouped = 0
    for cut in (0.08, 0.2, 0.4):
        labels = cut_labels(len(layer_of), merges, cut)
        graph = class_graph_at(chosen, weights, n_images, names, offsets, layer_of, labels,
                               cluster_anchors(labels, layer_of), 50)
        grouped += sum(len(node["members"]) > 1 for node in graph["nodes"])
        nodes = {node["id"]: node for node in graph["nodes"]}
        expected = {}
        for k, feed in enumerate(feeds):
            if k not in sums:
                continue
            row_of = {int(c): r for r, c in enumerate(channels[feed.downstream])}
            for target in (node for node in graph["nodes"] if node["layer_index"] == feed.downstream):
                rows = [row_of[n - offsets[feed.downstream]] for n in target["members"]
                        if feed.start <= n - offsets[feed.downstream] < feed.stop]
                for source in graph["nodes"]:
                    if rows and source["layer_index"] == feed.upstream:
                        columns = [n - offsets[feed.upstream] for n in source["members"]]
                        pair = (source["id"], target["id"])
                        expected[pair] = expected.get(pair, 0.0) + sums[k][rows][:, columns].sum() / n_images
        expected = {pair: weight for pair, weight in expected.items() if weight > 0}
        found = {(edge["source"], edge["target"]): edge["weight"] for edge in graph["edges"]}
        assert set(found) <= set(expected) and set(nodes) >= {target for _, target in found}
        scale = max(expected.values())
        assert all(abs(found[pair] - expected[pair]) <= 1e-5 * scale for pair in found)
        for target in {target for _, target in expected}:     # each target keeps its strongest (here: all ≤ 50)
            assert {p for p in found if p[1] == target} == {p for p in expected if p[1] == target} or \
                sum(p[1] == target for p in found) == 50
    assert grouped > 0
