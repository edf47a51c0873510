"""torch.distributed: shards, the exact merge, and a 2-process torchrun against one process."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from neurocarto.cli import main as cli_main
from neurocarto.compute.distributed import Group
from neurocarto.compute.pass1 import ClassStatistics, MaximaSample, Pass1State, StreamingTopK, merge_states
from neurocarto.compute.pass1_stream import pack_shards, unpack_shards
from neurocarto.errors import NeuroCartoError
from neurocarto.store.disk import Store
from neurocarto.store.keys import PASS1_ARRAYS

ROOT = Path(__file__).resolve().parents[2]
PASS1 = ("top_values", "top_images", "top_positions", "class_matrix", "class_mean_maxima", "class_images", "skipped")


@pytest.mark.parametrize("n_items, batch_size, world", [(600, 64, 2), (1000, 7, 3), (5, 64, 4), (640, 64, 5)])
def test_batch_shards_cover_every_item_once_at_batch_boundaries(n_items, batch_size, world):
    shards = [Group(rank, world).batch_shard(n_items, batch_size) for rank in range(world)]
    assert [i for shard in shards for i in shard] == list(range(n_items))
    assert all(shard.start % batch_size == 0 for shard in shards if len(shard))
    common = Group(0, world).common_batches(n_items, batch_size)
    assert common == min(-(-len(shard) // batch_size) for shard in shards)
    assert sorted(i for rank in range(world) for i in Group(rank, world).mine(10)) == list(range(10))


def test_merged_shards_equal_one_stream_with_ties():
    rng = np.random.default_rng(0)
    n_images, n_neurons, k, batch = 96, 7, 5, 8
    values = rng.integers(0, 4, (n_images, n_neurons)).astype(np.float32)      # many exact ties
    positions = rng.integers(0, 50, (n_images, n_neurons))
    labels = rng.integers(0, 3, n_images)

    def stream(first, last):
        state = Pass1State(StreamingTopK(n_neurons, k), ClassStatistics(3, n_neurons), first, sample=MaximaSample(3, n_neurons))
        for start in range(first, last, batch):
            ids = torch.arange(start, min(start + batch, last))
            maxima = torch.from_numpy(values[ids.numpy()])
            state.top_k.update(maxima, torch.from_numpy(positions[ids.numpy()]), ids)
            state.classes.update(maxima, maxima > 1, torch.from_numpy(labels[ids.numpy()]))
            state.sample.update(maxima, ids)
            state.next_image = int(ids[-1]) + 1
        return state.state()

    whole = stream(0, n_images)
    for world in (2, 3):
        shards = [Group(rank, world).batch_shard(n_images, batch) for rank in range(world)]
        merged = merge_states([stream(shard.start, shard.stop) for shard in shards], k)
        for name, value in whole.items():
            np.testing.assert_array_equal(merged[name], value, err_msg=name)


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None,
                    reason="torchrun is not installed next to this Python")
def test_two_processes_write_the_run_one_process_writes(tmp_path, fashion_available):
    args = ["precompute", "--max-images", "600", "--top-k", "20", "--batch-size", "64", "--stages", "graph", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    torchrun = str(Path(sys.executable).parent / "torchrun")
    sharded = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", "-m", "neurocarto", *args,
                              "--cache", str(tmp_path / "two")], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=600)
    assert sharded.returncode == 0, sharded.stderr[-3000:]
    assert sharded.stdout.count("run fashion-inception") == 1          # one summary: rank 0's
    single = subprocess.run([sys.executable, "-m", "neurocarto", *args, "--cache", str(tmp_path / "one")], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    with Store(tmp_path / "two") as two, Store(tmp_path / "one") as one:
        (key,) = two.run_keys()
        assert one.run_keys() == [key]
        assert two.manifest(key)["stages"]["pass1"]["processes"] == 2
        for name in PASS1 + ("cluster_labels",):
            np.testing.assert_array_equal(two.get_array(key, name), one.get_array(key, name), err_msg=name)
        for label in range(10):
            sharded_graph, single_graph = two.get_json(key, f"graph/{label}"), one.get_json(key, f"graph/{label}")
            assert sharded_graph["nodes"] == single_graph["nodes"]
            edges = {(e["source"], e["target"]): e["weight"] for e in single_graph["edges"]}
            assert [(e["source"], e["target"]) for e in sharded_graph["edges"]] == list(edges)
            np.testing.assert_allclose([e["weight"] for e in sharded_graph["edges"]], list(edges.values()), rtol=1e-5)


def test_a_checkpoint_resumes_only_with_its_process_count_and_batch_size():
    states = [{"next_image": np.array(8), "top_values": np.ones((2, 3))}, {"next_image": np.array(28)}]
    packed = pack_shards(states, batch_size=4)
    unpacked = unpack_shards(packed, world=2, batch_size=4)
    assert [sorted(state) for state in unpacked] == [["next_image", "top_values"], ["next_image"]]
    assert int(unpacked[1]["next_image"]) == 28 and unpacked[0]["top_values"].shape == (2, 3)
    with pytest.raises(NeuroCartoError, match="written by 2 processes with --batch-size 4; this command has 1 with "
                                              "--batch-size 4.*--rebuild"):
        unpack_shards(packed, world=1, batch_size=4)
    with pytest.raises(NeuroCartoError, match="--batch-size 8"):
        unpack_shards(packed, world=2, batch_size=8)
    legacy = {"next_image": np.array(16)}                  # one process, before checkpoints named their shards
    assert unpack_shards(legacy, world=1, batch_size=64) == [legacy]


def _torchrun(args: list[str], cache: Path, env: dict) -> subprocess.CompletedProcess:
    torchrun = str(Path(sys.executable).parent / "torchrun")
    return subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", "-m", "neurocarto", *args,
                           "--cache", str(cache)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None,
                    reason="torchrun is not installed next to this Python")
def test_sharded_pass1_survives_ctrl_c_and_a_crash(tmp_path, image_folder, factory_file):
    """Ctrl-C on one process: every shard saves after the same batch (or, in a shard's extra last batch, once
    all are whole). A crash: the last periodic checkpoint. Each resumed run ends with what one process computes."""
    model_file = tmp_path / "faulty_model.py"
    model_file.write_text(f"""
