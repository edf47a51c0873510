"""The one reader of stored runs, which is also the Python API: `nc.open_run`, `StoredRun`, `nc.precompute`."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import neurocarto as nc
from neurocarto.concepts.hierarchy import cut_labels
from neurocarto.errors import NeuroCartoError
from neurocarto.store.disk import Store
from neurocarto.store.keys import STAGE_NAMES
from neurocarto.store.stored_run import AUTO, parse_cut
from neurocarto.ui.app import load_run

ROOT = Path(__file__).resolve().parents[2]


def test_cuts_from_text_are_auto_or_a_threshold_within_the_hierarchy():
    assert parse_cut(None, 0.05) == AUTO and parse_cut(" Auto ", 0.05) == AUTO
    assert parse_cut("0.153", 0.05) == 0.15 and parse_cut(0.6, 0.05) == 0.6
    for bad in ("0.01", "0.7", "nan", "inf", "x", "", []):
        with pytest.raises(NeuroCartoError, match="cut must be “auto” or a Jaccard threshold from 0.05 to 0.6"):
            parse_cut(bad, 0.05)


def test_a_runs_graph_at_any_cut(small_fashion_run):
    _config, execution, manifest = small_fashion_run
    with Store(execution.cache) as store:
        data = load_run(store, manifest["key"])
        stored = store.get_json(manifest["key"], "graph/4")
        assert data.graph(4) == stored and data.graph(4, AUTO) is data.graph(4)
        assert np.array_equal(data.clustering(AUTO).labels, store.get_array(manifest["key"], "cluster_labels"))
        assert data.cut_range() == f"{data.layer_cuts.min():.2f}–{data.layer_cuts.max():.2f}"
        sizes = []
        for cut in (0.05, 0.2, 0.6):
            graph = data.graph(4, cut)
            labels = data.clustering(cut).labels
            assert np.array_equal(labels, cut_labels(len(labels), data.merges, cut, data.merge_caps))
            members = sorted(n for node in graph["nodes"] for n in node["members"])
            assert members == sorted(n for node in stored["nodes"] for n in node["members"])  # same neurons, regrouped
            assert all(len({labels[n] for n in node["members"]}) == 1 for node in graph["nodes"])
            sizes.append(len(graph["nodes"]))
        assert sizes[0] < sizes[1] <= sizes[2]
        coarse = data.graph(4, 0.05)
        cluster = max(coarse["nodes"], key=lambda node: len(node["members"]))
        size, similarity = data.cluster_similarity(0.05, cluster["cluster"], cluster["layer_index"])
        assert size >= len(cluster["members"]) > 1 and 0 < similarity <= 1
        # a node id of one cut finds the node that holds the same neuron at another
        fine = data.graph(4, 0.6)
        [found] = data.resolve_nodes(coarse, [fine["nodes"][0]["id"]], 0.05)
        assert fine["nodes"][0]["members"][0] in found["members"]
        assert data.resolve_nodes(coarse, ["nope:c1", "conv2:x", "conv2:99999"], 0.05) == []
        # what another class's graph lacks stands as a node of its own only when asked (`outside`)
        absent = [(node, other) for other in range(len(data.class_names)) for node in coarse["nodes"]
                  if not data.resolve_nodes(data.graph(other, 0.05), [node["id"]], 0.05)]
        assert absent, "every node of class 4's graph is in every other class's graph"
        for node, other in absent[:20]:
            [alone] = data.resolve_nodes(data.graph(other, 0.05), [node["id"]], 0.05, outside=True)
            assert alone["outside"] and alone["id"] == node["id"] and alone["cluster"] == node["cluster"]
            assert alone["members"] == sorted(data.members(node["id"], 0.05).tolist())
            assert set(node["members"]) <= set(alone["members"])
        assert data.resolve_nodes(coarse, ["nope:c1", "conv2:x", "conv2:99999"], 0.05, outside=True) == []


def test_stage_names_are_the_pipelines():
    from neurocarto.compute.stages import STAGES

    assert STAGE_NAMES == tuple(stage.name for stage in STAGES)


def test_open_run_reads_a_stored_run_without_torch(small_fashion_run):
    """`import neurocarto; nc.open_run(...)` in a fresh interpreter: the run, its clusters and graphs, no torch."""
    _config, execution, manifest = small_fashion_run
    code = (f"import sys, neurocarto as nc; run = nc.open_run({manifest['name']!r}, cache={str(execution.cache)!r}); "
            "print(run.key, len(run.clusters), len(run.graph('Coat')['nodes'])); assert 'torch' not in sys.modules")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    key, clusters, nodes = result.stdout.split()
    with Store(execution.cache) as store:
        labels = store.get_array(manifest["key"], "cluster_labels")
        assert key == manifest["key"] and int(nodes) == len(store.get_json(key, "graph/4")["nodes"])
    assert int(clusters) == len(set(labels[labels >= 0].tolist()))


def test_every_public_name_against_the_store(small_fashion_run):
    _config, execution, manifest = small_fashion_run
    run = nc.open_run(manifest["key"][:6], cache=execution.cache)
    try:
        assert isinstance(run, nc.StoredRun) and run.complete and run.name == manifest["name"]
        assert len(run.neuron_ids) == len(run.layer_of) == manifest["counts"]["neurons"]
        assert run.layer_offsets[-1] == len(run.neuron_ids) and run.class_names[4] == "Coat"
        # clusters: the stored labels, named by their smallest member, with their members' mean Jaccard
        clusters = run.clusters
        labels = run.array("cluster_labels")
        assert len(clusters) == labels.max() + 1 and all(isinstance(c, nc.Cluster) for c in clusters)
        for found in clusters:
            members = [run.neuron_index(m) for m in found.members]
            assert len(set(labels[members])) == 1 and (labels == labels[members[0]]).sum() == len(members)
            assert found.id == found.layer + ":c" + run.neuron_ids[min(members)].rpartition(":")[2]
            assert np.array_equal(run.members(found.id), sorted(members))
        assert sum(len(c.members) for c in run.clusters_at("0.3")) == (cut_labels(
            len(labels), run.merges, 0.3, run.merge_caps) >= 0).sum()
        # neighbors: brute-force cosine in the full embedding; a neuron's equal the stored table
        vectors = run.embedding / np.linalg.norm(run.embedding, axis=1, keepdims=True)
        neuron = run.neuron_ids[40]
        near = run.neighbors(neuron, k=5)
        assert [n.id for n in near] == [run.neuron_ids[i] for i in run.neighbor_table[40, :5]]
        assert near[0].similarity == pytest.approx(float(vectors[40] @ vectors[run.neuron_index(near[0].id)]), abs=1e-5)
        biggest = max(clusters, key=lambda c: len(c.members))
        members = run.members(biggest.id)
        centre = vectors[members].mean(axis=0)
        scores = vectors @ (centre / np.linalg.norm(centre))
        scores[members] = -np.inf
        assert [n.id for n in run.neighbors(biggest.id, k=4)] == [run.neuron_ids[i] for i in np.argsort(-scores)[:4]]
        # graphs by name or index, at any cut; patches of a neuron and of a cluster
        assert run.graph("coat") == run.graph(4) and run.graph(4, "0.2") == run.graph(4, 0.2)
        assert len(run.patches(neuron)) == run.patch_count and run.patches(neuron)[0].size[0] > 0
        assert len(run.patches(biggest.id)) == len(biggest.members)
        for bad, problem in ((lambda: run.graph("Zebra"), "unknown class 'Zebra'"),
                             (lambda: run.neighbors("conv9:1"), "unknown neuron or cluster 'conv9:1'"),
                             (lambda: run.graph(0, 0.9), "cut must be")):
            with pytest.raises(NeuroCartoError, match=problem):
                bad()
    finally:
        run.store.close()
    with pytest.raises(NeuroCartoError, match="holds no neurocarto store"):
        nc.open_run(cache=execution.cache / "nothing-here")


def test_precompute_takes_a_model_object(tmp_path, image_folder):
    """A torchvision network built in Python (not a spec), on an image folder, every stage, from Python."""
    import torchvision
    import torchvision.transforms as T

    module = torchvision.models.squeezenet1_1(weights=None, num_classes=3)
    logs = []
    run = nc.precompute(model=module, data=str(image_folder), transform=T.Compose([T.Resize((64, 64)), T.ToTensor()]),
                        top_k=3, cache=tmp_path / "cache", progress=False, log=logs.append, batch_size=16)
    try:
        assert run.complete and run.manifest["model"]["spec"] == "python:SqueezeNet"
        assert run.manifest["model"]["weights"] == "in memory" and run.class_names[:2] == ["cat", "dog"]
        assert len(run.layers) > 3 and run.projection.shape == (len(run.neuron_ids), 2)
        assert len(run.graph("dog")["nodes"]) > 0
    finally:
        run.store.close()
    again = nc.precompute(model=module, data=str(image_folder), transform=T.Compose([T.Resize((64, 64)), T.ToTensor()]),
                          top_k=3, cache=tmp_path / "cache", progress=False, log=logs.append, batch_size=16)
    again.store.close()
    assert again.key == run.key and any("unchanged, skipped" in line for line in logs)
    with pytest.raises(NeuroCartoError, match="expected a torch.nn.Module"):
        nc.precompute(model=object(), data=str(image_folder), cache=tmp_path / "cache")
    with pytest.raises(NeuroCartoError, match="unknown run option 'topk'"):
        nc.precompute(model=module, data=str(image_folder), cache=tmp_path / "cache", topk=3)
