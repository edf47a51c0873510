"""NeuroCarto entry point: `python app.py [--cache DIR] [run flags]`.

Precomputes the run the flags define (the embedded default: FashionInception on all of
Fashion-MNIST) unless the store already holds it, then reports it. The Dash views over the
run arrive with the web-app milestone; until then this prints the run's summary.
"""
from __future__ import annotations

import argparse
import sys

from neurocarto.cli import add_run_arguments, configs_from, stage_list
from neurocarto.errors import NeuroCartoError
from neurocarto.pipeline import precompute, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    try:
        run, execution = configs_from(args)
        manifest = precompute(run, execution, rebuild=args.rebuild, stages=stage_list(args))
    except NeuroCartoError as error:
        print(f"neurocarto: error: {error}", file=sys.stderr)
        return 2
    print(summary(manifest))
    print("The run is in the store; `python -m neurocarto runs` lists it. The interactive views "
          "(projection, graph, examples) are not built yet.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
