"""How the app's callbacks are recorded: module-level functions `callback(catalog, *values)`, each with its Dash
dependencies, wired to an app by `callbacks.register_callbacks`."""
from __future__ import annotations

import functools

WIRING: list[tuple] = []        # (function, Dash dependencies, options), in the order they are registered


def wired(*dependencies, **options):
    """Record a module-level callback `function(catalog, *values)` for `register_callbacks`."""
    def record(function):
        WIRING.append((function, dependencies, options))
        return function
    return record


def with_catalog(function, catalog):
    @functools.wraps(function)
    def bound(*values):
        return function(catalog, *values)
    return bound
