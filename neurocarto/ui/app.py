"""The Dash app over a store: a catalog of complete runs, the page, its callbacks and image routes."""
from __future__ import annotations

from pathlib import Path

import dash_cytoscape as cyto
from dash import Dash

from ..store import Store
from .callbacks import register_callbacks
from .inputs import MAX_REQUEST, check_requests
from .layout import page
from .routes import register_routes
from .rundata import RunData, complete_runs, load_run, run_label

ASSETS = Path(__file__).resolve().parents[2] / "assets"


class Catalog:
    """The store's complete runs, each loaded once on first use."""

    def __init__(self, store: Store, first: str | None = None):
        self.store = store
        self.first = first
        self._loaded: dict[str, RunData] = {}

    @property
    def keys(self) -> list[str]:
        keys = [key for key, _ in complete_runs(self.store)]
        if self.first in keys:
            keys.remove(self.first)
            keys.insert(0, self.first)
        return keys

    def options(self) -> list[dict]:
        order = {key: i for i, key in enumerate(self.keys)}
        runs = sorted(complete_runs(self.store), key=lambda item: order[item[0]])
        return [{"label": run_label(manifest), "value": key} for key, manifest in runs]

    def get(self, key: str | None) -> RunData | None:
        if not key or not isinstance(key, str):
            return None
        if key not in self._loaded:
            if key not in self.keys:
                return None
            self._loaded[key] = load_run(self.store, key)
        return self._loaded[key]


def create_app(cache: str | Path, first_run: str | None = None) -> Dash:
    """The app for the runs in the store under `cache`; `first_run` (a key) opens first."""
    cyto.load_extra_layouts()      # also brings cytoscape-svg, which the graph's SVG export needs
    catalog = Catalog(Store(cache), first_run)
    app = Dash(__name__, title="NeuroCarto", assets_folder=str(ASSETS), suppress_callback_exceptions=False)
    app.layout = lambda: page(catalog.options())
    app.server.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST
    register_callbacks(app, catalog)
    check_requests(app)
    register_routes(app.server, catalog.get)
    return app
