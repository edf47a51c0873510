"""Results read from the store once and kept in a worker's memory: what never changes once stored (an explanation,
a comparison of two runs at a cut), the oldest forgotten past a limit."""
from __future__ import annotations

from typing import Callable, Hashable, TypeVar

Value = TypeVar("Value")


class Kept:
    """At most `limit` values by key; a value not found (None) is not kept, so it is looked for again."""

    def __init__(self, limit: int):
        self.limit = limit
        self._values: dict = {}

    def get(self, key: Hashable, read: Callable[[], Value | None]) -> Value | None:
        if key not in self._values:
            found = read()
            if found is None:
                return None
            while len(self._values) >= self.limit:
                self._values.pop(next(iter(self._values)))
            self._values[key] = found
        return self._values[key]
