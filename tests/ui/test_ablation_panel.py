"""The app's "test this concept" action called as functions: the job, its progress, the result kept in the store and
read at once after, its equality with a direct ablation, the message when the model or data are missing, the cap
on running tests, and a background cache that holds JSON only."""
import os

import numpy as np
import pytest
from dash import no_update

import neurocarto as nc
from neurocarto.analysis.ablation import ablate, prepared_for
from neurocarto.store.ablation_results import store_result, stored_baseline, stored_result
from neurocarto.store.disk import JsonOnlyDisk, Store, UnsafeRow
from neurocarto.ui import ablation_jobs, ablation_panel, callbacks
from neurocarto.ui.app import Catalog

NO_SELECTION = {"nodes": [], "neuron": None, "neurons": []}


@pytest.fixture(scope="module", autouse=True)
def fewer_images():
    """Tests of 300 images (the job reads the count from its spec, as it reads every setting)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ablation_panel, "TEST_IMAGES", 300)
        yield


@pytest.fixture(scope="module")
def catalog(small_fashion_run):
    _config, execution, _manifest = small_fashion_run
    with Store(execution.cache) as store:
        yield Catalog(store)


def test_a_test_runs_once_reports_progress_and_is_read_after(catalog):
    run = catalog.get(catalog.keys[0])
    graph = run.graph(4, "auto")
    node = max(graph["nodes"], key=lambda n: (len(n["members"]), n["score"]))
    selection = {"nodes": [node["id"]], "neuron": 3, "neurons": [5, 3]}
    style, hint = ablation_panel.show_test(catalog, run.key, 4, "auto", selection, "zero", None, [])
    assert style == {} and f"these {len(set(node['members']) | {3, 5})} neurons" in hint.children

    name, done = ablation_panel.request_test(catalog, 1, run.key, 4, "auto", selection, "zero")
    assert done is no_update and name.startswith("ablation/")
    spec = ablation_jobs.get_spec(catalog.jobs, name)
    assert spec["neurons"] == sorted(set(node["members"]) | {3, 5}) and spec["method"] == "zero"
    steps = []
    assert ablation_panel.run_test(catalog, steps.append, name) == {"name": name, "error": None}
    assert steps[0][:2] == (0, 1) and "loading" in steps[0][2]
    assert [s[0] for s in steps[1:]] == list(range(1, steps[-1][1] + 1)) and steps[-1][0] == steps[-1][1]

    stored = stored_result(run, name)
    direct = ablate(prepared_for(run), np.array(spec["neurons"]), "zero", ablation_panel.TEST_IMAGES,
                    ablation_panel.RANDOM_SETS, ablation_panel.SEED)
    assert stored["held_out"] and stored["images"] == ablation_panel.TEST_IMAGES
    assert [c["accuracy_after"] for c in stored["classes"]] == pytest.approx(direct.accuracy_after.tolist())
    assert np.allclose(stored["random_accuracy_after"], direct.random_accuracy_after)

    # a second test of the run reuses the stored unablated pass: fewer batches, the same as a direct ablation
    assert stored_baseline(run, "zero", ablation_panel.TEST_IMAGES, ablation_panel.SEED) is not None
    other, _ = ablation_panel.request_test(catalog, 1, run.key, 4, "auto", NO_SELECTION | {"neuron": 11}, "zero")
    steps_again = []
    assert ablation_panel.run_test(catalog, steps_again.append, other)["error"] is None
    batches = -(-ablation_panel.TEST_IMAGES // 256)       # (another test of this run may have stored it first)
    assert steps[-1][1] in (batches * (2 + ablation_panel.RANDOM_SETS), batches * (1 + ablation_panel.RANDOM_SETS))
    assert steps_again[-1][1] == batches * (1 + ablation_panel.RANDOM_SETS)
    direct = ablate(prepared_for(run), np.array([11]), "zero", ablation_panel.TEST_IMAGES, ablation_panel.RANDOM_SETS,
                    ablation_panel.SEED)
    assert [c["accuracy_after"] for c in stored_result(run, other)["classes"]] == pytest.approx(
        direct.accuracy_after.tolist())

    style, view = ablation_panel.show_test(catalog, run.key, 4, "auto", selection, "zero", None, [])
    assert "Coat" in str(view[1].children[0].children)
    assert "accuracy" in view[1].children[1].children and view[2].figure["data"][0]["x"]
    # asked again: read from the store, no job; the same through the Python API
    assert ablation_panel.request_test(catalog, 2, run.key, 4, "auto", selection, "zero") == (
        no_update, {"name": name, "error": None})
    again = nc.ablate(run, [run.neuron_ids[n] for n in spec["neurons"]], images=ablation_panel.TEST_IMAGES)
    assert again.accuracy_after.tolist() == pytest.approx([c["accuracy_after"] for c in stored["classes"]])
    # the URL carries it
    url = callbacks.to_url(catalog, run.key, 4, 0, [], [], "auto", "summary", selection, "zero", None)
    assert "test=zero" in url and callbacks.restore(catalog, "/", None, url)[-5] == "zero"
    assert callbacks.restore(catalog, "/", None, url.replace("test=zero", "test=mean"))[-5] == "mean"


def test_another_class_redraws_the_panel_only_where_it_depends_on_the_class(catalog, monkeypatch):
    run = catalog.get(catalog.keys[0])
    monkeypatch.setattr(ablation_panel, "triggered", lambda: {"class.value"})
    untested = NO_SELECTION | {"neuron": 7}
    assert ablation_panel.show_test(catalog, run.key, 2, "auto", untested, "zero", None, []) == (no_update, no_update)
    assert ablation_panel.show_test(catalog, run.key, 2, "auto", NO_SELECTION, "zero", None, []) == (
        no_update, no_update)
    node = run.graph(2, "auto")["nodes"][0]      # a node's members are the class graph's: read again
    assert ablation_panel.show_test(catalog, run.key, 2, "auto", NO_SELECTION | {"nodes": [node["id"]]}, "zero",
                                    None, [])[0] == {}
    result = {"neurons": [7], "method": "zero", "images": 300, "held_out": True, "classes": [
        {"class": name, "accuracy_before": 0.5, "accuracy_after": 0.25, "logit_before": 1.0, "logit_after": 0.5,
         "random_drop_mean": 0.1, "random_drop_std": 0.01} for name in run.class_names]}
    monkeypatch.setattr(ablation_panel, "stored_result", lambda _run, _name: result)
    style, view = ablation_panel.show_test(catalog, run.key, 2, "auto", untested, "zero", None, [])
    assert style == {} and run.class_names[2] in str(view[1].children[0].children)     # a result: the class's row


def test_nothing_selected_hides_the_action_and_unknown_jobs_do_nothing(catalog):
    run = catalog.get(catalog.keys[0])
    assert ablation_panel.show_test(catalog, run.key, 0, "auto", NO_SELECTION, "zero", None, [])[0] == {
        "display": "none"}
    assert ablation_panel.request_test(catalog, 1, run.key, 0, "auto", NO_SELECTION, "zero") == (no_update, no_update)
    from dash.exceptions import PreventUpdate
    for name in (None, "ablation/" + "0" * 32):
        with pytest.raises(PreventUpdate):
            ablation_panel.run_test(catalog, lambda _step: None, name)


def test_a_server_without_jobs_says_so_and_still_shows_stored_tests(small_fashion_run, fashion_store_as_computed):
    _config, _execution, manifest = small_fashion_run
    with Store(fashion_store_as_computed) as store:
        serving_only = Catalog(store, compute_jobs=False)
        run = serving_only.get(manifest["key"])
        untested = NO_SELECTION | {"neuron": 13}
        name, done = ablation_panel.request_test(serving_only, 1, run.key, 0, "auto", untested, "mean")
        assert name is no_update and "--no-jobs" in done["error"]
        assert "Not tested: this server runs no compute jobs" in str(
            ablation_panel.show_test(serving_only, run.key, 0, "auto", untested, "mean", done, [])[1])
        assert done["name"] == ablation_panel._test_of(serving_only, run.key, 0, "auto", untested, "mean")[2]
        store_result(run, done["name"], {})
        assert ablation_panel.request_test(serving_only, 1, run.key, 0, "auto", untested, "mean") == (
            no_update, {"name": done["name"], "error": None})


def test_a_full_server_says_to_wait(catalog):
    run = catalog.get(catalog.keys[0])
    selection = {"nodes": [], "neuron": 7, "neurons": []}
    name, _ = ablation_panel.request_test(catalog, 1, run.key, 0, "auto", selection, "mean")
    catalog.jobs.set(ablation_jobs.RUNNING, [os.getpid(), os.getppid()])      # two live processes
    try:
        outcome = ablation_panel.run_test(catalog, lambda _step: None, name)
    finally:
        catalog.jobs.delete("concept-test/running")
    assert outcome == {"name": name, "error": "2 tests are running on this server; try again when they finish."}
    style, message = ablation_panel.show_test(catalog, run.key, 0, "auto", selection, "mean", outcome, [])
    assert "Not tested: 2 tests are running" in message.children
    assert stored_result(run, name) is None


def test_without_the_runs_data_the_test_says_what_is_missing_and_the_rest_works(run_without_its_data, tmp_path):
    cache, key = run_without_its_data
    manifest, images = {"key": key}, tmp_path / "images"
    with Store(cache) as store:
        catalog = Catalog(store)
        selection = {"nodes": [], "neuron": 2, "neurons": []}
        name, _ = ablation_panel.request_test(catalog, 1, manifest["key"], 0, "auto", selection, "zero")
        outcome = ablation_panel.run_test(catalog, lambda _step: None, name)
        assert "needs run" in outcome["error"] and "model and data here" in outcome["error"]
        assert str(images) in outcome["error"]
        message = ablation_panel.show_test(catalog, manifest["key"], 0, "auto", selection, "zero", outcome, [])[1]
        assert message.children.startswith("Not tested: ")
        elements, _layout, title = callbacks.draw_graph(catalog, manifest["key"], 0, 0, [], "auto", selection,
                                                        "summary", None, [], None)
        assert elements and title == "Class graph: cat"
        assert callbacks.examples(catalog, manifest["key"], 0, "auto", selection)


def test_the_background_cache_holds_json_and_never_unpickles(tmp_path):
    import diskcache

    with diskcache.Cache(str(tmp_path / "background"), disk=JsonOnlyDisk) as jobs:
        jobs.set("a", {"neurons": [1, 2], "method": "zero"})
        jobs.set("b", [3, 4, "x"])
        assert jobs.get("a") == {"neurons": [1, 2], "method": "zero"} and jobs.get("b") == [3, 4, "x"]
        with pytest.raises(TypeError):
            jobs.set("c", object())
    canary = tmp_path / "fired"

    class Canary:
        def __reduce__(self):
            return open, (str(canary), "w")

    with diskcache.Cache(str(tmp_path / "background")) as raw:
        raw.set("a", Canary())
    with diskcache.Cache(str(tmp_path / "background"), disk=JsonOnlyDisk) as jobs:
        with pytest.raises(UnsafeRow):
            jobs.get("a")
    assert not canary.exists()
