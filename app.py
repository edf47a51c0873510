"""NeuroCarto entry point.

    python app.py [--run RUN] [--host 127.0.0.1] [--port 8050] [--debug] [--no-jobs] [--cache DIR] [run flags]

Serves the app on 127.0.0.1 at once. Without --run it also computes, in a child process, the run
the flags define (the embedded default: FashionInception on all of Fashion-MNIST; stages already
stored are skipped): the page shows its progress and opens its views when it is complete.
With --no-jobs it runs no model at all: no precompute, no concept tests (stored results still show).
For a team server, use a WSGI server on `app:server` (the store from $NEUROCARTO_CACHE,
default cache/; NEUROCARTO_NO_JOBS=1 as --no-jobs), e.g. `gunicorn -w 2 -b 0.0.0.0:8050 app:server`.
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import signal
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


def app_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--run", default=None, help="open this run (name, key or key prefix); skips the precompute")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=port_number, default=8050, help="TCP port, 1-65535 (default 8050)")
    parser.add_argument("--debug", action="store_true", help="Dash debug mode (never on a shared server)")
    parser.add_argument("--no-jobs", action="store_true",
                        help="only serve: run no model here (no concept tests; stored results still show)")
    parser.add_argument("--debug-on-network", action="store_true",
                        help="allow --debug with a --host other machines can reach (its debugger runs code)")
    return parser


def launch_precompute(run_flags: list[str], argv: list[str]):
    """The precompute of the run the flags define, in a child process sharing this terminal (its progress bars,
    its Ctrl-C); the app reads its progress from the store."""
    import shlex
    import subprocess

    env = {**os.environ, "NEUROCARTO_COMMAND": shlex.join(["python", "app.py", *argv])}
    return subprocess.Popen([sys.executable, "-m", "neurocarto", "precompute", *run_flags], env=env)


def main(argv: list[str] | None = None) -> int:
    from neurocarto.cli import add_run_arguments, guarded

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    args = app_arguments(parser).parse_args(argv)
    if args.debug and not loopback(args.host) and not args.debug_on_network:
        parser.error(f"--debug with --host {args.host}: Dash's debugger would let anyone who reaches the server "
                     "run code on it; serve on 127.0.0.1, drop --debug, or add --debug-on-network if you mean it")
    from neurocarto.store.disk import Store
    from neurocarto.ui.app import create_app

    first, child = None, None
    if args.run:
        def resolve() -> str:
            with Store(args.cache) as store:
                return store.resolve(args.run)

        status, first = guarded(resolve)
        if status:
            return status
    elif not args.no_jobs and os.environ.get("WERKZEUG_RUN_MAIN") != "true":    # not again in --debug's reloader
        _, run_flags = app_arguments(argparse.ArgumentParser(add_help=False)).parse_known_args(argv)
        child = launch_precompute(run_flags, argv)
    app = create_app(args.cache, first, child, compute_jobs=not args.no_jobs)
    print(f"NeuroCarto at http://{args.host}:{args.port}/", flush=True)
    try:
        app.run(host=args.host, port=args.port, debug=args.debug)
    finally:
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGINT)        # as Ctrl-C: it saves pass 1's state at the end of its batch
            child.wait()
    return 0


def __getattr__(name: str):
    """`app:server` for WSGI servers, built on first access."""
    if name == "server":
        from neurocarto.ui.app import create_app

        return create_app(os.environ.get("NEUROCARTO_CACHE", "cache"),
                          compute_jobs=os.environ.get("NEUROCARTO_NO_JOBS", "") in ("", "0")).server
    raise AttributeError(name)


if __name__ == "__main__":
    sys.exit(main())
