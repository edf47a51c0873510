"""End to end: precompute runs on small real data, skip, resume, and bad input."""
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from neurocarto.cli import main as cli_main
from neurocarto.compute.pipeline import precompute
from neurocarto.config import EmbedParams, ExecutionConfig, PatchParams, RunConfig
from neurocarto.errors import NeuroCartoError
from neurocarto.inputs.models import GOOGLENET_LAYERS, load_model
from neurocarto.store.disk import Store
from neurocarto.store.patch_images import unpack
from neurocarto.store.stored_run import skipped_images
from neurocarto.zoo.fashion_inception import DEFAULT_LAYERS

ROOT = Path(__file__).resolve().parents[2]
PASS1_ARRAYS = ("top_values", "top_images", "top_positions", "class_matrix", "class_mean_maxima", "class_images",
                "image_index", "image_labels", "skipped")


def quiet(cache: Path, **kwargs) -> ExecutionConfig:
    return ExecutionConfig(cache=cache, progress=False, **kwargs)


def test_default_model_on_fashion_subsample(tmp_path, fashion_available):
    logs = []
    manifest = precompute(RunConfig(max_images=300, top_k=20), quiet(tmp_path, batch_size=64), log=logs.append,
                          stages=["pass1"])
    assert manifest["stages"]["pass1"]["status"] == "done" and not manifest["complete"]
    assert manifest["counts"]["images"] == 300
    assert [layer["name"] for layer in manifest["layers"]] == DEFAULT_LAYERS
    n_neurons = manifest["counts"]["neurons"]
    with Store(tmp_path) as store:
        top_values = store.get_array(manifest["key"], "top_values")
        top_images = store.get_array(manifest["key"], "top_images")
        top_positions = store.get_array(manifest["key"], "top_positions")
        class_matrix = store.get_array(manifest["key"], "class_matrix")
        image_index = store.get_array(manifest["key"], "image_index")
        assert store.get_json(manifest["key"], "class_names")[9] == "Ankle boot"
    assert top_values.shape == top_images.shape == (n_neurons, 20)
    assert np.all(np.diff(top_values, axis=1) <= 0)
    assert class_matrix.shape == (10, n_neurons)
    # every image counts at least one channel of every layer in A
    first_layer = manifest["layers"][0]["channels"]
    assert class_matrix[:, :first_layer].sum() >= 300

    # the stored maxima and positions are the model's, for one neuron checked directly
    loaded = load_model(None)
    from neurocarto.inputs.data import open_dataset
    dataset = open_dataset(None, tmp_path)
    neuron, layer = 5, manifest["layers"][0]
    image = loaded.transform(dataset.load(int(image_index[top_images[neuron, 0]]))).unsqueeze(0)
    feature = {}
    handle = dict(loaded.module.named_modules())[layer["name"]].register_forward_hook(
        lambda m, i, o: feature.setdefault("map", o.detach().clone()))
    with torch.no_grad():
        loaded.module(image)
    handle.remove()
    channel_map = feature["map"][0, neuron].flatten()
    assert float(channel_map.max()) == pytest.approx(float(top_values[neuron, 0]), rel=1e-5)
    assert float(channel_map[top_positions[neuron, 0]]) == pytest.approx(float(top_values[neuron, 0]), rel=1e-5)

    again = precompute(RunConfig(max_images=300, top_k=20), quiet(tmp_path), log=logs.append, stages=["pass1"])
    assert again["key"] == manifest["key"] and any("unchanged, skipped" in line for line in logs)


