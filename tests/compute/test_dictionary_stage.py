"""A run with dictionary units end to end: the dictionary stage, then every stage over latents as units; killed
while it trains, resumed by the same command to the results of an uninterrupted run; read back without torch."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import neurocarto as nc
from neurocarto.analysis.ablation import ablate
from neurocarto.analysis.export import export_run
from neurocarto.analysis.rerun import prepared_for
from neurocarto.cli import main as cli_main
from neurocarto.store.dictionaries import stored_qualities, stored_quality
from neurocarto.store.disk import Store
from neurocarto.store.stored_run import StoredRun

ROOT = Path(__file__).resolve().parents[2]


def _command(cache: Path, factory_file: Path, image_folder: Path) -> list[str]:
    return [sys.executable, "-m", "neurocarto", "precompute", "--model", f"{factory_file}:make", "--data",
            str(image_folder), "--top-k", "4", "--units", "both", "--dictionary-expansion", "3",
            "--dictionary-k", "4", "--dictionary-epochs", "600", "--embed-epochs", "1", "--projection-seed", "0",
            "--cache", str(cache), "--quiet"]


def _kill_after_first_dictionary(cache: Path, command: list[str]) -> None:
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        with Store(cache) as store:
            keys = store.run_keys()
            trained = keys and stored_quality(store, keys[0], "stem.2") is not None
        if trained:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=60)
            with Store(cache) as store:     # killed between the two layers: the first kept, the second not yet
                assert stored_quality(store, keys[0], "block.1") is None
                assert store.manifest(keys[0])["stages"]["dictionary"]["status"] == "running"
            return
        time.sleep(0.02)
    process.kill()
    raise AssertionError(f"the first dictionary was never stored: {process.communicate()[1][-2000:]}")


def test_a_run_with_dictionary_units_killed_while_training_resumes_to_an_uninterrupted_runs_results(
        tmp_path, factory_file, image_folder, capsys):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    _kill_after_first_dictionary(killed, _command(killed, factory_file, image_folder))
    assert cli_main(_command(killed, factory_file, image_folder)[3:]) == 0
    assert "dictionary" in capsys.readouterr().out
    assert cli_main(_command(clean, factory_file, image_folder)[3:]) == 0
    with Store(killed) as resumed, Store(clean) as uninterrupted:
        (key,) = uninterrupted.run_keys()
        bookkeeping = ("/manifest", "/json/progress")
        names = [entry for entry in uninterrupted._run_entries(key) if not entry.endswith(bookkeeping)]
        assert sorted(names) == sorted(e for e in resumed._run_entries(key) if not e.endswith(bookkeeping))
        different = [name for name in names if resumed._cache.get(name) != uninterrupted._cache.get(name)]
        assert not different, different[:10]
        run = StoredRun(resumed, key)
        assert run.complete and run.stages[0] == "dictionary"
        assert run.layer_names == ["stem.2/sae", "stem.2", "block.1/sae", "block.1"]
        assert [quality["layer"] for quality in stored_qualities(run)] == ["stem.2", "block.1"]
        assert run.neuron_ids[:2] == ["stem.2/sae:0", "stem.2/sae:1"] and len(run.neuron_ids) == 24 + 8 + 48 + 16
        graphs = [run.graph(label) for label in range(3)]
        layers = {(edge_layer(graph, edge["source"]), edge_layer(graph, edge["target"]))
                  for graph in graphs for edge in graph["edges"]}
        assert len(layers) >= 2 and layers <= {      # along the feeds: latents → their channels → next latents
            ("stem.2/sae", "stem.2"), ("stem.2", "block.1/sae"), ("block.1/sae", "block.1")}
        # the model spliced again from the stored dictionaries: a latent ablated by its id, an image explained
        prepared = prepared_for(run)
        latent = run.neuron_ids.index("block.1/sae:0")
        assert ablate(prepared, np.array([latent]), n_images=10, random_sets=1).images == 10
        explained = nc.explain(run, 5)
        assert explained.maxima.shape == (len(run.neuron_ids),) and explained.maxima[:24].max() > 0
        strongest = int(explained.maxima[:24].argmax())
        assert 0 < explained.percentiles[strongest] <= 1 and np.isfinite(explained.percentiles).all()
        written = export_run(resumed, key, tmp_path / "export")
        rows = (tmp_path / "export" / "neurons.csv").read_text().splitlines()
        assert rows[1].startswith("stem.2/sae:0,stem.2/sae,0,") and len(rows) == 1 + len(run.neuron_ids) and written


def edge_layer(graph: dict, node_id: str) -> str:
    return next(node["layer"] for node in graph["nodes"] if node["id"] == node_id)
