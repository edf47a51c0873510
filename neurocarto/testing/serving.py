"""`python app.py` of a checkout on a free 127.0.0.1 port, for tests and benchmarks that drive the real server."""
from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]      # the checkout, where app.py is


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(arguments: list[str], log_path: Path | None = None, ready: str = "/", timeout: float = 60,
              poll: float = 0.2) -> tuple[subprocess.Popen, str]:
    """`python app.py --port P ARGUMENTS` on a free port, returned once `ready` answers: (process, base URL). Its
    output goes to `log_path` (a file, not a pipe: an unread pipe fills and stalls the server), else nowhere."""
    port = free_port()
    with open(log_path, "w") if log_path else contextlib.nullcontext(subprocess.DEVNULL) as log:
        process = subprocess.Popen([sys.executable, "app.py", "--port", str(port), *arguments], cwd=ROOT,
                                   stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        try:
            urllib.request.urlopen(base + ready, timeout=5).read(1)
            return process, base
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(poll)
    process.kill()
    process.wait()
    log = f": {log_path.read_text()[-2000:]}" if log_path else ""
    raise RuntimeError(f"the app did not answer {ready} within {timeout:.0f} s (exit status {process.returncode})"
                       + log)


def stop_app(process: subprocess.Popen, stop: signal.Signals = signal.SIGTERM, timeout: float = 60) -> None:
    """Stop it with `stop` (SIGINT is Ctrl-C); killed if it has not ended within `timeout` seconds."""
    process.send_signal(stop)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def served_app(cache, key: str, log_path: Path):
    """`python app.py --run KEY --cache CACHE`, its output in `log_path`; yields its base URL; when it stops, its
    log must hold no traceback."""
    process, base = start_app(["--run", key, "--cache", str(cache)], log_path)
    try:
        yield base
    finally:
        stop_app(process)
    assert "Traceback" not in log_path.read_text(), log_path.read_text()[-3000:]
