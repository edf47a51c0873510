"""The first minutes in a real browser: `python app.py` on an empty store serves the page at once, shows the
precompute's stages advancing, then the views, with no reload; a killed precompute is shown with its command."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from neurocarto.store.disk import Store
from neurocarto.testing.browser import CY, SHOTS
from neurocarto.testing.serving import ROOT, start_app, stop_app
from neurocarto.testing.stores import copy_store
from neurocarto.ui.progress_view import progress_line, progress_panel, run_progress

SMALL = ["--max-images", "600", "--top-k", "20", "--batch-size", "100", "--quiet"]


def test_an_empty_store_shows_the_precompute_then_its_views(browser, tmp_path, fashion_available):
    process, base = start_app(["--cache", str(tmp_path / "cache"), *SMALL], tmp_path / "app.log")
    try:
        page = browser.new_context(viewport={"width": 1400, "height": 860}).new_page()
        page.goto(base + "/?class=Coat")
        page.evaluate("window.loadedOnce = true")          # gone if the page were reloaded
        page.wait_for_selector("#progress h2", timeout=60000)
        page.screenshot(path=SHOTS / "20-progress-starting.png")
        seen = set()
        deadline = time.time() + 600
        while time.time() < deadline and not page.evaluate(
                f"() => !!document.getElementById('graph')._cyreg && {CY}.nodes('[score]').length > 0"):
            states = page.evaluate("() => Array.from(document.querySelectorAll('.stage-row'))"
                                   ".map(r => r.className.replace('stage-row ', ''))")
            if states and tuple(states) not in seen:
                seen.add(tuple(states))
                page.screenshot(path=SHOTS / f"21-progress-{len(seen)}.png")
            page.wait_for_timeout(250)
        page.wait_for_function(f"() => {CY}.nodes('[score]').length > 0", timeout=30000)
        page.screenshot(path=SHOTS / "22-progress-then-views.png")
        done_counts = sorted({states.count("stage-done") for states in seen})
        assert any("stage-running" in states for states in seen), seen
        assert len(done_counts) >= 3, seen                   # the page moved through the stages by itself
        assert page.evaluate("window.loadedOnce === true")   # … without a reload
        assert page.is_hidden("#progress") and "class=Coat" in page.url and "run=" in page.url
        assert page.inner_text("#graph-title") == "Class graph: Coat"
    finally:
        stop_app(process, signal.SIGINT)
    assert "Traceback" not in (tmp_path / "app.log").read_text()


def test_a_killed_precompute_is_shown_with_the_command_that_resumes_it(browser, tmp_path, fashion_available):
    cache = tmp_path / "cache"
    command = [sys.executable, "-m", "neurocarto", "precompute", "--cache", str(cache), *SMALL]
    precompute = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    key = None
    while time.time() < deadline and precompute.poll() is None:
        with Store(cache) as store:
            runs = store.list_runs()
            if runs and runs[0][1] and runs[0][1]["stages"].get("embed", {}).get("status") == "running":
                key = runs[0][0]
                break
        time.sleep(0.2)
    os.kill(precompute.pid, signal.SIGKILL)
    precompute.wait()
    assert key is not None, "the precompute never reached its embed stage"
    process, base = start_app(["--cache", str(cache), "--run", key], tmp_path / "app.log")
    try:
        page = browser.new_context(viewport={"width": 1400, "height": 860}).new_page()
        page.goto(base + "/")
        page.wait_for_selector(".stage-problem", timeout=30000)
        page.screenshot(path=SHOTS / "23-progress-killed.png")
        text = page.inner_text("#progress")
        assert "stopped" in text and "python -m neurocarto precompute --cache" in text, text
        assert page.locator(".stage-done").count() == 2 and page.locator(".stage-stopped").count() == 1
        assert page.is_hidden("#views")
    finally:
        stop_app(process, signal.SIGINT)


def test_a_failed_stage_is_shown_with_its_message(tmp_path):
    """A stage that raised: its message, the stages after it waiting, the recorded command to resume."""
    with Store(tmp_path) as store:
        manifest = {"key": "k1", "name": "demo", "created": "2026-01-01", "config": {}, "counts": {},
                    "command": "python -m neurocarto precompute --data pics",
                    "stages": {"pass1": {"status": "done", "seconds": 12.0},
                               "cluster": {"status": "failed", "error": "no image is among the top images"}}}
        store.write_manifest(manifest)
        progress = run_progress(store, "k1")
    assert progress["state"] == "stopped" and progress["problem"] == "no image is among the top images"
    assert [s["state"] for s in progress["stages"]] == ["done", "failed", "waiting", "waiting", "waiting"]
    text = json.dumps(progress_panel(progress), default=lambda component: component.to_plotly_json())
    assert "python -m neurocarto precompute --data pics" in text and "done in 12 s" in text


def test_a_running_stage_shows_its_share_and_time_left(tmp_path):
    with Store(tmp_path) as store, store.writer("k2"):
        store.write_manifest({"key": "k2", "name": "demo", "created": "2026-01-01", "config": {}, "counts": {},
                              "stages": {"pass1": {"status": "running"}}})
        store.put_json("k2", "progress", {"stage": "pass1", "done": 300, "total": 1000, "unit": "img",
                                          "initial": 100, "started": 1000.0, "updated": 1010.0})
        progress = run_progress(store, "k2", now=1012.0)
    running = progress["stages"][0]
    assert progress["state"] == "computing" and running["share"] == 0.3
    assert running["eta"] == pytest.approx(700 * 10 / 200 - 2)      # 200 images in 10 s, 700 left, 2 s since
    line = progress_line(progress)[0]
    summary = line.children[0].children
    assert summary.startswith("demo computing: pass1 30% (300 of 1,000 img), about 33 s left")
    assert [child.children for child in line.children[1:2]] == [progress_panel(progress)[0].children]   # expands


def test_a_run_being_computed_beside_an_open_run_is_one_line(browser, small_fashion_run, tmp_path):
    """Another run of the store being written while a complete one is on screen: one line above the views, which
    expands on a click, and the graph keeps its room."""
    from neurocarto.testing.browser import wait_graph

    _config, execution, manifest = small_fashion_run
    cache = tmp_path / "cache"
    copy_store(execution.cache, cache)
    with Store(cache) as store, store.writer("k2"):
        store.write_manifest({"key": "k2", "name": "other-run", "created": "2026-01-01", "config": {}, "counts": {},
                              "stages": {"pass1": {"status": "running"}}})
        store.put_json("k2", "progress", {"stage": "pass1", "done": 300, "total": 1000, "unit": "images",
                                          "initial": 0, "started": time.time() - 10, "updated": time.time()})
        process, base = start_app(["--cache", str(cache), "--run", manifest["key"]], tmp_path / "app.log")
        try:
            page = browser.new_context(viewport={"width": 1600, "height": 900}).new_page()
            page.goto(base + f"/?run={manifest['key']}&class=Coat")
            page.wait_for_selector(".progress-line", timeout=30000)
            wait_graph(page)
            assert page.is_visible("#views") and "other-run computing: pass1 30%" in page.inner_text("#progress")
            assert page.locator("#progress").bounding_box()["height"] < 50
            page.screenshot(path=SHOTS / "24-progress-line.png")
            page.click(".progress-line summary")
            page.wait_for_function("() => document.querySelector('.progress-line').open")
            assert page.locator(".stage-running").count() == 1
        finally:
            stop_app(process, signal.SIGINT)
