"""The store: round trips, corrupt entries, old schemas, run lookup."""
import json

import numpy as np
import pytest

from neurocarto.errors import NeuroCartoError
from neurocarto.store.disk import SCHEMA_VERSION, Store


def make_run(store: Store, key: str, name: str) -> None:
    store.write_manifest({"key": key, "name": name, "stages": {}})
    store.put_array(key, "top_images", np.arange(12).reshape(3, 4))


def test_round_trips(tmp_path):
    with Store(tmp_path) as store:
        make_run(store, "abc123", "first")
        store.put_json("abc123", "class_names", ["a", "b"])
        store.save_checkpoint("abc123", "pass1", {"x": np.ones(3), "n": np.array(5)})
        np.testing.assert_array_equal(store.get_array("abc123", "top_images"), np.arange(12).reshape(3, 4))
        assert store.get_json("abc123", "class_names") == ["a", "b"]
        assert int(store.load_checkpoint("abc123", "pass1")["n"]) == 5
        store.clear_checkpoint("abc123", "pass1")
        assert store.load_checkpoint("abc123", "pass1") is None
        assert store.manifest("abc123")["schema"] == SCHEMA_VERSION
    with Store(tmp_path) as reopened:
        assert reopened.run_keys() == ["abc123"]


def test_resolve_by_name_key_and_prefix(tmp_path):
    with Store(tmp_path) as store:
        make_run(store, "abc123", "first")
        make_run(store, "abd999", "second")
        assert store.resolve("first") == "abc123"
        assert store.resolve("abd999") == "abd999"
        assert store.resolve("abc") == "abc123"
        with pytest.raises(NeuroCartoError, match="unknown run 'ab'.*first.*second"):
            store.resolve("ab")


def test_corrupt_entry_names_the_fix_and_leaves_other_runs_usable(tmp_path):
    with Store(tmp_path) as store:
        make_run(store, "good", "good")
        make_run(store, "bad", "bad")
        store._set("bad/array/top_images", b"garbage bytes")
        store._set("bad/manifest", b"{not json")
        with pytest.raises(NeuroCartoError, match=r"corrupt.*--rebuild"):
            store.get_array("bad", "top_images")
        with pytest.raises(NeuroCartoError, match=r"corrupt.*--rebuild"):
            store.manifest("bad")
        assert store.get_array("good", "top_images").shape == (3, 4)
        listed = {key: (manifest, problem) for key, manifest, problem in store.list_runs()}
        assert listed["good"][0]["name"] == "good" and "corrupt" in listed["bad"][1]


def test_older_schema_says_how_to_rebuild(tmp_path):
    with Store(tmp_path) as store:
        store._set("old/manifest", json.dumps({"key": "old", "name": "legacy", "schema": 0}).encode())
        with pytest.raises(NeuroCartoError, match=r"legacy was written by schema 0.*--rebuild"):
            store.manifest("old")


def test_missing_result_names_the_stage_to_run(tmp_path):
    with Store(tmp_path) as store:
        make_run(store, "abc", "x")
        with pytest.raises(NeuroCartoError, match="has no 'array/clusters'"):
            store.get_array("abc", "clusters")


def test_delete_run_keeps_the_others(tmp_path):
    with Store(tmp_path) as store:
        make_run(store, "one", "one")
        make_run(store, "two", "two")
        store.delete_run("one")
        assert store.run_keys() == ["two"]
        assert store.get_array("two", "top_images").shape == (3, 4)
        with pytest.raises(NeuroCartoError, match="has no 'array/top_images'"):
            store.get_array("one", "top_images")


def test_run_index_and_sizes_track_only_each_runs_own_entries(tmp_path):
    with Store(tmp_path) as store:
        for key in ("ab", "ab0", "ab.", "b"):        # keys around the range `ab/`…`ab0`
            make_run(store, key, key)
        store.put_bytes("ab", "patches/1", b"x" * 1000)
        assert store.run_keys() == ["ab", "ab.", "ab0", "b"]
        entry_bytes = store.run_size("ab0")
        assert store.run_size("ab") == entry_bytes + 1000 - len(store._cache.get("ab0/manifest")) + \
            len(store._cache.get("ab/manifest"))
        store._cache.delete("index/runs")              # a store written before the index: found by a scan
    with Store(tmp_path) as reopened:
        assert reopened.run_keys() == ["ab", "ab.", "ab0", "b"]
        reopened.delete_run("ab")
        assert reopened.run_keys() == ["ab.", "ab0", "b"] and reopened.run_size("ab") == 0
        assert reopened.get_array("ab0", "top_images").shape == (3, 4)


