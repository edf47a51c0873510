"""Explaining an image in the app, its callbacks called as functions with the real worker: a picked image queued for
the run's warm worker and shown when stored, a second image by the same process, an image asked again read at once,
the graph lit and the projection coloured by it, its images served, the URL, uploads good and bad, a server without
jobs, and a run whose model or data are not here."""
import base64
import io
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest
from dash import Patch, no_update
from PIL import Image

from neurocarto.store import explain_queue
from neurocarto.store.disk import Store
from neurocarto.store.explanations import stored_explained, stored_upload, upload_reference
from neurocarto.ui import callbacks, explain_panel
from neurocarto.ui.app import Catalog, create_app

NO_SELECTION = {"nodes": [], "neuron": None, "neurons": []}


@pytest.fixture(scope="module")
def catalog(fashion_store_as_computed):
    with Store(fashion_store_as_computed) as store:
        catalog = Catalog(store)
        yield catalog
        stop_workers(catalog)


def stop_workers(catalog) -> None:
    """End the run's worker and the store's spare, children of this process."""
    for key in catalog.keys:
        state = explain_queue.state(catalog.jobs, key)
        for pid in (state and state["pid"], explain_queue.spare(catalog.jobs)):
            if pid and psutil.pid_exists(pid):
                psutil.Process(pid).kill()


def finished(catalog, outputs, run_key, timeout=90):
    """A request's outputs if it was answered at once, else poll as the page does until the pending explanation is
    shown or refused: poll_explain's outputs."""
    pending = outputs[1]
    if pending is None:
        return outputs
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        outputs = explain_panel.poll_explain(catalog, 1, pending, run_key)
        if outputs[1] is None:
            return outputs
        time.sleep(0.05)
    raise AssertionError(f"no result within {timeout} s: {outputs}")


def data_url(image: Image.Image, kind: str = "PNG") -> dict:
    buffer = io.BytesIO()
    image.save(buffer, format=kind)
    return {"contents": f"data:image/{kind.lower()};base64," + base64.b64encode(buffer.getvalue()).decode(),
            "filename": f"mine.{kind.lower()}"}


