"""The explanations asked of a store's runs, in the background cache beside it (`Catalog.jobs`): a queue of image
references per run, each run's warm worker's state, and the message of a request it could not explain. The web
workers ask and read; the run's warm worker (`analysis.explain_worker`) takes, explains into the store, and reports.
One spare worker per store (torch imported, no run yet) waits to become the worker of the next run asked for.
Torch-free."""
from __future__ import annotations

import hashlib
import time

KEPT_SECONDS = 3600         # how long a request's error and a worker's state are kept


def _queue(run: str) -> str:
    return f"explain/queue/{run}"


def _worker(run: str) -> str:
    return f"explain/worker/{run}"


SPARE = "explain/spare"


def _assigned(pid: int) -> str:
    return f"explain/assign/{pid}"


def _error(run: str, reference: str) -> str:
    return f"explain/error/{run}/{hashlib.sha256(reference.encode()).hexdigest()[:32]}"


def ask(jobs, run: str, reference: str) -> None:
    """Queue `reference` for the run's worker (once, however often asked); a former error of it is forgotten."""
    with jobs.transact():
        jobs.delete(_error(run, reference))
        queued = jobs.get(_queue(run), [])
        if reference not in queued:
            jobs.set(_queue(run), queued + [reference], expire=KEPT_SECONDS)


def take(jobs, run: str) -> str | None:
    """The oldest queued reference of the run, taken off the queue, or None."""
    with jobs.transact():
        queued = jobs.get(_queue(run), [])
        if not queued:
            return None
        jobs.set(_queue(run), queued[1:], expire=KEPT_SECONDS)
        return queued[0]


def queued(jobs, run: str) -> list[str]:
    return list(jobs.get(_queue(run), []))


def fail(jobs, run: str, reference: str, message: str) -> None:
    jobs.set(_error(run, reference), message, expire=KEPT_SECONDS)


def failure(jobs, run: str, reference: str) -> str | None:
    """Why the worker could not explain `reference`, if it could not."""
    return jobs.get(_error(run, reference))


def set_state(jobs, run: str, pid: int, state: str, error: str | None = None) -> None:
    """The run's worker `pid` is "loading" (the model), "ready", or "failed" (with `error`)."""
    jobs.set(_worker(run), {"pid": pid, "state": state, "error": error, "at": time.time()}, expire=KEPT_SECONDS)


def state(jobs, run: str) -> dict | None:
    found = jobs.get(_worker(run))
    return found if isinstance(found, dict) else None


def clear_state(jobs, run: str, pid: int) -> None:
    """The worker `pid` has ended: its state goes, unless a newer worker's has replaced it."""
    with jobs.transact():
        found = state(jobs, run)
        if found is not None and found["pid"] == pid:
            jobs.delete(_worker(run))


def set_spare(jobs, pid: int, ready: bool) -> None:
    """The spare worker is `pid`: started, or `ready` (torch imported) for a run."""
    jobs.set(SPARE, {"pid": pid, "ready": ready, "at": time.time()}, expire=KEPT_SECONDS)


def spare(jobs, ready: bool = False) -> int | None:
    """The pid of the spare worker (only once it is ready, if `ready`), if any; it may have ended since."""
    found = jobs.get(SPARE)
    return found["pid"] if isinstance(found, dict) and (found["ready"] or not ready) else None


def assign(jobs, pid: int, run: str) -> None:
    """Make the spare `pid` the worker of `run`: it is no longer the spare."""
    with jobs.transact():
        if spare(jobs) == pid:
            jobs.delete(SPARE)
        jobs.set(_assigned(pid), run, expire=KEPT_SECONDS)
        set_state(jobs, run, pid, "loading")


def assigned(jobs, pid: int) -> str | None:
    """The run the spare `pid` was made the worker of, if any."""
    return jobs.get(_assigned(pid))


def clear_spare(jobs, pid: int) -> None:
    """The spare `pid` has ended unassigned."""
    with jobs.transact():
        if spare(jobs) == pid:
            jobs.delete(SPARE)
        jobs.delete(_assigned(pid))