import os, signal, sys, time
sys.path.insert(0, {str(factory_file.parent)!r})
from tiny_model import make as make_tiny
import neurocarto.store.disk
calls = 0
save_checkpoint = neurocarto.store.disk.Store.save_checkpoint


def slow_save_checkpoint(*args, **kwargs):
    # as slow as a large state's save: no process may exit (torchrun then ends the others) before it is done
    time.sleep(float(os.environ.get("SLOW_SAVE", "0")))
    return save_checkpoint(*args, **kwargs)


neurocarto.store.disk.Store.save_checkpoint = slow_save_checkpoint


def make():
    module, transform, names = make_tiny()
    inner = module.forward
    rank = os.environ.get("RANK", "0")

    def forward(x):
        global calls
        calls += 1                      # call 1 probes the shapes; call n > 1 is the (n-1)-th batch of this run
        kind, fault_rank, fault_call = (os.environ.get("FAULT") or "none:-:0").split(":")
        if rank == fault_rank and calls == int(fault_call):
            if kind == "interrupt":
                os.kill(os.getpid(), signal.SIGINT)       # lands inside the batch
            else:
                os._exit(3)
        return inner(x)
    module.forward = forward
    return module, transform, names
""")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}

    def arguments(batch_size: int) -> list[str]:
        return ["precompute", "--model", f"{model_file}:make", "--data", str(image_folder), "--top-k", "3",
                "--batch-size", str(batch_size), "--stages", "pass1", "--quiet"]

    def shard_positions(cache: Path) -> list[int]:
        with Store(cache) as store:
            (key,) = store.run_keys()
            checkpoint = store.load_checkpoint(key, "pass1")
        return [int(checkpoint[f"{rank}/next_image"]) for rank in (0, 1)]

    def same_as_one_process(cache: Path, batch_size: int) -> None:
        """The same model (without its faults) in this process, on one thread as the shards ran."""
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            single = [arguments(batch_size)[0], "--model", f"{factory_file}:make", *arguments(batch_size)[3:]]
            assert cli_main([*single, "--cache", str(cache.with_name(cache.name + "-one"))]) == 0
        finally:
            torch.set_num_threads(threads)
        with Store(cache) as resumed, Store(cache.with_name(cache.name + "-one")) as reference:
            (key,), (reference_key,) = resumed.run_keys(), reference.run_keys()
            assert resumed.load_checkpoint(key, "pass1") is None
            for name in PASS1_ARRAYS:
                np.testing.assert_array_equal(resumed.get_array(key, name), reference.get_array(reference_key, name),
                                              err_msg=name)

    # 37 files in batches of 4: shards of 5 batches, images 0-19 and 20-36
    cache, args = tmp_path / "even", arguments(4)
    interrupted = _torchrun(args, cache, {**env, "FAULT": "interrupt:1:3", "SLOW_SAVE": "3"})  # shard 1's 2nd batch
    assert interrupted.returncode != 0 and "interrupted after batch 2 of each of 2 shards" in interrupted.stderr
    assert shard_positions(cache) == [8, 28]
    crashed = _torchrun([*args, "--checkpoint-every", "1"], cache, {**env, "FAULT": "crash:0:3"})
    assert crashed.returncode != 0 and "resuming 2 shards, each from batch 2" in crashed.stdout + crashed.stderr
    assert shard_positions(cache) == [12, 32]            # the checkpoint after batch 3; batch 4 was lost
    finished = _torchrun(args, cache, env)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "resuming 2 shards, each from batch 3" in finished.stdout + finished.stderr
    same_as_one_process(cache, 4)

    # in batches of 6: shard 0 has 3 batches (images 0-17), shard 1 has 4 (18-36); Ctrl-C in shard 1's 4th
    cache, args = tmp_path / "uneven", arguments(6)
    interrupted = _torchrun(args, cache, {**env, "FAULT": "interrupt:1:5"})
    assert interrupted.returncode != 0 and "interrupted as its 2 shards ended" in interrupted.stderr
    assert shard_positions(cache) == [18, 37]
    finished = _torchrun(args, cache, env)
    assert finished.returncode == 0, finished.stderr[-3000:]
    same_as_one_process(cache, 6)
