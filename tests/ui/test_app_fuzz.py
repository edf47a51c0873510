"""Every callback of the real app against hostile payloads: wrong types, NaN, huge lists and strings, unknown ids,
missing keys. No server error, no slow answer, no failure left to the catch-all, bounded memory."""
import math
import re
import time

import pytest

from neurocarto.ui.app import create_app

HOSTILE = [None, True, -1, 2 ** 62, 1.5, float("nan"), float("inf"), "", "x", "x" * 50_000, [], [0] * 100_000,
           [-1, "a", None, 3.5, [1]], {}, {"nodes": ["a"] * 5000, "neuron": "7", "neurons": list(range(150_000))},
           {"nodes": 5, "neuron": -4, "neurons": "all"}, {"points": [{"customdata": -3, "bbox": {"x0": "a"}}] * 3000},
           {"points": [{"customdata": 10 ** 9}, "x", None]}, {"id": 5}, {"id": "conv2:c0", "members": ["conv2:0"] * 5000},
           {"width": float("nan"), "height": 1e308}, {"width": -5, "height": 10 ** 7}, ["auto"] * 1000, "auto",
           "mixed4b:c0,mixed4b:1," * 300, "?select=" + "conv2:1," * 2000, "?threshold=nan&cut=inf&class=%00&run=../",
           "run:999999999", "upload:../../etc", {"reference": "run:999999999", "since": 1.0},
           {"reference": "upload:" + "0" * 64, "since": float("nan"), "switch": "x"}, {"reference": ["run:1"]},
           {"contents": "data:image/png;base64,AAAA", "filename": "x" * 5000}, {"contents": "data:;base64,!!"},
           {"contents": "data:image/png;base64," + "iVBORw0KGgo" * 1000}, "?image=../../etc/passwd", "?image=" + "9" * 40,
           {"side": "c", "concept": 10 ** 12}, {"side": "b", "concept": -1}, {"points": [{"customdata": [1, -5]}]},
           {"points": [{"customdata": [7, 10 ** 9]}]}, "b:99999999", "../x", {"column": "__proto__", "descending": "x"},
           {"id": "b|mixed4b:c0", "members": ["nope"]}, "?compare=../../etc&run=x",
           {"xaxis.range[0]": float("nan"), "xaxis.range[1]": "x", "yaxis.range[0]": 1e308, "yaxis.range[1]": -1e308}]


def valid_inputs(key: str) -> dict:
    return {("url", "pathname"): "/", ("url", "search"): "", ("run", "value"): key, ("class", "value"): 0,
            ("class", "search_value"): "", ("threshold", "value"): 0, ("mode", "value"): [], ("paper", "value"): [],
            ("cut-auto", "value"): ["auto"], ("cut", "value"): 0.2, ("cut-choice", "data"): "auto",
            ("graph-detail", "value"): "summary", ("projection-filter", "value"): "all",
            ("graph-size", "data"): {"width": 520, "height": 560},
            ("selection", "data"): {"nodes": [], "neuron": None, "neurons": []}, ("hovered", "data"): [],
            ("graph", "tapNodeData"): None, ("graph", "mouseoverNodeData"): None, ("projection", "clickData"): None,
            ("projection", "selectedData"): None, ("projection", "hoverData"): None,
            ("export-graph-png", "n_clicks"): 1, ("export-graph-svg", "n_clicks"): 1,
            ("progress-poll", "n_intervals"): 3, ("ready", "data"): None,
            ("progress-focus", "data"): {"key": key, "switch": True}, ("test-run", "n_clicks"): 1,
            ("test-method", "value"): "zero", ("test-job", "data"): None, ("test-done", "data"): None,
            ("explained", "data"): None, ("projection-image", "data"): None, ("explained-known", "data"): {},
            ("explain-pending", "data"): None, ("image-pick", "data"): None,
            ("explain-go", "n_clicks"): 1, ("explain-clear", "n_clicks"): 1, ("explain-index", "value"): None,
            ("explain-poll", "n_intervals"): 1, ("upload-checked", "data"): None, ("compare", "value"): key,
            ("compare-poll", "n_intervals"): 1, ("compare-ready", "data"): f"{key}|{key}|auto",
            ("compare-selection", "data"): {"side": "a", "concept": 0}, ("compare-projection", "clickData"): None,
            ("compare-graph", "tapNodeData"): None, ("compare-row", "data"): None,
            ("compare-page", "data"): 0, ("compare-sort", "data"): None, ("compare-layer", "value"): None,
            ("compare-prev", "n_clicks"): 1, ("compare-next", "n_clicks"): 1, ("checkpoint", "value"): 0,
            ("compare-category", "value"): ["shared"], ("projection-show", "value"): ["labels", "density", "class"],
            ("projection", "relayoutData"): {"xaxis.range[0]": -1, "xaxis.range[1]": 1, "yaxis.range[0]": -1,
                                             "yaxis.range[1]": 1}}


