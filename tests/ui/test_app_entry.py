"""app.py: safe defaults and the WSGI entry point."""
import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


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


def test_debug_is_refused_on_a_host_others_reach_unless_meant(monkeypatch, small_fashion_run, capsys):
    _config, execution, manifest = small_fashion_run
    calls = {}
    from dash import Dash

    monkeypatch.setattr(Dash, "run", lambda self, **kwargs: calls.update(kwargs))
    module = load_app_module()
    flags = ["--run", manifest["key"], "--cache", str(execution.cache), "--debug"]
    for host in ("0.0.0.0", "192.168.1.5", "::", "example.org"):
        try:
            module.main(flags + ["--host", host])
        except SystemExit as exit:
            assert exit.code == 2
        else:
            raise AssertionError(f"--debug --host {host} was accepted")
        assert f"--debug with --host {host}: Dash's debugger" in capsys.readouterr().err and not calls
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert module.main(flags + ["--host", host]) == 0 and calls["debug"] is True
    assert module.main(flags + ["--host", "0.0.0.0", "--debug-on-network"]) == 0 and calls["host"] == "0.0.0.0"


def test_the_wsgi_entry_serves_without_torch(small_fashion_run):
    """A web worker imports neither torch nor UMAP, even with a run loaded and patches served."""
    import subprocess

    _config, execution, manifest = small_fashion_run
    probe = (f"import re, sys, app; client = app.server.test_client(); "
             f"assert client.get('/patch/{manifest['key']}/0/0.png').status_code == 200; "
             f"assert client.get('/members/{manifest['key']}/0.1.png').status_code == 200; "
             "print(sorted(m for m in ('torch', 'umap', 'torchvision') if m in sys.modules), "
             "int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) // 1024)")  # peak MB
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**__import__("os").environ, "NEUROCARTO_CACHE": str(execution.cache)})
    assert result.returncode == 0, result.stderr[-2000:]
    modules, megabytes = result.stdout.rsplit("]", 1)
    assert modules == "[" and int(megabytes) < 300, result.stdout


def test_a_bad_port_is_named_before_anything_runs(capsys):
    module = load_app_module()
    for port in ("99999", "0", "http"):
        try:
            module.main(["--port", port])
        except SystemExit as exit:
            assert exit.code == 2
        else:
            raise AssertionError(f"--port {port} was accepted")
        assert f"{port!r} is not a port: use a number from 1 to 65535" in capsys.readouterr().err


def post_callback(client, outputs: list[tuple[str, str]], inputs: list[tuple[str, str, object]],
                  state: list[tuple[str, str, object]] = (), changed: list[str] = ()) -> dict:
    """One Dash callback request, as the browser sends it; returns the JSON response (or {} for 204)."""
    output = "..." .join(f"{i}.{p}" for i, p in outputs)
    payload = {"output": f"..{output}.." if len(outputs) > 1 else output,
               "outputs": [{"id": i, "property": p} for i, p in outputs] if len(outputs) > 1
               else {"id": outputs[0][0], "property": outputs[0][1]},
               "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
               "state": [{"id": i, "property": p, "value": v} for i, p, v in state],
               "changedPropIds": list(changed)}
    response = client.post("/_dash-update-component", json=payload)
    assert response.status_code in (200, 204), response.data[-2000:]
    return response.get_json() if response.status_code == 200 else {}


def test_hover_updates_only_the_projection_overlays(small_fashion_run, monkeypatch):
    _config, execution, manifest = small_fashion_run
    monkeypatch.setenv("NEUROCARTO_CACHE", str(execution.cache))
    client = load_app_module().server.test_client()
    client.get("/")
    selection = {"nodes": [], "neuron": None, "neurons": []}
    inputs = [("run", "value", manifest["key"]), ("class", "value", 0), ("projection-filter", "value", "all"),
              ("selection", "data", selection), ("hovered", "data", [3, 5]), ("paper", "value", []),
              ("cut-choice", "data", "auto"), ("projection-image", "data", None),
              ("projection-show", "value", ["labels"])]
    state = [("projection", "relayoutData", None)]
    whole = post_callback(client, [("projection", "figure")], inputs, state, changed=["run.value"])
    figure = whole["response"]["projection"]["figure"]
    assert len(figure["data"]) == len(manifest["layers"]) + 2
    patched = post_callback(client, [("projection", "figure")], inputs, state, changed=["hovered.data"])
    operations = patched["response"]["projection"]["figure"]["operations"]
    assert [op["location"] for op in operations] == [["data", len(manifest["layers"])], ["data", len(manifest["layers"]) + 1],
                                                     ["layout", "shapes"], ["layout", "annotations"]]
    assert operations[0]["params"]["value"]["name"] == "highlighted"


def test_a_hover_without_point_data_is_ignored(small_fashion_run, monkeypatch):
    """Plotly can fire hover events while it redraws, without customdata: no tooltip, no error."""
    _config, execution, manifest = small_fashion_run
    monkeypatch.setenv("NEUROCARTO_CACHE", str(execution.cache))
    client = load_app_module().server.test_client()
    client.get("/")
    hover = {"points": [{"curveNumber": 0, "pointNumber": 0, "x": 1.0, "y": 2.0,
                         "bbox": {"x0": 10, "x1": 12, "y0": 20, "y1": 22}}]}
    outputs = [("projection-tooltip", "show"), ("projection-tooltip", "bbox"), ("projection-tooltip", "children")]
    answer = post_callback(client, outputs, [("projection", "hoverData", hover)], [("run", "value", manifest["key"])],
                           changed=["projection.hoverData"])
    assert answer["response"]["projection-tooltip"]["show"] is False
    hover["points"][0]["customdata"] = 7
    answer = post_callback(client, outputs, [("projection", "hoverData", hover)], [("run", "value", manifest["key"])],
                           changed=["projection.hoverData"])
    tooltip = answer["response"]["projection-tooltip"]
    assert tooltip["show"] is True and f"/patch/{manifest['key']}/7/0.png" in str(tooltip["children"])


def test_no_jobs_starts_no_precompute_and_no_concept_test(monkeypatch, tmp_path):
    from dash import Dash

    module = load_app_module()
    launched, built = [], {}
    monkeypatch.setattr(module, "launch_precompute", lambda *args: launched.append(args))
    monkeypatch.setattr(Dash, "run", lambda self, **kwargs: built.update(app=self))
    assert module.main(["--no-jobs", "--cache", str(tmp_path / "store")]) == 0
    assert launched == []
    assert module.main(["--cache", str(tmp_path / "store")]) == 0 and len(launched) == 1       # without: it does
    monkeypatch.setenv("NEUROCARTO_CACHE", str(tmp_path / "store"))
    monkeypatch.setenv("NEUROCARTO_NO_JOBS", "1")
    from neurocarto.ui import app as ui_app

    catalogs = []
    real = ui_app.Catalog
    monkeypatch.setattr(ui_app, "Catalog", lambda *args: catalogs.append(real(*args)) or catalogs[-1])
    load_app_module().server
    assert catalogs and catalogs[-1].compute_jobs is False
