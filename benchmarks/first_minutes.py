"""The first minutes: how soon `python app.py` answers on an empty store, and what recording progress costs.

    python benchmarks/first_minutes.py [--max-images 70000] [--repeats 3]

1. First byte: `python app.py --cache EMPTY` (which starts the default precompute beside the server) until
   its page answers, against the same app serving a stored run (`--run`), measured in the same call.
2. Progress overhead: the default precompute in this process from an empty cache; the seconds spent writing
   progress records to the store, as a share of the precompute's wall time.
"""
from __future__ import annotations

import argparse
import signal
import statistics
import tempfile
import time
from pathlib import Path

from neurocarto.testing.serving import start_app, stop_app


def first_byte(arguments: list[str]) -> float:
    """Seconds from starting `python app.py ARGUMENTS` to the first answer of its page."""
    started = time.perf_counter()
    process, _ = start_app(arguments, timeout=120, poll=0.05)
    try:
        return time.perf_counter() - started
    finally:
        stop_app(process, signal.SIGINT, timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-images", type=int, default=None, help="images of the precompute (default: all)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from neurocarto.compute import progress
    from neurocarto.compute.pipeline import precompute
    from neurocarto.config import ExecutionConfig, RunConfig

    size = [] if args.max_images is None else ["--max-images", str(args.max_images)]
    with tempfile.TemporaryDirectory() as folder:
        cache = Path(folder) / "cache"
        started = time.perf_counter()
        manifest = precompute(RunConfig(max_images=args.max_images), ExecutionConfig(cache=cache, progress=False),
                              log=lambda _: None)
        seconds = time.perf_counter() - started
        writes, spent = progress.SPENT["writes"], progress.SPENT["seconds"]
        empty, stored = [], []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as other:
                empty.append(first_byte(["--cache", str(Path(other) / "cache"), *size]))
            stored.append(first_byte(["--cache", str(cache), "--run", manifest["key"]]))
    print("| measure | value |\n|---|---:|")
    print(f"| first byte, empty store (precompute starting beside it), median of {args.repeats} | "
          f"{statistics.median(empty):.2f} s |")
    print(f"| first byte, stored run (`--run`), median of {args.repeats} | {statistics.median(stored):.2f} s |")
    print(f"| ratio empty / stored | {statistics.median(empty) / statistics.median(stored):.2f} |")
    print(f"| precompute, {manifest['counts']['images']:,} images | {seconds:.1f} s |")
    print(f"| progress records written | {writes} |")
    print(f"| time writing them, share of the precompute | {spent:.3f} s, {100 * spent / seconds:.3f} % |")


if __name__ == "__main__":
    main()
