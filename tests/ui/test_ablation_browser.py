"""'Test this concept' in a real browser: the progress while the job runs, other interactions answered meanwhile
(their latency printed), the result, the URL, the stored result shown again without a job, Cancel, and the job on
gunicorn outside its request workers, with two users explaining images there at once."""
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import diskcache
import psutil
import pytest

from neurocarto.store import explain_queue
from neurocarto.store.disk import JsonOnlyDisk
from neurocarto.testing.browser import CY, SHOTS, node_point, open_page, wait_graph
from neurocarto.testing.serving import ROOT, free_port



def untested_node(page, skip=()) -> str:
    """A graph node whose test has no stored result (the panel offers to run it)."""
    for node in page.evaluate(f"() => {CY}.nodes('[score]').map(n => n.id())"):
        if node in skip:
            continue
        page.mouse.click(*node_point(page, node))
        page.wait_for_function("(id) => document.querySelector('#examples').innerText.includes(id)", arg=node)
        page.wait_for_selector("#test-view .test-hint, #test-view .test-headline")
        if page.locator("#test-view .test-hint").count():
            return node
        page.mouse.click(*node_point(page, node))        # release it
    raise AssertionError("every node has a stored test")


def timed(page, action, condition: str, arg=None) -> float:
    started = time.perf_counter()
    action()
    try:
        page.wait_for_function(condition, arg=arg, timeout=30000)
    except Exception:
        page.screenshot(path=SHOTS / "debug-timed.png")
        raise AssertionError(f"not answered: {condition} (url {page.url})")
    return time.perf_counter() - started


