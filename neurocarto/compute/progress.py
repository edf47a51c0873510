"""A stage's progress: the terminal's tqdm bar and, for the app, a record in the store at most once a second.

The record (`progress` of the run: stage, done, total, unit, the count it resumed from, and when the stage
started and last moved) is all a page needs for a bar with its share and ETA; one small JSON write a
second costs the precompute nothing measurable (`benchmarks/progress_overhead.py`).
"""
from __future__ import annotations

import time

from tqdm import tqdm

from neurocarto.store import keys

RECORD_SECONDS = 1.0
SPENT = {"writes": 0, "seconds": 0.0}        # all records written by this process, for the benchmark


class StageProgress:
    """Counts a stage's units of work: `update(n)`, then `close()`."""

    def __init__(self, store, run: str, stage: str, total: int, unit: str, initial: int = 0, show: bool = True):
        self.bar = tqdm(total=total, initial=initial, desc=stage, unit=unit, disable=not show, dynamic_ncols=True)
        self.store, self.run = store, run
        self.record = {"stage": stage, "done": initial, "total": total, "unit": unit, "initial": initial,
                       "started": time.time(), "updated": time.time()}
        self._last = -float("inf")
        self._write(force=True)

    def update(self, n: int = 1) -> None:
        self.bar.update(n)
        self.record["done"] += n
        self._write()

    def close(self) -> None:
        self._write(force=True)
        self.bar.close()

    def __enter__(self) -> "StageProgress":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def _write(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.store is None or (not force and now - self._last < RECORD_SECONDS):
            return
        started = time.perf_counter()
        self.record["updated"] = time.time()
        self.store.put_json(self.run, keys.PROGRESS, self.record)
        self._last = now
        SPENT["writes"] += 1
        SPENT["seconds"] += time.perf_counter() - started