def outputs_of(key: str) -> list[dict]:
    parts = key[2:-2].split("...") if key.startswith("..") else [key]
    return [dict(zip(("id", "property"), part.split(".", 1))) for part in parts]


def resident_megabytes() -> float:
    return int(re.search(r"VmRSS:\s+(\d+)", open("/proc/self/status").read()).group(1)) / 1024


def test_hostile_payloads_on_every_callback(small_fashion_run, capfd):
    _config, execution, manifest = small_fashion_run
    app = create_app(execution.cache, manifest["key"])
    client = app.server.test_client()
    assert client.get("/").status_code == 200
    base = valid_inputs(manifest["key"])
    callbacks = [(key, entry) for key, entry in app.callback_map.items() if "callback" in entry]
    assert len(callbacks) >= 15
    before, sent, slowest = resident_megabytes(), 0, 0.0
    for key, entry in callbacks:
        outputs = outputs_of(key)
        slots = [("inputs", item) for item in entry["inputs"]] + [("state", item) for item in entry["state"]]
        for fuzzed_kind, fuzzed in slots:
            for hostile in HOSTILE:
                payload = {"output": key, "outputs": outputs if len(outputs) > 1 else outputs[0],
                           "changedPropIds": [f"{fuzzed['id']}.{fuzzed['property']}"]}
                for kind in ("inputs", "state"):
                    payload[kind] = [{**item, "value": hostile if item is fuzzed else base[(item["id"], item["property"])]}
                                     for item in entry[kind]]
                started = time.perf_counter()
                response = client.post("/_dash-update-component", json=payload)
                seconds = time.perf_counter() - started
                slowest = max(slowest, seconds)
                sent += 1
                assert response.status_code < 500 and seconds < 1.0, (key, fuzzed, repr(hostile)[:80],
                                                                       response.status_code, seconds)
    missing_keys = {"output": callbacks[0][0], "outputs": outputs_of(callbacks[0][0]), "changedPropIds": []}
    for malformed in (missing_keys, {"output": "nope.value", "inputs": []}, [1, 2], "x",
                      {**missing_keys, "inputs": [{"id": "url", "property": "search", "value": 1}]}):
        assert client.post("/_dash-update-component", json=malformed).status_code == 400
    assert client.post("/_dash-update-component", data=b"x" * (3 * 2 ** 20)).status_code == 413
    big = {**missing_keys, "inputs": [{"id": "url", "property": "search", "value": "x" * 3 * 2 ** 20}]}
    assert client.post("/_dash-update-component", json=big).status_code == 413      # only an upload may be large
    assert client.post("/_dash-update-component", data=b"x" * (40 * 2 ** 20)).status_code == 413
    grown = resident_megabytes() - before
    errors = capfd.readouterr().err
    with capfd.disabled():
        print(f"\n{sent} hostile payloads, slowest {slowest * 1000:.0f} ms, resident memory grew {grown:.0f} MB")
    assert sent >= 500 and grown < 100
    assert "Traceback" not in errors and "answered with no update" not in errors, errors[-3000:]
    assert math.isfinite(slowest)


@pytest.mark.parametrize("query", ["?threshold=nan", "?threshold=-inf", "?select=" + "conv2:1," * 5000,
                                   "?" + "&".join(f"k{i}=v" for i in range(100))])
def test_hostile_urls_keep_the_view_usable(small_fashion_run, query):
    _config, execution, manifest = small_fashion_run
    app = create_app(execution.cache, manifest["key"])
    client = app.server.test_client()
    key = next(k for k in app.callback_map if k.startswith("..run.value"))
    payload = {"output": key, "outputs": outputs_of(key), "changedPropIds": ["url.pathname"],
               "inputs": [{"id": "url", "property": "pathname", "value": "/"},
                          {"id": "ready", "property": "data", "value": None}],
               "state": [{"id": "url", "property": "search", "value": query}]}
    response = client.post("/_dash-update-component", json=payload)
    assert response.status_code == 200
    restored = response.get_json()["response"]
    assert restored["run"]["value"] == manifest["key"] and 0 <= restored["threshold"]["value"] <= 1
    assert len(restored["selection"]["data"]["nodes"]) <= 50
