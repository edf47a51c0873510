"""The Dash app over a store: a catalog of complete runs, the page, its callbacks and image routes."""
from __future__ import annotations

import math
import secrets
import sys
import time
from collections import OrderedDict
from pathlib import Path

import dash_cytoscape as cyto
import diskcache
from dash import Dash, DiskcacheManager

from neurocarto.errors import NeuroCartoError
from neurocarto.store.disk import JsonOnlyDisk, Store
from neurocarto.store.stored_run import StoredRun, complete_runs, run_label
from neurocarto.ui import ablation_panel, compare_view, explain_panel, units_bar
from neurocarto.ui.callbacks import register_callbacks
from neurocarto.ui.inputs import MAX_UPLOAD_REQUEST, check_requests
from neurocarto.ui.layout import page
from neurocarto.ui.routes import register_routes

ASSETS = Path(__file__).resolve().parents[2] / "assets"
VIEW_ARRAYS = ("neuron_ids", "class_names", "projection", "neighbor_table", "cluster_labels", "merge_caps",
               "layer_cuts", "top_sets")      # what every view reads: read on loading, so a damaged run shows at once


def load_run(store: Store, key: str) -> StoredRun:
    """A complete run with what every view reads already read."""
    run = StoredRun(store, key)
    run.require(*run.stages)
    for name in VIEW_ARRAYS:
        getattr(run, name)
    return run


class Catalog:
    """The store's complete runs, loaded on first use and kept true to the store while served.

    A loaded run is checked against its manifest at most every CHECK_SECONDS: a run rewritten since (a stage
    rerun, `--rebuild`) is loaded again once complete, and is unavailable meanwhile; a run that fails to load is
    reported once (per version of its manifest) and skipped. At most MAX_LOADED runs stay loaded (least
    recently used first out).
    """

    MAX_LOADED = 4
    CHECK_SECONDS = 2.0

    def __init__(self, store: Store, first: str | None = None, launched=None, compute_jobs: bool = True):
        self.store = store
        self.compute_jobs = compute_jobs       # False: a host that only serves; no concept test starts here
        self.jobs = diskcache.Cache(str(store.directory / "background"), disk=JsonOnlyDisk)  # background callbacks
        self.first = first
        self.launched = launched        # the precompute `python app.py` started (a Popen), if any
        self._loaded: OrderedDict[str, tuple[StoredRun, str]] = OrderedDict()     # key → (data, manifest stamp)
        self._checked: dict[str, float] = {}
        self._failed: dict[str, str] = {}

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

    def unavailable(self, key: str) -> str:
        """Why a run cannot be shown, in a sentence."""
        try:
            manifest = self.store.manifest(key)
        except NeuroCartoError as problem:
            return str(problem)
        if manifest is None:
            return f"Unknown run “{key[:64]}”"
        if not manifest.get("complete"):
            return f"Run “{manifest['name']}” is being computed or incomplete"
        return f"Run “{manifest['name']}” cannot be read (see the server's log)"

    def get(self, key: str | None) -> StoredRun | None:
        if not key or not isinstance(key, str) or len(key) > 64:
            return None
        now = time.monotonic()
        if key in self._loaded and now - self._checked.get(key, -math.inf) < self.CHECK_SECONDS:
            self._loaded.move_to_end(key)
            return self._loaded[key][0]
        stamp = self.store.manifest_stamp(key)
        self._checked[key] = now
        if key in self._loaded and self._loaded[key][1] == stamp:
            self._loaded.move_to_end(key)
            return self._loaded[key][0]
        self._loaded.pop(key, None)
        if stamp is None or self._failed.get(key) == stamp or key not in self.keys:
            return None
        try:
            data = load_run(self.store, key)
        except NeuroCartoError as problem:
            self._failed[key] = stamp
            print(f"run {key} cannot be shown: {problem}", file=sys.stderr, flush=True)
            return None
        self._loaded[key] = (data, stamp)
        while len(self._loaded) > self.MAX_LOADED:
            self._loaded.popitem(last=False)
        return data


def create_app(cache: str | Path, first_run: str | None = None, launched=None, compute_jobs: bool = True) -> Dash:
    """The app for the runs in the store under `cache`; `first_run` (a key) opens first; `launched`, the
    precompute process started with it, whose start the page shows until its run appears in the store; without
    `compute_jobs` the app runs no model (stored concept tests still show)."""
    cyto.load_extra_layouts()      # also brings cytoscape-svg, which the graph's SVG export needs
    catalog = Catalog(Store(cache), first_run, launched, compute_jobs)
    app = Dash(__name__, title="NeuroCarto", update_title=None, assets_folder=str(ASSETS),
               suppress_callback_exceptions=False, background_callback_manager=DiskcacheManager(catalog.jobs))
    app.layout = lambda: page(catalog.options())
    app.server.config["MAX_CONTENT_LENGTH"] = MAX_UPLOAD_REQUEST
    catalog.jobs.add("signing-secret", secrets.token_hex(32))      # one for every worker on this store
    app.server.secret_key = catalog.jobs.get("signing-secret")      # signs background jobs' handles
    register_callbacks(app, catalog, ablation_panel, explain_panel, compare_view, units_bar)
    check_requests(app)
    register_routes(app.server, catalog.get)
    return app
