"""A sparse dictionary of a layer of a real run, from the CLI: kept with the run, measured on held-out images."""
import json

import numpy as np
import pytest
import torch

from neurocarto.analysis.rerun import prepared_for
from neurocarto.cli import main
from neurocarto.compute.dictionary import TopKDictionary
from neurocarto.compute.dictionary_fit import reconstruction_accuracy
from neurocarto.store.dictionaries import stored_quality, stored_weights
from neurocarto.store.disk import Store
from neurocarto.store.stored_run import StoredRun


def test_a_layers_dictionary_from_the_cli_is_measured_and_kept_with_the_run(small_fashion_run, tmp_path, capsys):
    _config, execution, manifest = small_fashion_run
    common = ["dictionary", "--cache", str(execution.cache), "--run", manifest["key"]]
    assert main([*common, "--layers", "mixed4a,conv2", "--vectors", "9600", "--epochs", "10", "--images", "300",
                 "--json", str(tmp_path / "q.json")]) == 0
    printed = capsys.readouterr().out
    assert "dictionary of mixed4a: 1,280 latents for 160 channels, k = 32" in printed and "held-out images" in printed
    quality, conv2 = json.loads((tmp_path / "q.json").read_text())       # in the order asked, one pass for both
    assert conv2["layer"] == "conv2" and conv2["latents"] == 384 and conv2["accuracy"] == quality["accuracy"]
    assert quality["held out"] and quality["images"] == 300 and quality["mean l0"] <= 32
    assert 0.6 < quality["variance explained"] <= 1 and 0 <= quality["dead"] <= quality["latents"]
    assert quality["accuracy reconstructed"] >= 0.9 * quality["accuracy"] > 0.5
    with Store(execution.cache) as store:
        run = StoredRun(store, manifest["key"])
        assert stored_quality(run.store, run.key, "mixed4a") == quality
        weights = stored_weights(run.store, run.key, "mixed4a")
        assert weights["decoder"].shape == (160, 1280) and weights["encoder"].shape == (1280, 160)
        np.testing.assert_allclose(np.linalg.norm(weights["decoder"], axis=0), 1, rtol=1e-4)
        assert stored_weights(run.store, run.key, "mixed4b") is None

    assert main(["runs", "--cache", str(execution.cache)]) == 0       # each dictionary's figures, with its run
    listed = capsys.readouterr().out
    assert "dictionary conv2 384 latents (k 24): variance explained" in listed and "dictionary mixed4a 1,280" in listed
    assert listed.index("dictionary conv2") < listed.index("dictionary mixed4a")          # in layer order
    assert main(["runs", "--cache", str(execution.cache), "--json"]) == 0
    (row,) = [row for row in json.loads(capsys.readouterr().out) if row["key"] == manifest["key"]]
    assert [record["layer"] for record in row["dictionaries"]] == ["conv2", "mixed4a"]
    for flags, message in ((["--layers", "mixed9"], "unknown layer 'mixed9'"),
                           (["--layers", "mixed4a", "--k", "5000"], "takes k from 1 to 1280"),
                           (["--layers", "mixed4a", "--epochs", "0"], "--epochs must be at least 1")):
        assert main([*common, *flags]) == 2
        assert message in capsys.readouterr().err


def test_a_reconstruction_that_is_the_identity_or_a_constant_matches_the_model_so_changed(small_fashion_run):
    _config, execution, manifest = small_fashion_run
    with Store(execution.cache) as store:
        run = prepared_for(StoredRun(store, manifest["key"]))
    layer = next(layer for layer in run.layers if layer.name == "mixed3b")
    channels = layer.channels
    images = run.indices[:200]
    identity = TopKDictionary(channels, channels, channels)
    with torch.no_grad():     # ReLU maps are their own top-`channels` codes: reconstructed exactly
        identity.encoder.copy_(torch.eye(channels)), identity.decoder.copy_(torch.eye(channels))
    original, reconstructed = reconstruction_accuracy(run, layer, identity, images)
    assert reconstructed == original
    constant = TopKDictionary(channels, channels, 1)
    with torch.no_grad():
        constant.decoder.zero_(), constant.centre.fill_(0.5)
    _, with_constant = reconstruction_accuracy(run, layer, constant, images)
    model = run.model.module.eval()
    module = dict(model.named_modules())["mixed3b"]
    handle = module.register_forward_hook(lambda _m, _i, output: torch.full_like(output, 0.5))
    try:
        with torch.inference_mode():
            batch = run.load_images(np.arange(200))
            predicted = model(batch).argmax(1).numpy()
    finally:
        handle.remove()
    labels = np.array([run.dataset.label(int(i)) for i in images])
    assert with_constant == pytest.approx(float((predicted == labels).mean()))
