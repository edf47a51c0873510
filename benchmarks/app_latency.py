"""Server time per app callback and time to first render in Chromium, on the default run and a 100K-neuron run.

    python benchmarks/app_latency.py [--cache cache] [--neurons 100000] [--repeats 30] [--compare-only]
    python benchmarks/app_latency.py --cache DIR --run RUN --class NAME      # one stored run only

For each run the real app (`python app.py --run KEY`) is started on 127.0.0.1 and driven by Playwright
(Debian's Chromium): first render is the time from navigation until both views are drawn (the first
load also loads the run into the server; later loads are warm). Then a user's interactions are played
(class switch through the search box, hover and click a graph node, move the score slider, move the
concept-granularity slider, hover and click a projection point), every Dash callback request they cause
is recorded, and each request is replayed --repeats times against the server: its p50/p95 is the server
time of that callback (localhost round trip included). A cut step is replayed at a different cut each
time (0.05, 0.06, …), so every replay regroups the graph instead of hitting a cache. An interaction's time is the sum over the callbacks it causes.
Baseline in the same run: the graph-node hover's projection request replayed as a whole-figure
redraw, which is what every hover cost before overlays were sent as a Patch.
The default run comes from the store under --cache (computed first if missing, ~4 min); the 100K-neuron
run is written by `neurocarto.testing.synthetic_run` into a temporary store. Last, the compare view: two synthetic
runs of as many neurons sharing planted concepts, compared, opened with compare=, a table row picked and a node of
the compare graph clicked, each request replayed the same way (opening replays every request of the page load).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from neurocarto.compute.pipeline import precompute
from neurocarto.config import ExecutionConfig, RunConfig
from neurocarto.store.disk import Store
from neurocarto.testing.browser import CY
from neurocarto.testing.serving import ROOT, start_app, stop_app
from neurocarto.testing.synthetic_run import write_synthetic_run
from neurocarto.ui.snapshot import CHROMIUM, CHROMIUM_FLAGS

PLOT = "document.querySelector('#projection .js-plotly-plot')"
READY = (f"() => {{ const e = document.getElementById('graph'); const g = {PLOT};"
         f" return e && e._cyreg && e._cyreg.cy.nodes('[score]').length > 0 && g && g._fullData"
         " && g._fullData.length > 0 ? performance.now() : false; }")


def first_render(browser, url: str, loads: int) -> list[float]:
    times = []
    for _ in range(loads):
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        page.goto(url)
        times.append(page.wait_for_function(READY, timeout=120000, polling="raf").json_value())
        page.close()
    return times


def recording_page(browser, url: str, first: str, ready: str, timeout: int):
    """A page opened at `url` whose callback request bodies are recorded under the interaction being played:
    (page, the recording, the name being played (a one-item list), act(name, action))."""
    page = browser.new_page(viewport={"width": 1600, "height": 900})
    recorded: dict[str, list[str]] = {}
    current = [first]
    page.on("request", lambda r: recorded.setdefault(current[0], []).append(r.post_data)
            if r.method == "POST" and "/_dash-update-component" in r.url else None)
    page.goto(url)
    page.wait_for_function(ready, timeout=timeout)
    page.wait_for_load_state("networkidle")

    def act(name: str, action) -> None:
        current[0] = name
        action()
        page.wait_for_load_state("networkidle")
        page.wait_for_timeout(300)

    return page, recorded, current, act


def record_interactions(browser, url: str, class_name: str) -> dict[str, list[str]]:
    """Play a session; return each interaction's callback request bodies, in order."""
    page, recorded, current, act = recording_page(browser, url, "load", READY, 120000)

    def switch_class():
        page.click("#class")
        page.wait_for_selector(".dash-dropdown-search")
        current[0] = "type-ahead (per keystroke)"
        page.keyboard.type(class_name[-3:], delay=150)
        page.wait_for_load_state("networkidle")
        current[0] = "class switch"
        page.locator(".dash-dropdown-options [role=option]").filter(has_text=class_name).first.click()
        page.wait_for_function(f"() => document.getElementById('graph-title').textContent.includes('{class_name}')")
        page.wait_for_function(READY)

    def node_position():
        node = page.evaluate(f"() => {{ const n = {CY}.nodes('.cluster'); return (n.length ? n : {CY}.nodes('[score]'))[0].id(); }}")
        box = page.locator("#graph").bounding_box()
        position = page.evaluate(f"(id) => {CY}.getElementById(id).renderedPosition()", node)
        return box["x"] + position["x"], box["y"] + position["y"]

    def point_position():
        return page.evaluate(f"""() => {{ const g = {PLOT}; const l = g._fullLayout, t = g._fullData[0];
            const box = g.getBoundingClientRect();
            return [box.left + l._size.l + l.xaxis.d2p(t.x[0]), box.top + l._size.t + l.yaxis.d2p(t.y[0])]; }}""")

    act("class switch", switch_class)
    x, y = node_position()
    act("hover graph node", lambda: page.mouse.move(x, y))
    act("click graph node", lambda: page.mouse.click(x, y))
    page.mouse.move(5, 5)
    page.wait_for_load_state("networkidle")

    def slide():
        page.locator("#threshold [role=slider]").first.focus()
        page.keyboard.press("ArrowRight")
    act("slider step", slide)

    def cut_step():
        page.locator("#cut [role=slider]").first.focus()
        page.keyboard.press("ArrowLeft")
    act("cut step (a new cut each replay)", cut_step)
    px, py = point_position()
    act("hover projection point", lambda: page.mouse.move(px, py))
    act("click projection point", lambda: page.mouse.click(px, py))
    page.close()
    recorded.pop("load", None)
    return recorded


