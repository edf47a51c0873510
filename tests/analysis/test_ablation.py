"""Ablating concepts: the edited channels against direct assignment, the scores against a direct computation
with the channels zeroed by hand, random sets drawn from the same layers, and the CLI on a real run."""
import json

import numpy as np
import pytest
import torch

import neurocarto as nc
from neurocarto.analysis.ablation import _Channels, ablate
from neurocarto.cli import main as cli_main
from neurocarto.config import ExecutionConfig, RunConfig
from neurocarto.errors import NeuroCartoError
from neurocarto.inputs.prepared_run import prepare
from neurocarto.neurons import Layer


def test_channels_are_set_in_every_layout():
    layers = [Layer("a", 4, 3, 3), Layer("b", 5, 2, 2, layout="nhwc"), Layer("c", 6, 2, 2, layout="tokens",
                                                                             extra_tokens=1)]
    values = np.arange(15, dtype=np.float32) + 100
    channels = _Channels(layers, np.array([1, 3, 4 + 2, 9 + 0, 9 + 5]), values)
    maps = torch.randn(2, 4, 3, 3)
    edited = channels.edit(0, maps)
    expected = maps.clone()
    expected[:, 1], expected[:, 3] = 101, 103
    assert torch.equal(edited, expected) and not torch.equal(maps, edited)      # a copy, the input untouched
    last = torch.randn(2, 2, 2, 5)
    expected = last.clone()
    expected[..., 2] = 106
    assert torch.equal(channels.edit(1, last), expected)
    tokens = torch.randn(2, 5, 6)
    expected = tokens.clone()
    expected[:, 1:, 0], expected[:, 1:, 5] = 109, 114                           # the class token keeps its value
    assert torch.equal(channels.edit(2, tokens), expected)


def test_scores_equal_a_direct_computation(image_folder, factory_file, tmp_path):
    prepared = prepare(RunConfig(model=f"{factory_file}:make", data=str(image_folder), max_images=20, top_k=3),
                       ExecutionConfig(cache=tmp_path, progress=False))
    offsets = {layer.name: sum(l.channels for l in prepared.layers[:i]) for i, layer in enumerate(prepared.layers)}
    neurons = np.array([offsets["block.1"] + 2, offsets["block.1"] + 7, offsets["stem.2"] + 1])
    result = ablate(prepared, neurons, n_images=30, random_sets=3, seed=4)
    indices, held_out = prepared.held_out_images(30, 4)
    assert held_out and not np.isin(indices, prepared.indices).any() and result.images == len(indices)
    model = prepared.model.module.eval()
    images = torch.stack([prepared.model.transform(prepared.dataset.load(int(i))) for i in indices])
    labels = np.array([prepared.dataset.label(int(i)) for i in indices])
    modules = dict(model.named_modules())

    def zero(channels):
        return lambda _m, _i, output: output.index_fill(1, torch.tensor(channels), 0.0)

    with torch.no_grad():
        before = model(images)
        handles = [modules["block.1"].register_forward_hook(zero([2, 7])),
                   modules["stem.2"].register_forward_hook(zero([1]))]
        after = model(images)
        for handle in handles:
            handle.remove()
    for c in range(3):
        mine = labels == c
        assert result.accuracy_before[c] == pytest.approx((before[mine].argmax(1).numpy() == c).mean())
        assert result.accuracy_after[c] == pytest.approx((after[mine].argmax(1).numpy() == c).mean())
        assert result.logit_after[c] == pytest.approx(after[mine, c].mean().item(), abs=1e-5)
    assert result.random_accuracy_after.shape == (3, 3) and result.neurons == ["stem.2:1", "block.1:2", "block.1:7"]
    with pytest.raises(NeuroCartoError, match="method 'nope': valid: zero, mean"):
        ablate(prepared, neurons, method="nope")


def test_ablate_a_cluster_of_a_stored_run_from_the_cli(small_fashion_run, tmp_path, capsys):
    _config, execution, manifest = small_fashion_run
    run = nc.open_run(manifest["key"], cache=execution.cache)
    try:
        last = run.layer_names[-1]
        everything = [f"{last}:{c}" for c in range(run.layers[-1].channels)]
        result = nc.ablate(run, everything, images=300, random_sets=0)
        assert result.held_out and result.images == 300 and len(result.neurons) == len(everything)
        assert np.nanmean(result.accuracy_before) > 0.6 > np.nanmean(result.accuracy_after) + 0.2
        cluster = max((c for c in run.clusters if c.layer == last), key=lambda c: len(c.members)).id
    finally:
        run.store.close()
    out = tmp_path / "ablation.json"
    assert cli_main(["ablate", "--cache", str(execution.cache), "--run", manifest["key"], "--neurons", cluster,
                     "--class", "coat", "--images", "200", "--random-sets", "2", "--method", "mean",
                     "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ablated (mean)" in printed and printed.splitlines()[3].startswith("Coat")
    saved = json.loads(out.read_text())
    assert saved["method"] == "mean" and len(saved["classes"]) == 10 and saved["classes"][0]["random_drop_std"] >= 0
    assert cli_main(["ablate", "--cache", str(execution.cache), "--run", manifest["key"], "--neurons",
                     "nope:1"]) == 2
    assert "unknown neuron or cluster 'nope:1'" in capsys.readouterr().err


def test_causal_scores_ablate_each_class_graphs_top_nodes(small_fashion_run, capsys):
    from neurocarto.analysis.ablation import AblationBench, causal_scores, prepared_for

    _config, execution, manifest = small_fashion_run
    run = nc.open_run(manifest["key"], cache=execution.cache)
    try:
        scores = causal_scores(run, top_nodes=3, n_images=200, random_sets=2, seed=3)
        assert scores["images"] == 200 and scores["held_out"] and len(scores["classes"]) == 10
        coat = scores["classes"][4]
        nodes = sorted(run.graph(4)["nodes"], key=lambda node: -node["score"])[:3]
        assert coat["nodes"] == [node["id"] for node in nodes]
        bench = AblationBench(prepared_for(run), n_images=200, random_sets=2, seed=3)
        direct = bench.ablate(np.unique(np.concatenate([node["members"] for node in nodes])))
        assert coat["drop"] == pytest.approx(direct.drop()[4])
        assert coat["random_drop"] == pytest.approx(direct.random_drop()[:, 4].mean())
        assert scores["three_times_random"] == sum(row["three_times_random"] for row in scores["classes"])
    finally:
        run.store.close()
    assert cli_main(["evaluate", "--cache", str(execution.cache), "--run", manifest["key"], "--trials", "5",
                     "--causal", "--causal-images", "100"]) == 0
    assert "Causal test: each class's top 3 graph nodes ablated" in capsys.readouterr().out