def command_of(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:        # ended, or a zombie
        return []


def job_processes(parent: psutil.Process) -> list:
    """The process's descendants still alive (a test's job runs in one of the server's), but the spare explain
    worker the page keeps."""
    return [child for child in parent.children(recursive=True)
            if command_of(child) and "explain_worker" not in " ".join(command_of(child))]


def test_testing_a_concept_in_the_browser(server, browser):
    base, manifest = server
    page = open_page(browser, f"{base}/?run={manifest['key']}&class=Coat")
    wait_graph(page)
    node = untested_node(page)
    page.check("#test-method input[value=mean]")
    polls = []
    page.on("request", lambda request: polls.append(request.url) if "cacheKey=" in request.url else None)

    started = time.perf_counter()
    page.click("#test-run")
    page.wait_for_selector("#test-progress-box", state="visible")
    assert page.is_disabled("#test-run") and not page.is_disabled("#test-cancel")
    page.wait_for_function("() => document.getElementById('test-status').innerText !== ''")
    page.screenshot(path=SHOTS / "24-concept-test-running.png")
    # other interactions while it runs: each timed, and counted if the test was still running when it was answered
    points = "() => document.querySelector('#projection .js-plotly-plot')._fullData.reduce((s, t) => s + t.x.length, 0)"
    before = page.evaluate(points)
    interactions = [
        ("projection filter", lambda: page.check("#projection-filter input[value=class]"),
         f"(before) => ({points})() < before", before),
        ("cascade", lambda: page.click("#mode input"), f"() => {CY}.nodes('.chain').length >= 1", None),
        ("threshold", lambda: page.locator("#threshold [role=slider]").first.press("ArrowRight"),
         "() => location.search.includes('threshold=0.05')", None)]
    latency = {}
    for name, action, condition, arg in interactions:
        seconds = timed(page, action, condition, arg)
        if page.is_visible("#test-progress-box"):
            latency[name] = seconds
    assert latency, "the test ended before any other interaction was answered"
    page.wait_for_selector("#test-view .test-headline", timeout=120000)
    first_result = time.perf_counter() - started
    page.wait_for_selector("#test-progress-box", state="hidden")
    headline = page.inner_text("#test-view .test-headline")
    assert headline.startswith("Coat accuracy") and "random sets" in headline
    assert "set to the mean on 1,000 held-out images" in page.inner_text("#test-view h3")
    assert page.locator("#test-view .js-plotly-plot .bars path").count() >= 10
    page.wait_for_url(lambda url: "test=mean" in url)
    page.screenshot(path=SHOTS / "25-concept-test-result.png")

    # the shared URL shows the stored result at once; asking again runs no job
    other = open_page(browser, page.url)
    other.wait_for_selector("#test-view .test-headline", timeout=30000)
    assert other.inner_text("#test-view .test-headline") == headline
    polls.clear()
    second = timed(other, lambda: other.click("#test-run"), "() => !document.getElementById('test-run').disabled")
    other.wait_for_timeout(500)
    assert not polls and other.is_hidden("#test-progress-box")

    # Cancel ends the job's process
    port = base.rsplit(":", 1)[1]
    server_process = next(p for p in job_processes(psutil.Process()) if port in command_of(p))
    page.check("#test-method input[value=zero]")
    page.wait_for_selector("#test-view .test-hint")
    page.click("#test-run")
    page.wait_for_selector("#test-progress-box", state="visible")
    page.click("#test-cancel")
    page.wait_for_selector("#test-progress-box", state="hidden", timeout=30000)
    assert not page.is_disabled("#test-run") and page.locator("#test-view .test-hint").count()
    deadline = time.time() + 15
    while job_processes(server_process) and time.time() < deadline:
        time.sleep(0.2)
    assert not job_processes(server_process)
    page.screenshot(path=SHOTS / "26-concept-test-cancelled.png")
    print(f"\nconcept test of {node} (mean): first result {first_result:.1f} s; while it ran: "
          + ", ".join(f"{name} {seconds * 1000:.0f} ms" for name, seconds in latency.items())
          + f"; stored result asked again {second * 1000:.0f} ms, no job")


def test_on_gunicorn_tests_and_explanations_run_outside_the_request_workers(small_fashion_run, fashion_store_as_computed,
                                                                              browser, tmp_path):
    """On a store of its own: another server of the same store would share its explain workers."""
    pytest.importorskip("gunicorn")
    _config, _execution, manifest = small_fashion_run
    port = free_port()
    log = open(tmp_path / "gunicorn.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}", "app:server"],
                              cwd=ROOT, env={**os.environ, "NEUROCARTO_CACHE": str(fashion_store_as_computed)}, stdout=log,
                              stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        page = open_page(browser, f"{base}/?run={manifest['key']}&class=Bag")
        wait_graph(page)
        untested_node(page)
        page.click("#test-run")
        page.wait_for_function("() => document.getElementById('test-status').innerText.includes('batch')",
                               timeout=60000)
        workers = psutil.Process(server.pid).children()
        ablating = [p for w in workers for p in job_processes(w) if "neurocarto.analysis.ablation_worker" in command_of(p)]
        assert len(workers) == 2 and len(ablating) == 1 and ablating[0] not in workers
        page.wait_for_selector("#test-view .test-headline", timeout=120000)
        assert page.inner_text("#test-view .test-headline").startswith("Bag accuracy")
        page.screenshot(path=SHOTS / "27-concept-test-gunicorn.png")

        # two users explaining different images at once: each gets their own, from one warm worker of the run
        users = [(page, "3"), (open_page(browser, f"{base}/?run={manifest['key']}&class=Bag"), "8")]
        for user, image in users:
            user.fill("#explain-index", image)
        for user, _image in users:
            user.click("#explain-go")
        for user, image in users:
            user.wait_for_function("(image) => location.search.includes('image=' + image) && document.getElementById("
                                   "'explain-prediction').innerText.startsWith('image ' + image + ' · true class ')",
                                   arg=image, timeout=60000)
        explaining = {p.pid for w in workers for p in w.children(recursive=True)
                      if "neurocarto.analysis.explain_worker" in command_of(p)}
        jobs = diskcache.Cache(str(fashion_store_as_computed / "background"), disk=JsonOnlyDisk)
        run_worker = explain_queue.state(jobs, manifest["key"])["pid"]
        assert run_worker in explaining and explaining <= {run_worker, explain_queue.spare(jobs)}     # and a spare
        assert not explaining & {w.pid for w in workers}
        for worker in workers:       # the web workers never load torch
            assert "libtorch" not in open(f"/proc/{worker.pid}/maps").read()
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    assert "Traceback" not in (tmp_path / "gunicorn.log").read_text()