def with_cut(body: str, repeat: int) -> str:
    """The request with the slider at another cut for every repeat (0.05, 0.06, …), so no cache answers it."""
    request = json.loads(body)
    for item in request.get("inputs", []) + request.get("state", []):
        if isinstance(item, dict) and item.get("id") == "cut-choice" and item.get("property") == "data":
            item["value"] = round(0.05 + 0.01 * (repeat % 56), 2)
    return json.dumps(request)


def replay(base: str, body: str, repeats: int, vary_cut: bool = False) -> tuple[list[float], int]:
    """Server round trips of one recorded callback request, in ms, and its response size."""
    times, size = [], 0
    for repeat in range(repeats + 1):
        data = with_cut(body, repeat) if vary_cut else body
        request = urllib.request.Request(base + "/_dash-update-component", data=data.encode(),
                                         headers={"Content-Type": "application/json"})
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=60) as response:
            size = len(response.read())
        times.append((time.perf_counter() - started) * 1000)
    return times[1:], size


def callback_name(body: str) -> str:
    output = json.loads(body)["output"].strip(".")
    return output.replace("...", " + ").split("@")[0]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_run(browser, cache: Path, key: str, label: str, class_name: str, repeats: int, loads: int,
              workdir: Path) -> list[str]:
    server, base = start_app(["--run", key, "--cache", str(cache)], workdir / f"{label}.log", ready="/_dash-layout",
                             timeout=120)
    rows = []
    try:
        url = f"{base}/?run={key}"
        renders = first_render(browser, url, loads)
        rows.append(f"| {label} | first render in Chromium, cold (loads the run) | | {renders[0]:.0f} | | |")
        rows.append(f"| {label} | first render in Chromium, warm (median of {loads - 1}) | | "
                    f"{statistics.median(renders[1:]):.0f} | | |")
        for interaction, bodies in record_interactions(browser, url, class_name).items():
            vary_cut = interaction.startswith("cut step")
            per_callback = [(callback_name(body), *replay(base, body, repeats, vary_cut)) for body in bodies]
            totals = [sum(times[i] for _, times, _ in per_callback) for i in range(repeats)]
            worst = max(per_callback, key=lambda item: percentile(item[1], 0.95))
            rows.append(f"| {label} | {interaction} | {len(bodies)} | {percentile(totals, 0.5):.1f} | "
                        f"{percentile(totals, 0.95):.1f} | {worst[0]}: p95 {percentile(worst[1], 0.95):.1f} ms, "
                        f"{worst[2] / 1e3:.0f} kB |")
            if interaction == "hover graph node":     # baseline: the same hover redrawing the whole scatter
                body = json.loads(next(b for b in bodies if callback_name(b) == "projection.figure"))
                body["changedPropIds"] = ["run.value"]
                times, size = replay(base, json.dumps(body), repeats)
                rows.append(f"| {label} | hover graph node, whole figure instead of the overlay patch (baseline) | 1 | "
                            f"{percentile(times, 0.5):.1f} | {percentile(times, 0.95):.1f} | projection.figure: "
                            f"{size / 1e3:.0f} kB |")
    except Exception:
        print((workdir / f"{label}.log").read_text()[-4000:], file=sys.stderr)
        raise
    finally:
        stop_app(server)
    return rows


COMPARE_READY = ("() => { const e = document.getElementById('compare-graph');"
                 " const g = document.querySelector('#compare-projection .js-plotly-plot');"
                 " return e && e._cyreg && e._cyreg.cy.nodes('[score]').length > 0 && g && g._fullData"
                 " && g._fullData.length > 0 && document.querySelectorAll('#compare-table tr[data-concept]').length > 2"
                 " ? performance.now() : false; }")