def test_googlenet_with_small_inputs_covers_the_25_block_map(tmp_path, image_folder):
    manifest = precompute(RunConfig(model="googlenet", data=str(image_folder), image_size=64, top_k=5,
                                    embed=EmbedParams(epochs=1, dimensions=8), patches=PatchParams(per_neuron=2)),
                          quiet(tmp_path, batch_size=16))
    assert [layer["name"] for layer in manifest["layers"]] == GOOGLENET_LAYERS
    assert skipped_images(manifest) == (1, ["cat/zz_broken.jpg"])
    with Store(tmp_path) as store:
        top_images = store.get_array(manifest["key"], "top_images")
        skipped = store.get_array(manifest["key"], "skipped")
    assert top_images.shape == (manifest["counts"]["neurons"], 5)
    assert not np.isin(top_images, skipped).any()
    # every later stage ran over the 25 blocks
    assert manifest["complete"] and len(manifest["stages"]["cluster"]["per_layer"]) == 25
    assert manifest["stages"]["graph"]["feeds"] == 48
    assert manifest["stages"]["graph"]["feed_methods"]["autograd"] == 0      # one-conv feeds in closed form
    with Store(tmp_path) as store:
        assert store.get_array(manifest["key"], "projection").shape == (manifest["counts"]["neurons"], 2)
        assert len(store.get_json(manifest["key"], "graph/2")["nodes"]) >= 25
        pngs = unpack(store.get_bytes(manifest["key"], "patches/6847"))
        assert len(pngs) == 2 and all(png.startswith(b"\x89PNG") for png in pngs)


def test_model_from_a_factory_file(tmp_path, image_folder, factory_file):
    manifest = precompute(RunConfig(model=f"{factory_file}:make", data=str(image_folder), top_k=3),
                          quiet(tmp_path, batch_size=8))
    assert [layer["name"] for layer in manifest["layers"]] == ["stem.2", "block.1"]
    assert manifest["counts"]["neurons"] == 24 and manifest["counts"]["classes"] == 3


def test_mixed_precision_pass1_stays_close_to_full_precision(tmp_path, image_folder, factory_file):
    """--amp (bfloat16 autocast on CPU, float16 on CUDA) is a run of its own whose top values track float32's."""
    config = RunConfig(model=f"{factory_file}:make", data=str(image_folder), top_k=3)
    full = precompute(config, quiet(tmp_path, batch_size=8), stages=["pass1"])
    mixed = precompute(replace(config, amp=True), quiet(tmp_path, batch_size=8), stages=["pass1"])
    assert mixed["key"] != full["key"] and mixed["config"]["amp"] is True
    assert mixed["name"] == f"{full['name']}-{mixed['key'][:6]}"          # generated names stay unique
    with Store(tmp_path) as store:
        full_values, mixed_values = (store.get_array(m["key"], "top_values") for m in (full, mixed))
        full_images, mixed_images = (store.get_array(m["key"], "top_images") for m in (full, mixed))
    assert mixed_values.dtype == np.float32
    np.testing.assert_allclose(mixed_values, full_values, rtol=0.03, atol=0.01)     # bfloat16 keeps 8 bits
    assert np.mean(mixed_images[:, 0] == full_images[:, 0]) >= 0.75


def test_ctrl_c_takes_effect_after_the_whole_batch(tmp_path, image_folder, factory_file):
    """A SIGINT arriving inside a batch lets the batch finish, saves, and the resume matches a clean run."""
    marker = tmp_path / "interrupted-once"
    model_file = tmp_path / "interrupting_model.py"
    model_file.write_text(f"""
import os, signal, sys
sys.path.insert(0, {str(factory_file.parent)!r})
from tiny_model import make as make_tiny
calls = 0


def make():
    module, transform, names = make_tiny()
    inner = module.forward

    def forward(x):
        global calls
        calls += 1
        if calls == 3 and not os.path.exists({str(marker)!r}):
            open({str(marker)!r}, "w").close()
            os.kill(os.getpid(), signal.SIGINT)   # the second batch (call 1 probes the shapes): lands mid-batch
        return inner(x)
    module.forward = forward
    return module, transform, names
""")
    config = RunConfig(model=f"{model_file}:make", data=str(image_folder), top_k=3)
    with pytest.raises(NeuroCartoError, match="interrupted at image 16 of 37"):
        precompute(config, quiet(tmp_path / "a", batch_size=8), stages=["pass1"])
    with Store(tmp_path / "a") as store:
        (key,) = store.run_keys()
        assert int(store.load_checkpoint(key, "pass1")["0/next_image"]) == 16
    logs: list[str] = []
    precompute(config, quiet(tmp_path / "a", batch_size=8), stages=["pass1"], log=logs.append)
    assert any("resuming at image 16" in line for line in logs)
    precompute(config, quiet(tmp_path / "b", batch_size=8), stages=["pass1"])
    with Store(tmp_path / "a") as resumed, Store(tmp_path / "b") as reference:
        for name in PASS1_ARRAYS:
            np.testing.assert_array_equal(resumed.get_array(key, name), reference.get_array(key, name), err_msg=name)


