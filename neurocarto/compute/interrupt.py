"""Ctrl-C that lands between batches: the first press is deferred to a safe point, a second stops at once."""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager


class DeferredInterrupt:
    """Set by the first SIGINT; the loop checks `requested` where its state is consistent."""

    def __init__(self) -> None:
        self.requested = False

    def _handle(self, _signum, _frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True


@contextmanager
def deferred_interrupt():
    """Yield a DeferredInterrupt armed for SIGINT (only the main thread can own signals)."""
    interrupt = DeferredInterrupt()
    if threading.current_thread() is not threading.main_thread():
        yield interrupt
        return
    previous = signal.signal(signal.SIGINT, interrupt._handle)
    try:
        yield interrupt
    finally:
        signal.signal(signal.SIGINT, previous)
