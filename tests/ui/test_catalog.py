"""The app's catalog of runs: true to the store while served, a broken run reported once, memory bounded."""
from pathlib import Path

import numpy as np

from neurocarto.store.disk import Store
from neurocarto.testing.synthetic_run import write_synthetic_run
from neurocarto.ui.app import Catalog


def small_run(cache: Path, name: str) -> str:
    """A complete synthetic run under its own key."""
    key = write_synthetic_run(cache / name, 2000, n_layers=4, n_classes=5, n_images=500)
    return str(cache / name), key


def test_a_run_rewritten_while_served_is_reloaded_once_complete(tmp_path, monkeypatch):
    monkeypatch.setattr(Catalog, "CHECK_SECONDS", 0.0)
    cache, key = small_run(tmp_path, "a")
    store = Store(cache)
    catalog = Catalog(store)
    first = catalog.get(key)
    assert first is not None and catalog.get(key) is first            # unchanged: the same loaded run
    manifest = store.manifest(key)
    manifest["complete"] = False                                      # a stage is being recomputed
    manifest["stages"]["cluster"]["status"] = "running"
    store.write_manifest(manifest)
    assert catalog.get(key) is None and key not in catalog.keys
    assert catalog.unavailable(key) == f"Run “{manifest['name']}” is being computed or incomplete"
    labels = np.full(2000, -1, dtype=np.int64)
    labels[:4] = 0
    store.put_array(key, "cluster_labels", labels)                    # … and finished with other results
    manifest["complete"] = True
    manifest["stages"]["cluster"]["status"] = "done"
    store.write_manifest(manifest)
    reloaded = catalog.get(key)
    assert reloaded is not first and np.array_equal(reloaded.cluster_labels, labels)


def test_a_broken_run_is_reported_once_and_the_others_stay_served(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(Catalog, "CHECK_SECONDS", 0.0)
    cache, key = small_run(tmp_path, "a")
    store = Store(cache)
    store._set(f"{key}/array/projection", b"garbage")
    catalog = Catalog(store)
    assert catalog.get(key) is None and catalog.get(key) is None
    assert capsys.readouterr().err.count("cannot be shown") == 1
    assert catalog.get("nope") is None and catalog.get("x" * 10_000) is None and catalog.get(["x"]) is None


def test_at_most_a_few_runs_stay_loaded(tmp_path, monkeypatch):
    monkeypatch.setattr(Catalog, "MAX_LOADED", 2)
    cache, key = small_run(tmp_path, "a")       # three runs in one store: its entries copied under two more keys
    store = Store(cache)
    keys = [key]
    for suffix in ("2", "3"):
        other = key + suffix
        for entry in store._run_entries(key):
            store._set(other + entry[len(key):], store._cache.get(entry))
        manifest = store.manifest(other)
        manifest["key"], manifest["name"] = other, other
        store.write_manifest(manifest)
        keys.append(other)
    catalog = Catalog(store)
    loaded = [catalog.get(k) for k in keys]
    assert all(loaded) and list(catalog._loaded) == keys[1:]