class Canary:
    """Unpickling it creates a file: the side effect a planted row would have if the store ever unpickled."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def test_planted_pickles_and_foreign_files_are_never_read(tmp_path):
    import diskcache

    canary = tmp_path / "canary-fired"
    with Store(tmp_path / "cache") as store:
        make_run(store, "good", "good")
        make_run(store, "bad", "bad")
        store.put_json("bad", "class_names", ["a"])
        store.put_bytes("bad", "patches/0", b"png")
        store.save_checkpoint("bad", "pass1", {"x": np.ones(2)})
        store.put_array("bad", "big", np.zeros(100_000))          # large enough to live in a file of its own
    planted = ["bad/manifest", "bad/array/top_images", "bad/json/class_names", "bad/bytes/patches/0",
               "bad/checkpoint/pass1", "index/runs"]
    with diskcache.Cache(str(tmp_path / "cache" / "store")) as raw:      # an attacker with write access, pickling
        for key in planted:
            raw.set(key, Canary(canary))
        raw._sql("UPDATE Cache SET filename = ? WHERE key = ?", ("../../../outside.val", "bad/array/big"))
    with Store(tmp_path / "cache") as store:
        listed = {key: (manifest, problem) for key, manifest, problem in store.list_runs()}   # the index is rebuilt
        assert set(listed) == {"good", "bad"} and "corrupt" in listed["bad"][1]
        assert listed["good"][0]["name"] == "good" and store.get_array("good", "top_images").shape == (3, 4)
        for read in (lambda: store.manifest("bad"), lambda: store.get_array("bad", "top_images"),
                     lambda: store.get_json("bad", "class_names"), lambda: store.get_bytes("bad", "patches/0"),
                     lambda: store.load_checkpoint("bad", "pass1"), lambda: store.get_array("bad", "big")):
            with pytest.raises(NeuroCartoError, match=r"run bad: cache entry .* is corrupt .*not bytes.*--rebuild"):
                read()
        assert store.run_size("bad") >= 0
        store.delete_run("bad")
        assert store.run_keys() == ["good"]
    assert not canary.exists()


def test_one_writer_per_run(tmp_path, monkeypatch):
    import os
    import subprocess
    import sys
    import time

    import neurocarto.store.disk as store_module

    with Store(tmp_path) as store, store.writer("abc"):
        with Store(tmp_path) as other:
            with pytest.raises(NeuroCartoError, match=rf"run abc is being computed by process {os.getpid()} on "):
                with other.writer("abc"):
                    pass
            with other.writer("xyz"):           # another run is free
                pass
    with Store(tmp_path) as store, store.writer("abc"):     # released on exit
        pass
    # a holder killed on this machine: its lock is taken over at once
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with Store(tmp_path) as store:
        store._cache.add("lock/abc", json.dumps({"pid": dead.pid, "host": __import__("socket").gethostname(),
                                                  "since": "then"}).encode(), expire=60)
        with store.writer("abc"):
            pass
    # a holder on another machine that stopped refreshing: its lock lapses; a live one keeps it by refreshing
    monkeypatch.setattr(store_module, "LOCK_SECONDS", 0.6)
    with Store(tmp_path) as store:
        store._cache.add("lock/abc", json.dumps({"pid": 1, "host": "elsewhere", "since": "then"}).encode(), expire=0.6)
        with pytest.raises(NeuroCartoError, match="by process 1 on elsewhere"):
            with store.writer("abc"):
                pass
        time.sleep(0.8)
        with store.writer("abc"):
            time.sleep(1.5)                     # over twice the lapse: the refresh keeps it
            with Store(tmp_path) as other, pytest.raises(NeuroCartoError, match="being computed"):
                with other.writer("abc"):
                    pass


def _keep_writing(directory, writing, stop) -> None:
    with Store(directory) as store:
        count = 0
        while not stop.is_set():
            store.put_array("busy", f"values/{count % 50}", np.full(20_000 if count % 5 else 10, count))
            count += 1
            writing.set()


def test_a_store_written_by_another_process_and_open_here_copies_whole(tmp_path):
    """The tests' copy of a shared store: consistent however busy the store, and the store stays sound."""
    import multiprocessing
    import sqlite3

    from neurocarto.testing.stores import copy_store

    with Store(tmp_path / "source") as store:
        make_run(store, "abc123", "first")
        spawn = multiprocessing.get_context("spawn")
        writing, stop = spawn.Event(), spawn.Event()
        writer = spawn.Process(target=_keep_writing, args=(tmp_path / "source", writing, stop))
        writer.start()
        try:
            assert writing.wait(60)
            for copy in range(8):
                store.get_array("abc123", "top_images")
                with Store(copy_store(tmp_path / "source", tmp_path / f"copy{copy}")) as copied:
                    np.testing.assert_array_equal(copied.get_array("abc123", "top_images"), np.arange(12).reshape(3, 4))
                    assert copied.run_keys() == ["abc123"]
        finally:
            stop.set()
            writer.join()
    for database in (tmp_path / "source" / "store" / "cache.db", tmp_path / "copy7" / "store" / "cache.db"):
        assert sqlite3.connect(database).execute("pragma integrity_check").fetchone() == ("ok",)