def run_cli(capsys, *args) -> tuple[int, str]:
    code = cli_main(list(args))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize("args, message", [
    (["--model", "resnet5O"], "unknown model 'resnet5O': did you mean resnet50"),
    (["--layers", "mixed4b,mixed9"], "unknown layer 'mixed9'"),
    (["--layers", "fc"], "outputs shape (batch, 10), which is neither a feature map"),
    (["--layers", " , "], "names no layer"),
    (["--top-k", "500"], "--top-k 500 is larger than the 37 images of this run"),
    (["--top-k", "0"], "--top-k must be at least 1"),
    (["--device", "tpu"], "--device tpu"),
])
def test_bad_input_gives_a_clear_message(tmp_path, capsys, image_folder, args, message):
    data = ["--data", str(image_folder)]
    model = [] if "--model" in args else ["--model", "fashion-inception"]
    code, output = run_cli(capsys, "precompute", "--cache", str(tmp_path), "--quiet", "--top-k", "5", *model, *data,
                           *args)
    assert code == 2 and message in output and "Traceback" not in output


def test_empty_dataset_and_bad_weights_fail_before_work(tmp_path, capsys):
    (tmp_path / "data" / "empty").mkdir(parents=True)
    code, output = run_cli(capsys, "precompute", "--cache", str(tmp_path / "c"), "--data", str(tmp_path / "data"))
    assert code == 2 and "no image files" in output
    (tmp_path / "w.pt").write_bytes(b"junk")
    code, output = run_cli(capsys, "precompute", "--cache", str(tmp_path / "c"), "--weights", str(tmp_path / "w.pt"))
    assert code == 2 and "not a readable PyTorch state dict" in output
    assert not (tmp_path / "c" / "store").exists() or Store(tmp_path / "c").run_keys() == []


def test_corrupt_run_is_reported_rebuilt_and_others_survive(tmp_path, capsys, image_folder, factory_file):
    common = ["precompute", "--cache", str(tmp_path), "--quiet", "--data", str(image_folder), "--top-k", "3"]
    assert run_cli(capsys, *common, "--model", f"{factory_file}:make", "--name", "tiny")[0] == 0
    assert run_cli(capsys, *common, "--model", "googlenet", "--image-size", "32", "--name", "goog")[0] == 0
    with Store(tmp_path) as store:
        key = store.resolve("tiny")
        store._set(f"{key}/manifest", b"\x00broken")
    code, output = run_cli(capsys, *common, "--model", f"{factory_file}:make", "--name", "tiny")
    assert code == 2 and "corrupt" in output and "--rebuild" in output
    code, output = run_cli(capsys, "runs", "--cache", str(tmp_path), "--json")
    rows = {row["key"]: row for row in json.loads(output)}
    assert rows[key]["status"] == "unreadable"
    assert any(row.get("name") == "goog" and row["status"] == "complete" for row in rows.values())
    code, output = run_cli(capsys, *common, "--model", f"{factory_file}:make", "--name", "tiny", "--rebuild")
    assert code == 0 and "run tiny" in output
    code, output = run_cli(capsys, "runs", "--cache", str(tmp_path))
    assert code == 0 and "tiny" in output and "goog" in output and "UNREADABLE" not in output
    code, output = run_cli(capsys, *common, "--model", "googlenet", "--image-size", "48", "--name", "goog")
    assert code == 2 and "name 'goog' is taken" in output


