"""The one exception type whose message is meant for the user, not for a traceback."""
from __future__ import annotations

import difflib


class NeuroCartoError(Exception):
    """Bad input or state, with a message that says what is wrong and what would be valid."""


def suggest(name: str, valid: list[str], limit: int = 12) -> str:
    """'close matches first' listing of valid names, for error messages."""
    close = difflib.get_close_matches(name, valid, n=5, cutoff=0.5)
    rest = [v for v in valid if v not in close]
    shown = rest[:limit]
    text = ", ".join(shown) + (f", … ({len(rest) - len(shown)} more)" if len(rest) > len(shown) else "")
    if not close:
        return f"valid: {text}"
    return f"did you mean {', '.join(close)}? other valid names: {text}"
