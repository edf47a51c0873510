"""app.py: safe defaults and the WSGI entry point."""
import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_app_module():
    sys.path.insert(0, str(ROOT))
    try:
        return importlib.import_module("app")
    finally:
        sys.path.remove(str(ROOT))


def test_wsgi_server_serves_the_page_and_patches(small_fashion_run, monkeypatch):
    _config, execution, manifest = small_fashion_run
    monkeypatch.setenv("NEUROCARTO_CACHE", str(execution.cache))
    client = load_app_module().server.test_client()
    page = client.get("/")
    assert page.status_code == 200 and b"NeuroCarto" in page.data
    patch = client.get(f"/patch/{manifest['key']}/3/1.png")
    assert patch.status_code == 200 and patch.data.startswith(b"\x89PNG")
    assert client.get(f"/patch/{manifest['key']}/3/1.jpg").status_code == 404


def test_binds_to_loopback_without_debug_unless_asked(monkeypatch, small_fashion_run):
    _config, execution, manifest = small_fashion_run
    calls = {}
    from dash import Dash

    monkeypatch.setattr(Dash, "run", lambda self, **kwargs: calls.update(kwargs))
    module = load_app_module()
    assert module.main(["--run", manifest["key"], "--cache", str(execution.cache)]) == 0
    assert calls == {"host": "127.0.0.1", "port": 8050, "debug": False}
    assert module.main(["--run", "nope", "--cache", str(execution.cache)]) == 2
