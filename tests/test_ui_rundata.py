"""What the app reads of a run: graphs and clusters at any cut, and cuts from untrusted text."""
import numpy as np
import pytest

from neurocarto.errors import NeuroCartoError
from neurocarto.hierarchy import cut_labels
from neurocarto.store import Store
from neurocarto.ui.rundata import AUTO, load_run, parse_cut


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
        assert data.cuttable and data.graph(4) == stored and data.graph(4, AUTO) is data.graph(4)
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