def test_a_picked_image_is_explained_by_the_warm_worker_and_lights_the_views(catalog, monkeypatch):
    run = catalog.get(catalog.keys[0])
    shown, pending, polling_off, status, _class = explain_panel.request_explain(
        catalog, {"reference": "run:5", "switch": True}, None, None, run.key, None)
    assert shown is no_update and pending["reference"] == "run:5" and polling_off is False and "explaining" in status
    worker = explain_queue.state(catalog.jobs, run.key)["pid"]
    reference, pending, polling_off, status, predicted = finished(catalog, (shown, pending), run.key)
    explained = stored_explained(run, "run:5")
    assert (reference, pending, polling_off, status, predicted) == ("run:5", None, True, "", explained.predicted)
    assert explained.true_class == int(run.image_labels[5])

    started = time.perf_counter()       # a second image: the same process, the model not loaded again, answered
    assert explain_panel.request_explain(catalog, {"reference": "run:7", "switch": False}, None, None, run.key,
                                         None) == ("run:7", None, True, "", no_update)     # within the request
    second = time.perf_counter() - started
    state = explain_queue.state(catalog.jobs, run.key)
    assert state["pid"] == worker and state["state"] == "ready"
    again = explain_panel.request_explain(catalog, {"reference": "run:5", "switch": True}, None, None, run.key, None)
    assert again == ("run:5", None, True, "", explained.predicted)         # read, not queued
    assert explain_queue.queued(catalog.jobs, run.key) == []
    print(f"\nsecond image {second * 1000:.0f} ms through the warm worker")

    graph = run.graph(explained.predicted, "auto")
    elements, _layout, title = callbacks.draw_graph(catalog, run.key, explained.predicted, 0, [], "auto", NO_SELECTION,
                                                    "summary", None, [], "run:5")
    nodes = [e for e in elements if "lit" in e["data"]]
    assert title.endswith("lit by image 5") and len(nodes) == len([e for e in elements
                                                                              if "score" in e["data"]])
    members = {node["id"]: node["members"] for node in graph["nodes"]}
    for node in nodes:
        assert node["data"]["lit"] == pytest.approx(explained.percentiles[members[node["data"]["id"]]].mean(), abs=1e-3)
    assert any("chain" in e["classes"] for e in elements if "source" in e["data"])     # the image's path
    plain = callbacks.draw_graph(catalog, run.key, explained.predicted, 0, [], "auto", NO_SELECTION, "summary", None,
                                 [], None)[0]
    assert not any("lit" in e["data"] for e in plain)
    figure = callbacks.draw_projection(catalog, run.key, 0, "all", NO_SELECTION, [], [], "auto", "run:5")
    assert figure["data"][0]["marker"]["showscale"] and "bdata" in figure["data"][0]["marker"]["color"]
    for image, filter in (("run:5", "class"), (None, "all")):     # another image shown: the colours only, as a Patch
        full = callbacks.draw_projection(catalog, run.key, 0, filter, NO_SELECTION, [], [], "auto", image)
        with monkeypatch.context() as patch:
            patch.setattr(callbacks, "triggered", lambda: {"projection-image.data"})
            recoloured = callbacks.draw_projection(catalog, run.key, 0, filter, NO_SELECTION, [], [], "auto", image)
        assigned = {tuple(o["location"]): o["params"]["value"] for o in recoloured.to_plotly_json()["operations"]}
        assert assigned == {**{("data", i, "marker"): full["data"][i]["marker"] for i in range(len(run.layer_names))},
                            ("layout", "legend", "title", "text"): full["layout"]["legend"]["title"]["text"],
                            ("layout", "meta"): image} and full["layout"]["meta"] == image
    node = run.graph(1, "auto")["nodes"][0]
    for fired, filter, selection, expected in (      # another class: nothing, or the colours, unless drawn by class
            ({"class.value"}, "all", NO_SELECTION | {"neuron": 3}, "nothing"),
            ({"class.value", "projection-image.data"}, "clusters", NO_SELECTION, "colours"),
            ({"class.value"}, "class", NO_SELECTION, "figure"),
            ({"class.value"}, "all", NO_SELECTION | {"nodes": [node["id"]]}, "figure")):
        with monkeypatch.context() as patch:
            patch.setattr(callbacks, "triggered", lambda: fired)
            drawn = callbacks.draw_projection(catalog, run.key, 1, filter, selection, [], [], "auto", "run:5")
        kind = "nothing" if drawn is no_update else "colours" if isinstance(drawn, Patch) else "figure"
        assert kind == expected, (fired, filter, selection)

    style, base, heat, caption, prediction, remember = explain_panel.show_explanation(
        catalog, "run:5", run.key, 0, "auto", NO_SELECTION | {"neuron": 3}, {})
    assert remember.to_plotly_json()["operations"] == [{"operation": "Assign", "location": [f"{run.key}|run:5"],
                                                        "params": {"value": explained.predicted}}]
    assert explain_panel.show_explanation(catalog, "run:5", run.key, 0, "auto", NO_SELECTION | {"neuron": 3},
                                          {f"{run.key}|run:5": explained.predicted})[-1] is no_update
    assert style == {} and base == f"/explained/{run.key}/5.png" and heat == f"/heat/{run.key}/5/3.png"
    assert run.class_names[explained.true_class] in str(prediction) and "lit" in str(caption)
    client = create_app(catalog.store.directory, run.key).server.test_client()
    for url in (base, heat):
        answer = client.get(url)
        assert answer.status_code == 200 and Image.open(io.BytesIO(answer.data)).format == "PNG"
    assert Image.open(io.BytesIO(client.get(heat).data)).mode == "RGBA"
    for bad in (f"/explained/{run.key}/6.png", f"/explained/{run.key}/..%2F5.png", f"/heat/{run.key}/5/3.999999.png",
                f"/heat/{run.key}/5/{len(run.neuron_ids)}.png", f"/heat/{run.key}/5/0.{len(run.neuron_ids) - 1}.png",
                "/heat/nope/5/3.png"):
        assert client.get(bad).status_code == 404, bad

    url = callbacks.to_url(catalog, run.key, 0, 0, [], [], "auto", "summary", NO_SELECTION, "zero", "run:5")
    assert "image=5" in url
    assert callbacks.restore(catalog, "/", None, url)[-4] == {"reference": "run:5", "switch": False}
    assert callbacks.restore(catalog, "/", None, f"?run={run.key}&image=5")[-4]["switch"] is True
    message = callbacks.restore(catalog, "/", None, f"?run={run.key}&image=../x")[-1]
    assert "Unknown image “../x”" in message and "0 … 599" in message
    assert explain_panel.clear_explanation(catalog, 1)[:2] == (None, None)


def test_the_strip_offers_the_class_images_its_graph_holds_most(catalog):
    run = catalog.get(catalog.keys[0])
    for class_index in (0, 4):
        label, row = explain_panel.class_strip(catalog, run.key, class_index)
        assert label.children == f"or a {run.class_names[class_index]}:"
        assert 0 < len(row.children) <= explain_panel.STRIP_IMAGES
        for image, picked in zip(run.typical_images(class_index), row.children):
            neuron, rank = map(int, picked.src.removesuffix(".png").split("/")[-2:])
            assert int(picked.to_plotly_json()["props"]["data-image"]) == image[0] == run.top_images[neuron, rank]
            assert run.image_labels[image[0]] == class_index
    assert explain_panel.class_strip(catalog, "no-such-run", 0) == []


