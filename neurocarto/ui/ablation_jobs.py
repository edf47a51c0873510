"""The concept test's jobs on a shared server: their specs in the background cache beside the store, the slots
that cap how many run at once, and the worker each runs in (`analysis.ablation_worker`, a fresh interpreter).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Callable

MAX_JOBS = 2                # tests running at once on this store; more are told to wait
JOB_SECONDS = 3600          # how long a job's spec is kept in the background cache
RUNNING = "concept-test/running"
WORKER = "neurocarto.analysis.ablation_worker"


def spec_key(name: str) -> str:
    """The background cache's key of a job's spec."""
    return f"concept-test/job/{name}"


def put_spec(jobs, name: str, spec: dict) -> None:
    jobs.set(spec_key(name), spec, expire=JOB_SECONDS)


def get_spec(jobs, name: str) -> dict | None:
    spec = jobs.get(spec_key(name))
    return spec if isinstance(spec, dict) else None


def run_worker(cache: str, spec: dict, on_batch: Callable[[int, int], None]) -> tuple[str | None, int]:
    """The job's ablation in a fresh interpreter, niced so the web workers' requests come first; each forward batch
    reported to `on_batch(done, total)`. Returns (the error message or None, the exit status); the message is set
    when the worker ended without a result."""
    job = subprocess.Popen([sys.executable, "-m", WORKER, cache], text=True,
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    os.setpriority(os.PRIO_PROCESS, job.pid, 10)
    job.stdin.write(json.dumps(spec))
    job.stdin.close()
    outcome = None
    for line in job.stdout:
        report = json.loads(line)
        if "done" in report:
            on_batch(report["done"], report["total"])
        else:
            outcome = report
    status = job.wait()
    if outcome is None:
        return f"the test's process ended without a result (exit status {status})", status
    return outcome["error"], status


def take_slot(jobs) -> bool:
    """Count this process among the store's running tests, unless MAX_JOBS live ones already run."""
    with jobs.transact():
        running = [pid for pid in jobs.get(RUNNING, []) if alive(pid)]
        if len(running) >= MAX_JOBS:
            return False
        jobs.set(RUNNING, running + [os.getpid()])
        return True


def alive(pid: int) -> bool:
    """Whether a process runs (a cancelled job's is killed, and may wait as a zombie until its parent reaps it)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def free_slot(jobs) -> None:
    with jobs.transact():
        jobs.set(RUNNING, [pid for pid in jobs.get(RUNNING, []) if pid != os.getpid()])