def record_compare(browser, url: str) -> dict[str, list[str]]:
    """Play a session in the compare view; return each interaction's callback request bodies, in order."""
    page, recorded, _current, act = recording_page(browser, url, "open the compare view", COMPARE_READY, 300000)

    act("sort the table by size", lambda: page.click("#compare-table th[data-sort='size']"))
    act("pick a table row", lambda: page.locator("#compare-table tr[data-concept]").nth(1).click())
    cy = "document.getElementById('compare-graph')._cyreg.cy"
    node = page.evaluate(f"() => {cy}.nodes('[score]')[0].id()")
    box = page.locator("#compare-graph").bounding_box()
    position = page.evaluate(f"(id) => {cy}.getElementById(id).renderedPosition()", node)
    act("click a node of the compare graph", lambda: page.mouse.click(box["x"] + position["x"],
                                                                      box["y"] + position["y"]))
    page.close()
    return recorded


def bench_compare(browser, workdir: Path, neurons: int, repeats: int) -> list[str]:
    """Two synthetic runs of `neurons` sharing planted concepts, compared, then the compare view's callbacks."""
    from neurocarto.store.comparisons import compare
    from neurocarto.store.disk import Store
    from neurocarto.store.stored_run import StoredRun
    from neurocarto.testing.synthetic_run import planted_top_images

    cache = workdir / "compare-store"
    keys = [write_synthetic_run(cache, neurons, top_images=sets, seed=seed, key=f"synthetic-{'ab'[seed]}")
            for seed, sets in enumerate(planted_top_images(neurons))]
    started = time.perf_counter()
    with Store(cache) as store:
        compare(StoredRun(store, keys[0]), StoredRun(store, keys[1]))
    label = f"compare 2 × {neurons:,}"
    rows = [f"| {label} | the comparison computed and stored (once; `compare`) | | "
            f"{(time.perf_counter() - started) * 1000:.0f} | | |"]
    server, base = start_app(["--run", keys[0], "--cache", str(cache)], workdir / "compare.log",
                             ready="/_dash-layout", timeout=120)
    try:
        for interaction, bodies in record_compare(browser, f"{base}/?run={keys[0]}&class=class%20123"
                                                           f"&compare={keys[1]}").items():
            per_callback = [(callback_name(body), *replay(base, body, repeats)) for body in bodies]
            totals = [sum(times[i] for _, times, _ in per_callback) for i in range(repeats)]
            worst = max(per_callback, key=lambda item: percentile(item[1], 0.95))
            rows.append(f"| {label} | {interaction} | {len(bodies)} | {percentile(totals, 0.5):.1f} | "
                        f"{percentile(totals, 0.95):.1f} | {worst[0]}: p95 {percentile(worst[1], 0.95):.1f} ms, "
                        f"{worst[2] / 1e3:.0f} kB |")
    except Exception:
        print((workdir / "compare.log").read_text()[-4000:], file=sys.stderr)
        raise
    finally:
        stop_app(server)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=ROOT / "cache", help="store holding (or to hold) the default run")
    parser.add_argument("--neurons", type=int, default=100_000, help="size of the synthetic run")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--loads", type=int, default=4, help="page loads for first render (the first is cold)")
    parser.add_argument("--compare-only", action="store_true", help="only the compare view's two synthetic runs")
    parser.add_argument("--run", default=None, help="only this run of --cache (name, key or key prefix)")
    parser.add_argument("--class", dest="class_name", default=None, help="with --run: the class switched to")
    args = parser.parse_args()
    if args.run and not args.class_name:
        parser.error("--run needs --class: the class the interactions switch to")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as temporary:
        workdir = Path(temporary)
        runs = []
        if args.run:
            with Store(args.cache) as store:
                key = store.resolve(args.run)
                manifest = store.manifest(key)
            runs = [(args.cache, key, f"{manifest['name']} ({manifest['counts']['neurons']:,} units)", args.class_name)]
        elif not args.compare_only:
            default = precompute(RunConfig(), ExecutionConfig(cache=args.cache))
            started = time.perf_counter()
            synthetic = write_synthetic_run(workdir / "store", args.neurons)
            print(f"synthetic run of {args.neurons:,} neurons written in {time.perf_counter() - started:.0f} s",
                  flush=True)
            runs = [(args.cache, default["key"], f"default ({default['counts']['neurons']:,} neurons)", "Sneaker"),
                    (workdir / "store", synthetic, f"synthetic ({args.neurons:,} neurons)", "class 123")]
        print("| run | interaction | callbacks | p50 ms | p95 ms | slowest callback (p95, response size) |")
        print("|---|---|---:|---:|---:|---|")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                                 args=list(CHROMIUM_FLAGS))
            for cache, key, label, class_name in runs:
                for row in bench_run(browser, cache, key, label, class_name, args.repeats, args.loads, workdir):
                    print(row, flush=True)
            for row in [] if args.run else bench_compare(browser, workdir, args.neurons, args.repeats):
                print(row, flush=True)
            browser.close()


if __name__ == "__main__":
    main()