def test_a_new_stage_version_reruns_only_that_stage(monkeypatch):
    from dataclasses import replace

    from neurocarto.compute import pipeline

    config = RunConfig()
    hashes = pipeline.stage_inputs(config, "k")
    monkeypatch.setattr(pipeline, "STAGES", [replace(stage, version=stage.version + 1) if stage.name == "cluster"
                                             else stage for stage in pipeline.STAGES])
    changed = pipeline.stage_inputs(config, "k")
    assert {name for name in hashes if hashes[name] != changed[name]} == {"cluster", "graph"}     # and downstream
    assert len(set(hashes.values())) == len(hashes)


def test_a_second_precompute_of_a_run_being_computed_stops_naming_the_first(small_fashion_run):
    config, execution, manifest = small_fashion_run
    with Store(execution.cache) as store, store.writer(manifest["key"]):
        with pytest.raises(NeuroCartoError, match=rf"being computed by process {os.getpid()} .*wait for it"):
            precompute(config, execution, log=lambda _: None)
    assert precompute(config, execution, log=lambda _: None)["complete"]       # free again


def _precompute_command(cache: Path) -> list[str]:
    return [sys.executable, "-m", "neurocarto", "precompute", "--max-images", "1200", "--top-k", "20", "--batch-size",
            "16", "--checkpoint-every", "2", "--embed-epochs", "2", "--projection-seed", "0", "--cache", str(cache),
            "--quiet"]


def _wait_for_checkpoint(cache: Path, process: subprocess.Popen, beyond: int = 0) -> int:
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        with Store(cache) as store:
            keys = store.run_keys()
            checkpoint = store.load_checkpoint(keys[0], "pass1") if keys else None
        if checkpoint is not None and int(checkpoint["0/next_image"]) > beyond:
            return int(checkpoint["0/next_image"])
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint appeared (exit code {process.poll()})")


def _kill_during(cache: Path, command: list[str], stage: str, env: dict) -> str:
    """Start the precompute and kill -9 it while `stage` runs (as its manifest says); what it printed."""
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        with Store(cache) as store:
            keys = store.run_keys()
            manifest = store.manifest(keys[0]) if keys else None
        if manifest and manifest["stages"].get(stage, {}).get("status") == "running":
            process.send_signal(signal.SIGKILL)
            return process.communicate()[0]
        time.sleep(0.02)
    process.kill()
    raise AssertionError(f"never saw {stage} running: {process.communicate()[1][-2000:]}")


def test_interrupted_and_killed_in_every_stage_resumes_to_identical_results(tmp_path, fashion_available):
    """Ctrl-C in pass 1 saves and says how to resume; kill -9 in pass 1 loses at most one checkpoint interval; then
    killed in cluster, in embed, in graph and in patches, each time resumed by the same command: every stored result
    equals an uninterrupted run's, byte for byte."""
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(_precompute_command(killed), cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    first = _wait_for_checkpoint(killed, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2 and "interrupted at image" in stderr and "resumes" in stderr
    process = subprocess.Popen(_precompute_command(killed), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, text=True)
    second = _wait_for_checkpoint(killed, process, beyond=first)
    process.kill()
    process.wait(timeout=60)
    assert 0 < first < second < 1200
    printed = {stage: _kill_during(killed, _precompute_command(killed), stage, env)
               for stage in ("cluster", "embed", "graph", "patches")}
    assert "resuming at image" in printed["cluster"]
    finished = subprocess.run(_precompute_command(killed), cwd=ROOT, env=env, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert cli_main(_precompute_command(clean)[3:]) == 0       # the uninterrupted reference, in this process
    with Store(killed) as resumed, Store(clean) as uninterrupted:
        (key,) = uninterrupted.run_keys()
        bookkeeping = ("/manifest", "/json/progress")      # timings and the progress record, not results
        names = [entry for entry in uninterrupted._run_entries(key) if not entry.endswith(bookkeeping)]
        assert sorted(names) == sorted(e for e in resumed._run_entries(key) if not e.endswith(bookkeeping))
        different = [name for name in names if resumed._cache.get(name) != uninterrupted._cache.get(name)]
        assert not different, different[:10]
        assert resumed.manifest(key)["complete"] and len(names) > 764      # every neuron's patches and more
        assert resumed.load_checkpoint(key, "pass1") is None
