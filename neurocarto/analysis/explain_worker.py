"""`python -m neurocarto.analysis.explain_worker CACHE RUN PARENT`: a run's warm explainer. It loads the run's model once,
then explains every image queued for the run (`store.explain_queue`) into the store, until nothing has been asked
for IDLE_SECONDS or the web worker that started it (pid PARENT) has gone. The app starts it (`ui.explain_panel`) so that torch
never loads in a web worker, and a second image does not pay for loading torch and the model again.

`python -m neurocarto.analysis.explain_worker CACHE --spare PARENT`: the same with torch imported and no run yet; it
waits to be made the worker of the run asked for next (`explain_queue.assign`), so that a run's first image pays
for loading its model only.
"""
from __future__ import annotations

import os
import sys
import time
import traceback

import diskcache

from neurocarto.analysis.explain import Explainer
from neurocarto.errors import NeuroCartoError
from neurocarto.store import explain_queue
from neurocarto.store.disk import JsonOnlyDisk, Store
from neurocarto.store.explanations import forget_upload, stored_upload
from neurocarto.store.stored_run import StoredRun

IDLE_SECONDS = 600          # a worker asked nothing for this long ends
POLL_SECONDS = 0.02         # how often an idle worker looks at the queue (a spare: for its run)


def explain_reference(explainer: Explainer, reference: str) -> None:
    """Explain a queued reference (`run:INDEX`, or `upload:SHA256` of an upload the web worker stored) into the
    store; a refused upload is dropped from the store."""
    if reference.startswith("run:"):
        explainer.explain(int(reference[4:]))
        return
    content = stored_upload(explainer.run, reference)
    if content is None:
        raise NeuroCartoError("the uploaded image is no longer in the store: upload it again")
    try:
        explainer.explain(content)
    except NeuroCartoError:
        forget_upload(explainer.run, reference)
        raise


def wait_for_run(jobs, pid: int, parent: int) -> str | None:
    """As the spare: the run this worker is made the worker of, or None once idle or orphaned."""
    with jobs.transact():                   # announced by its starter already; made a run's worker meanwhile?
        if explain_queue.assigned(jobs, pid) is None:
            explain_queue.set_spare(jobs, pid, ready=True)
    started = time.monotonic()
    while True:
        with jobs.transact():
            run_key = explain_queue.assigned(jobs, pid)
            orphaned = os.getppid() != parent
            if run_key is not None or orphaned or time.monotonic() - started > IDLE_SECONDS:
                explain_queue.clear_spare(jobs, pid)
                if orphaned and run_key is not None:       # its run's next poll starts another worker
                    explain_queue.clear_state(jobs, run_key, pid)
                return None if orphaned else run_key
        time.sleep(POLL_SECONDS)


def main(cache: str, run_key: str, parent: int) -> None:
    pid = os.getpid()
    with Store(cache) as store:
        jobs = diskcache.Cache(str(store.directory / "background"), disk=JsonOnlyDisk)
        if run_key == "--spare":
            run_key = wait_for_run(jobs, pid, parent)
            if run_key is None:
                os._exit(0)
        explain_queue.set_state(jobs, run_key, pid, "loading")
        try:
            explainer = Explainer(StoredRun(store, run_key))
        except NeuroCartoError as problem:      # e.g. the run's model or data are not here: the page says so
            explain_queue.set_state(jobs, run_key, pid, "failed", str(problem))
            os._exit(0)
        except Exception as error:              # the page says it; the server's log keeps the traceback
            traceback.print_exc()
            explain_queue.set_state(jobs, run_key, pid, "failed", f"loading the model failed: "
                                                                  f"{type(error).__name__}: {error}")
            sys.stderr.flush()
            os._exit(0)
        explain_queue.set_state(jobs, run_key, pid, "ready")
        last = time.monotonic()
        while os.getppid() == parent and time.monotonic() - last < IDLE_SECONDS:
            reference = explain_queue.take(jobs, run_key)
            if reference is None:
                time.sleep(POLL_SECONDS)
                continue
            try:
                explain_reference(explainer, reference)
            except NeuroCartoError as problem:
                explain_queue.fail(jobs, run_key, reference, str(problem))
            except Exception as error:
                traceback.print_exc()
                explain_queue.fail(jobs, run_key, reference, f"the explanation failed: {type(error).__name__}: {error}")
            last = time.monotonic()
        explain_queue.clear_state(jobs, run_key, pid)
    sys.stderr.flush()
    os._exit(0)     # everything is stored: skip torch's teardown


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
