"""The one exception type whose message is meant for the user, not for a traceback."""
from __future__ import annotations

import difflib


class NeuroCartoError(Exception):
    """Bad input or state, with a message that says what is wrong and what would be valid."""


def suggest(name: str, valid: list[str], limit: int = 12) -> str:
    """'close matches first' listing of valid names, for error messages."""
    close = difflib.get_close_matches(name, valid, n=5, cutoff=0.5)
    rest = [v for v in valid if v not in close]
    shown = close + rest[: max(0, limit - len(close))]
    more = len(valid) - len(shown)
    text = ", ".join(shown) + (f", … ({more} more)" if more > 0 else "")
    return (f"did you mean {', '.join(close)}? " if close else "") + f"valid: {text}"