def test_the_spare_worker_becomes_the_next_runs_worker_and_is_replaced(catalog):
    """A page keeps one spare (torch imported); a run without a live worker takes it, answered within the request,
    and a new spare starts."""
    run = catalog.get(catalog.keys[0])
    explain_panel.prepare_spare(catalog, run.key)
    deadline = time.monotonic() + 60
    while explain_queue.spare(catalog.jobs, ready=True) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    spare = explain_queue.spare(catalog.jobs, ready=True)
    assert spare is not None and "--spare" in psutil.Process(spare).cmdline()
    explain_panel.prepare_spare(catalog, run.key)
    assert explain_queue.spare(catalog.jobs) == spare                      # one spare, not one a page
    state = explain_queue.state(catalog.jobs, run.key)
    if state is not None and psutil.pid_exists(state["pid"]):               # the run's worker ended (idle, say)
        psutil.Process(state["pid"]).kill()
        psutil.Process(state["pid"]).wait(10)
    started = time.perf_counter()
    outputs = explain_panel.request_explain(catalog, {"reference": "run:9", "switch": False}, None, None, run.key, None)
    assert finished(catalog, outputs, run.key)[0] == "run:9"
    seconds = time.perf_counter() - started                                 # the model only was loaded
    assert explain_queue.state(catalog.jobs, run.key)["pid"] == spare
    replacement = explain_queue.spare(catalog.jobs)
    assert replacement not in (None, spare) and psutil.pid_exists(replacement)
    print(f"\na run's first image through the spare: {seconds * 1000:.0f} ms")


def test_a_worker_whose_web_worker_has_gone_ends_at_once(catalog):
    orphan = subprocess.Popen([sys.executable, "-m", explain_panel.WORKER, str(catalog.store.directory), "--spare",
                               str(psutil.Process().ppid())])          # not its parent: as if the parent had died
    assert orphan.wait(60) == 0


def test_uploads_are_explained_and_bad_ones_refused_with_nothing_kept(catalog):
    run = catalog.get(catalog.keys[0])
    grey = Image.fromarray((np.random.default_rng(1).random((28, 28)) * 255).astype(np.uint8))
    upload = data_url(grey)
    content = base64.b64decode(upload["contents"].split(",", 1)[1])
    outputs = finished(catalog, explain_panel.request_explain(catalog, None, None, upload, run.key, None), run.key)
    reference = upload_reference(content)
    assert stored_upload(run, reference) == content
    assert outputs[0] == reference and stored_explained(run, reference).true_class is None

    rgb = data_url(Image.new("RGB", (28, 28), (200, 10, 10)))       # the model refuses it: nothing kept
    outputs = finished(catalog, explain_panel.request_explain(catalog, None, None, rgb, run.key, None), run.key)
    assert outputs[0] is no_update and "this run's images are 8-bit grey; this one is 8-bit RGB" in str(outputs[3])
    refused = upload_reference(base64.b64decode(rgb["contents"].split(",", 1)[1]))
    assert stored_upload(run, refused) is None and stored_explained(run, refused) is None

    png = base64.b64decode(upload["contents"].split(",", 1)[1])
    for contents, words in [
            ("data:image/png;base64," + base64.b64encode(png[:len(png) // 2]).decode(), "not a readable"),
            ("data:image/png;base64," + base64.b64encode(b"GIF89a" + bytes(100)).decode(), "not a readable"),
            ("data:text/plain;base64,!!!", "damaged"), ("nonsense", "did not arrive as a file"),
            ("data:image/png;base64," + "A" * (28 * 2 ** 20), "images up to 20 MB are taken")]:
        outputs = explain_panel.request_explain(catalog, None, None, {"contents": contents, "filename": "f"},
                                                run.key, None)
        assert outputs[:3] == (no_update, None, True) and words in str(outputs[3]), (contents[:40], outputs[3])
    outputs = explain_panel.request_explain(catalog, None, 1, None, run.key, None)
    assert "type an image index, 0 … 599" in str(outputs[3])
    outputs = explain_panel.request_explain(catalog, {"reference": "upload:" + "a" * 64, "switch": True}, None, None,
                                            run.key, None)
    assert "not in this store" in str(outputs[3])


def test_a_server_without_jobs_says_so_and_shows_what_is_stored(catalog):
    serving_only = Catalog(catalog.store, compute_jobs=False)
    run = serving_only.get(serving_only.keys[0])
    outputs = explain_panel.request_explain(serving_only, None, 2, None, run.key, 11)
    assert outputs[:3] == (no_update, None, True) and "--no-jobs" in str(outputs[3])
    assert stored_explained(run, "run:11") is None
    explained = explain_panel.request_explain(serving_only, {"reference": "run:5", "switch": True}, None, None,
                                              run.key, None)
    assert explained[0] == "run:5"      # explained before (by the test above, in this module's store)


def test_without_the_runs_model_or_data_the_panel_says_what_is_missing(run_without_its_data, tmp_path):
    cache, key = run_without_its_data
    manifest, images = {"key": key}, tmp_path / "images"
    with Store(cache) as store:
        catalog = Catalog(store)
        outputs = finished(catalog, explain_panel.request_explain(catalog, None, 1, None, manifest["key"], 2),
                           manifest["key"])
        stop_workers(catalog)
        assert "explanation needs run" in str(outputs[3]) and str(images) in str(outputs[3])
        assert callbacks.draw_graph(catalog, manifest["key"], 0, 0, [], "auto", NO_SELECTION, "summary", None, [],
                                    None)[0]
