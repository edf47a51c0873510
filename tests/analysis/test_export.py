"""Export of a finished run in open formats, and the run summary."""
import csv
import json

import numpy as np

from neurocarto.cli import main as cli_main
from neurocarto.compute.pipeline import summary


def test_export_writes_every_documented_file(small_fashion_run, tmp_path, capsys):
    _config, execution, manifest = small_fashion_run
    out = tmp_path / "export"
    assert cli_main(["export", "--cache", str(execution.cache), "--run", manifest["name"], "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    n_neurons = manifest["counts"]["neurons"]
    with open(out / "neurons.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == n_neurons and rows[0]["id"] == "conv2:0" and rows[0]["x"] != ""
    clusters = json.loads((out / "clusters.json").read_text())
    clustered = {member for c in clusters for member in c["members"]}
    assert clustered == {row["id"] for row in rows if row["cluster"] != "-1"}
    assert all(len(c["layers"]) == 1 and 0 < c["mean_jaccard"] <= 1 for c in clusters)
    embedding = np.load(out / "embedding.npz")
    assert embedding["embedding"].shape == (n_neurons, 30) and embedding["projection"].shape == (n_neurons, 2)
    assert embedding["neighbors"].shape == (n_neurons, 20)
    graphs = sorted((out / "graphs").glob("*.json"))
    assert len(graphs) == 10 and json.loads(graphs[9].read_text())["class"] == "Ankle boot"
    boot = json.loads(graphs[9].read_text())       # its edges are the sums of its neuron-level edges
    member_of = {m: node["id"] for node in boot["nodes"] for m in node["members"]}
    sums: dict = {}
    for edge in boot["neuron_edges"]:
        pair = (member_of[edge["source"]], member_of[edge["target"]])
        sums[pair] = sums.get(pair, 0.0) + edge["weight"]
    assert boot["edges"] and all(abs(sums[(e["source"], e["target"])] - e["weight"]) <= 1e-5 * abs(e["weight"])
                                 for e in boot["edges"])
    top = np.load(out / "top_images.npz")
    assert top["top_images"].shape == (n_neurons, 20) and len(top["image_index"]) == 600
    assert json.loads((out / "manifest.json").read_text())["key"] == manifest["key"]
    hierarchy = json.loads((out / "hierarchy.json").read_text())
    assert hierarchy["floor"] == 0.05 and hierarchy["cut"] == "automatic"
    assert set(hierarchy["cuts"]) == {layer["name"] for layer in manifest["layers"]}
    merges = hierarchy["merges"]
    assert merges and all(a["similarity"] >= b["similarity"] for a, b in zip(merges, merges[1:]))
    made = {f"merge:{row}" for row in range(len(merges))}
    assert all(m[side] in made or m[side] in {row["id"] for row in rows} for m in merges for side in ("a", "b"))
    # the clusters are the merges above each layer's cut and under its cap, replayed here
    members_of: dict[str, set] = {}
    applied: dict[str, set] = {}
    for row, merge in enumerate(merges):
        parts = [members_of.get(merge[side], {merge[side]}) for side in ("a", "b")]
        members_of[f"merge:{row}"] = members = parts[0] | parts[1]
        cut = hierarchy["cuts"][next(iter(members)).rpartition(":")[0]]
        if merge["similarity"] >= cut["cut"] and merge["size"] <= cut["largest_cluster"]:
            applied.pop(merge["a"], None)
            applied.pop(merge["b"], None)
            applied[f"merge:{row}"] = members
    assert sorted(sorted(g) for g in applied.values()) == sorted(sorted(c["members"]) for c in clusters)


def test_export_of_an_unknown_run_or_to_a_file_and_a_store_in_a_file_are_clear(small_fashion_run, tmp_path, capsys):
    _config, execution, manifest = small_fashion_run
    assert cli_main(["export", "--cache", str(execution.cache), "--run", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown run 'nope'" in capsys.readouterr().err
    (tmp_path / "a-file").write_text("")
    assert cli_main(["export", "--cache", str(execution.cache), "--run", manifest["key"],
                     "--out", str(tmp_path / "a-file")]) == 2
    assert "cannot make this folder" in capsys.readouterr().err
    assert cli_main(["runs", "--cache", str(tmp_path / "a-file")]) == 2
    assert f"cannot open the store in {tmp_path / 'a-file'}" in capsys.readouterr().err


def test_summary_reports_clusters_embedding_and_time(small_fashion_run):
    text = summary(small_fashion_run[2])
    assert "clustering:" in text and "embedding:" in text and "patches" in text and "mixed4b" in text
