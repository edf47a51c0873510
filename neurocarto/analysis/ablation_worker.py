"""`python -m neurocarto.analysis.ablation_worker CACHE`, a concept test's spec as JSON on stdin: its ablation,
stored in the run's store, reported as JSON lines on stdout — {"done", "total"} per forward batch, then {"error"}.
The app's background callback starts it (`ui.ablation_jobs.run_worker`) so that torch never loads in a web worker.
"""
from __future__ import annotations

import json
import os
import sys
import traceback

from neurocarto.analysis.ablation import ablate_run_neurons
from neurocarto.errors import NeuroCartoError
from neurocarto.store.disk import Store
from neurocarto.store.stored_run import StoredRun


def main(cache: str) -> None:
    """The job on stdin, run on the store in `cache`; every outcome is reported, none raised."""
    def report(message: dict) -> None:
        print(json.dumps(message), flush=True)

    spec = json.load(sys.stdin)
    try:
        with Store(cache) as store:
            run = StoredRun(store, spec["run"])
            ablate_run_neurons(run, spec["neurons"], spec["method"], spec["images"], spec["random_sets"], spec["seed"],
                               progress=lambda done, total: report({"done": done, "total": total}))
        report({"error": None})
    except NeuroCartoError as problem:
        report({"error": str(problem)})
    except Exception as error:      # reported on the page; the server's log keeps the traceback
        traceback.print_exc()
        report({"error": f"the test failed: {type(error).__name__}: {error}"})
    sys.stderr.flush()
    os._exit(0)     # the result is stored and reported: skip torch's teardown (about a second)


if __name__ == "__main__":
    main(sys.argv[1])
