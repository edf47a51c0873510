"""How the app's callbacks are declared and wired: a module-level function `callback(catalog, *values)` carries its
Dash dependencies (`wired`), and `callbacks_of(module)` lists a module's in the order they are defined, for
`callbacks.register_callbacks` to wire the modules the app names."""
from __future__ import annotations

import functools
from types import ModuleType

from dash import ctx
from dash.exceptions import MissingCallbackContextException


def wired(*dependencies, **options):
    """Mark a module-level callback `function(catalog, *values)` with its Dash dependencies and options."""
    def mark(function):
        function.wiring = (dependencies, options)
        return function
    return mark


def callbacks_of(module: ModuleType) -> list:
    """(function, dependencies, options) of every callback defined in `module`, in definition order."""
    return [(value, *value.wiring) for value in vars(module).values()
            if callable(value) and hasattr(value, "wiring") and value.__module__ == module.__name__]


def with_catalog(function, catalog):
    @functools.wraps(function)
    def bound(*values):
        return function(catalog, *values)
    return bound


def triggered() -> set[str]:
    """The `id.prop`s that fired the running callback (none outside a request, e.g. in a unit test)."""
    try:
        return set(ctx.triggered_prop_ids)
    except MissingCallbackContextException:
        return set()
