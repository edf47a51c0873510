"""The run store: one diskcache under `cache/`; it puts the names of `keys` under a run's key.

A run is keyed by the hash of what defines its pass 1 (model, weights checksum, dataset
fingerprint, layers, parameters). Per run it holds a JSON manifest (schema version, config,
per-stage status and timings, counts), named numpy arrays (stored as .npy bytes, never
pickles), named JSON values and bytes, and stage checkpoints.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import socket
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path

import diskcache
import numpy as np
from diskcache.core import MODE_BINARY, MODE_RAW

from neurocarto.errors import NeuroCartoError

SCHEMA_VERSION = 1


RUN_INDEX = "index/runs"      # JSON list of run keys (no run key contains '/')
LOCK_SECONDS = 60             # a writer's lock lapses this long after its holder stops refreshing it (dies)
VALUE_FILE = re.compile(r"[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{28}\.val")     # diskcache's own file names


class UnsafeRow(ValueError):
    """A row of the cache that is not a text key with a bytes value: never deserialised."""


class BytesOnlyDisk(diskcache.Disk):
    """diskcache's serialisation restricted to text keys and bytes values, in the row or in a file of diskcache's
    own naming inside the cache directory. Anything else — pickled keys or values, text files, other paths —
    is refused unread, so a planted row can never run code."""

    def put(self, key):
        if type(key) is not str:
            raise UnsafeRow(f"store keys are text, not {type(key).__name__}")
        return super().put(key)

    def get(self, key, raw):
        if not raw or type(key) is not str:
            raise UnsafeRow("a key that is not text")
        return key

    def store(self, value, read, key=diskcache.core.UNKNOWN):
        if type(value) is not bytes:
            raise UnsafeRow(f"store values are bytes, not {type(value).__name__}")
        return super().store(value, read, key)

    def fetch(self, mode, filename, value, read):
        if mode == MODE_RAW and type(value) in (bytes, sqlite3.Binary):
            return bytes(value)
        if mode == MODE_BINARY and not read and isinstance(filename, str) and VALUE_FILE.fullmatch(filename):
            return super().fetch(mode, filename, value, read)
        raise UnsafeRow(f"a value stored in mode {mode} ({type(value).__name__}, file {filename!r}), not bytes")


class JsonOnlyDisk(BytesOnlyDisk):
    """BytesOnlyDisk whose values are JSON, kept as UTF-8 bytes: for the cache of Dash's background callbacks
    beside the store, which would otherwise pickle."""

    def store(self, value, read, key=diskcache.core.UNKNOWN):
        if read:
            raise UnsafeRow("values are JSON, not files")
        return super().store(json.dumps(value).encode(), read, key)

    def fetch(self, mode, filename, value, read):
        return json.loads(super().fetch(mode, filename, value, read))


class Store:
    """Named results of runs, in one diskcache directory."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._cache = diskcache.Cache(str(self.directory / "store"), size_limit=2 ** 40,
                                          eviction_policy="none", disk=BytesOnlyDisk)
        except Exception as error:
            raise NeuroCartoError(f"cannot open the store in {self.directory}: {error}; move it "
                                  "aside or choose another --cache DIR") from error

    @staticmethod
    def holds_store(directory: str | Path) -> bool:
        """Whether a store was ever opened in `directory` (without creating one)."""
        return (Path(directory) / "store" / "cache.db").exists()

    def close(self) -> None:
        self._cache.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # raw access: every value is bytes, so nothing depends on pickle
    def _set(self, key: str, value: bytes) -> None:
        self._cache.set(key, value)

    def _get(self, run: str, key: str) -> bytes | None:
        try:
            value = self._cache.get(key, default=None)
        except Exception as error:  # a damaged file or row behind the key
            raise self._corrupt(run, key, error) from error
        if value is not None and not isinstance(value, bytes):
            raise self._corrupt(run, key, TypeError(f"expected bytes, found {type(value).__name__}"))
        return value

    @staticmethod
    def _corrupt(run: str, key: str, error: Exception) -> NeuroCartoError:
        return NeuroCartoError(f"run {run}: cache entry {key!r} is corrupt ({error}); rebuild this run "
                               "with `python -m neurocarto precompute … --rebuild` (other runs are unaffected)")

    # manifests
    def manifest(self, run: str) -> dict | None:
        """The run's manifest, or None; NeuroCartoError if corrupt or of another schema."""
        raw = self._get(run, f"{run}/manifest")
        if raw is None:
            return None
        try:
            manifest = json.loads(raw)
        except ValueError as error:
            raise self._corrupt(run, f"{run}/manifest", error) from error
        if manifest.get("schema") != SCHEMA_VERSION:
            raise NeuroCartoError(
                f"run {manifest.get('name') or run} was written by schema {manifest.get('schema')} of "
                f"neurocarto; this version reads schema {SCHEMA_VERSION}: rebuild it with "
                "`python -m neurocarto precompute … --rebuild` (other runs are unaffected)")
        return manifest

    def manifest_stamp(self, run: str) -> str | None:
        """A short digest of the run's manifest as stored (it changes whenever a stage starts or ends), or None."""
        try:
            raw = self._get(run, f"{run}/manifest")
        except NeuroCartoError:
            return "unreadable"
        return None if raw is None else hashlib.sha1(raw).hexdigest()[:16]

    def write_manifest(self, manifest: dict) -> None:
        manifest["schema"] = SCHEMA_VERSION
        with self._cache.transact():
            self._set(f"{manifest['key']}/manifest", json.dumps(manifest, sort_keys=True).encode())
            keys = self.run_keys()
            if manifest["key"] not in keys:
                self._set(RUN_INDEX, json.dumps(sorted(keys + [manifest["key"]])).encode())

    def run_keys(self) -> list[str]:
        """Keys of the runs with a manifest, from the store's run index (built by one scan if missing)."""
        try:
            keys = json.loads(self._cache.get(RUN_INDEX, default=None) or b"null")
        except (UnsafeRow, ValueError):
            keys = None         # unreadable: rebuilt below from the keys themselves
        if isinstance(keys, list) and all(isinstance(key, str) and "/" not in key for key in keys):
            return keys
        rows = self._cache._sql("SELECT key FROM Cache WHERE raw = 1 AND key LIKE '%/manifest'")
        keys = sorted({key.split("/")[0] for (key,) in rows if isinstance(key, str) and key.count("/") == 1})
        self._set(RUN_INDEX, json.dumps(keys).encode())
        return keys

    def list_runs(self) -> list[tuple[str, dict | None, str | None]]:
        """(key, manifest or None, problem or None) for every run, unreadable ones included."""
        listed = []
        for key in self.run_keys():
            try:
                listed.append((key, self.manifest(key), None))
            except NeuroCartoError as problem:
                listed.append((key, None, str(problem)))
        return listed

    def resolve(self, reference: str) -> str:
        """A run key from a run's name, its key, or a unique key prefix."""
        keys = self.run_keys()
        if reference in keys:
            return reference
        names = {}
        for key, manifest, _ in self.list_runs():
            if manifest and manifest.get("name"):
                names.setdefault(manifest["name"], []).append(key)
        if reference in names and len(names[reference]) == 1:
            return names[reference][0]
        prefixed = [key for key in keys if key.startswith(reference)]
        if len(prefixed) == 1:
            return prefixed[0]
        valid = ", ".join(sorted(names) + keys) or "none (the store is empty: run `python -m neurocarto precompute`)"
        raise NeuroCartoError(f"unknown run {reference!r}: valid names and keys: {valid}")

    def _run_entries(self, run: str) -> list[str]:
        """The run's keys: a range of the store's key index (`run/` up to `run0`, '0' following '/')."""
        rows = self._cache._sql("SELECT key FROM Cache WHERE key >= ? AND key < ?", (f"{run}/", f"{run}0"))
        return [key for (key,) in rows]

    def run_size(self, run: str) -> int:
        """Bytes the run's entries take."""
        total = 0
        for key in self._run_entries(run):
            try:
                total += len(self._cache.get(key, default=b""))
            except UnsafeRow:
                continue
        return total

    def delete_run(self, run: str) -> None:
        with self._cache.transact():
            for key in self._run_entries(run):
                self._cache.delete(key)
            keys = self.run_keys()
            if run in keys:
                keys.remove(run)
                self._set(RUN_INDEX, json.dumps(keys).encode())

    # one writer per run
    @contextlib.contextmanager
    def writer(self, run: str):
        """Hold the run's writer lock for the duration of a `with`: a second writer of the same run stops at
        once with a message naming the holder. The lock is refreshed while held; a holder that died is
        replaced at once on its own machine, and elsewhere its lock lapses LOCK_SECONDS after it stopped."""
        key = f"lock/{run}"
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        while not self._cache.add(key, json.dumps(holder).encode(), expire=LOCK_SECONDS):
            try:
                other = json.loads(self._cache.get(key, default=b"{}"))
            except (UnsafeRow, ValueError):
                other = {}
            if isinstance(other, dict) and other.get("host") == holder["host"] and not _alive(other.get("pid")):
                self._cache.delete(key)         # its holder on this machine is gone: the lock is stale
                continue
            other = other if isinstance(other, dict) else {}
            raise NeuroCartoError(
                f"run {run} is being computed by process {other.get('pid', '?')} on {other.get('host', '?')} "
                f"(since {other.get('since', '?')}): wait for it to finish, or stop it; a stopped or killed "
                f"process's lock lapses within {LOCK_SECONDS} s")
        done = threading.Event()

        def refresh() -> None:
            while not done.wait(LOCK_SECONDS / 3):
                self._cache.touch(key, expire=LOCK_SECONDS)

        thread = threading.Thread(target=refresh, name=f"lock {run}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()
            self._cache.delete(key)

    def writer_of(self, run: str) -> dict | None:
        """The live holder of the run's writer lock (pid, host, since), or None if no process writes it."""
        try:
            holder = json.loads(self._cache.get(f"lock/{run}", default=b"null"))
        except (UnsafeRow, ValueError):
            return None
        if not isinstance(holder, dict) or (holder.get("host") == socket.gethostname() and not _alive(holder.get("pid"))):
            return None
        return holder

    # named results
    def put_array(self, run: str, name: str, array: np.ndarray) -> None:
        self._set(f"{run}/array/{name}", _to_npy(array))

    def has_array(self, run: str, name: str) -> bool:
        return f"{run}/array/{name}" in self._cache

    def get_array(self, run: str, name: str) -> np.ndarray:
        raw = self._require(run, f"{run}/array/{name}")
        try:
            return np.load(io.BytesIO(raw), allow_pickle=False)
        except Exception as error:
            raise self._corrupt(run, f"{run}/array/{name}", error) from error

    def put_json(self, run: str, name: str, value) -> None:
        self._set(f"{run}/json/{name}", json.dumps(value).encode())

    def has_json(self, run: str, name: str) -> bool:
        return f"{run}/json/{name}" in self._cache

    def get_json(self, run: str, name: str):
        raw = self._require(run, f"{run}/json/{name}")
        try:
            return json.loads(raw)
        except ValueError as error:
            raise self._corrupt(run, f"{run}/json/{name}", error) from error

    def put_bytes(self, run: str, name: str, value: bytes) -> None:
        self._set(f"{run}/bytes/{name}", value)

    def has_bytes(self, run: str, name: str) -> bool:
        return f"{run}/bytes/{name}" in self._cache

    def get_bytes(self, run: str, name: str) -> bytes:
        return self._require(run, f"{run}/bytes/{name}")

    def transaction(self):
        """A context in which many writes commit together (one SQLite transaction, not one each)."""
        return self._cache.transact()

    def delete_bytes(self, run: str, name: str) -> None:
        self._cache.delete(f"{run}/bytes/{name}")

    def _require(self, run: str, key: str) -> bytes:
        raw = self._get(run, key)
        if raw is None:
            raise NeuroCartoError(f"run {run} has no {key.split('/', 1)[1]!r}: its stage has not run; "
                                  "run `python -m neurocarto precompute` for it")
        return raw

    # checkpoints: a dict of arrays, written in one transaction
    def save_checkpoint(self, run: str, stage: str, arrays: dict[str, np.ndarray]) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        self._set(f"{run}/checkpoint/{stage}", buffer.getvalue())

    def load_checkpoint(self, run: str, stage: str) -> dict[str, np.ndarray] | None:
        raw = self._get(run, f"{run}/checkpoint/{stage}")
        if raw is None:
            return None
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
                return {name: archive[name] for name in archive.files}
        except Exception as error:
            raise self._corrupt(run, f"{run}/checkpoint/{stage}", error) from error

    def clear_checkpoint(self, run: str, stage: str) -> None:
        self._cache.delete(f"{run}/checkpoint/{stage}")


def _alive(pid) -> bool:
    """Whether a process of this machine with this id exists."""
    if type(pid) is not int or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _to_npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


