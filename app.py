"""NeuroCarto entry point.

    python app.py [--run RUN] [--host 127.0.0.1] [--port 8050] [--debug] [--cache DIR] [run flags]

Without --run, computes the run the flags define (the embedded default: FashionInception on
all of Fashion-MNIST) unless the store already holds it, then serves the app on 127.0.0.1.
For a team server, use a WSGI server on `app:server` (the store from $NEUROCARTO_CACHE,
default cache/), e.g. `gunicorn -w 2 -b 0.0.0.0:8050 app:server`.
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import sys


def port_number(text: str) -> int:
    """argparse type: a TCP port, 1-65535."""
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: use a number from 1 to 65535")
    return int(text)


def loopback(host: str) -> bool:
    """Whether `host` is this machine only (localhost or a loopback address)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def first_run(args: argparse.Namespace) -> str:
    """The key of the run to open: --run, or the run the flags define, computed unless stored."""
    from neurocarto.cli import configs_from, stage_list
    from neurocarto.pipeline import precompute, summary
    from neurocarto.store import Store

    if args.run:
        with Store(args.cache) as store:
            return store.resolve(args.run)
    run, execution = configs_from(args)
    manifest = precompute(run, execution, rebuild=args.rebuild, stages=stage_list(args))
    print(summary(manifest))
    return manifest["key"]


def main(argv: list[str] | None = None) -> int:
    from neurocarto.cli import add_run_arguments, guarded

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    parser.add_argument("--run", default=None, help="open this run (name, key or key prefix); skips the precompute")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=port_number, default=8050, help="TCP port, 1-65535 (default 8050)")
    parser.add_argument("--debug", action="store_true", help="Dash debug mode (never on a shared server)")
    parser.add_argument("--debug-on-network", action="store_true",
                        help="allow --debug with a --host other machines can reach (its debugger runs code)")
    args = parser.parse_args(argv)
    if args.debug and not loopback(args.host) and not args.debug_on_network:
        parser.error(f"--debug with --host {args.host}: Dash's debugger would let anyone who reaches the server "
                     "run code on it; serve on 127.0.0.1, drop --debug, or add --debug-on-network if you mean it")
    from neurocarto.ui.app import create_app

    status, first = guarded(lambda: first_run(args))
    if status:
        return status
    app = create_app(args.cache, first)
    print(f"NeuroCarto at http://{args.host}:{args.port}/", flush=True)
    app.run(host=args.host, port=args.port, debug=args.debug)
    return 0


def __getattr__(name: str):
    """`app:server` for WSGI servers, built on first access."""
    if name == "server":
        from neurocarto.ui.app import create_app

        return create_app(os.environ.get("NEUROCARTO_CACHE", "cache")).server
    raise AttributeError(name)


if __name__ == "__main__":
    sys.exit(main())
