"""Explaining an image in the app, in a browser: click on an example patch → the class graph lit by that image.

    python benchmarks/explain_speed.py [--run RUN] [--cache cache] [--images 5]

Serves `python app.py --run RUN` on a free 127.0.0.1 port and drives Debian's Chromium (Playwright), timing on the
page's clock from a click on an example patch until the graph's title names its image and the heat map has loaded.
Neurons are a seeded choice whose top images no one has explained yet.
- First image of a run: the run's worker is ended (as when it ends idle) and the store's spare kept, as a server
  that has run a while has one (the page starts it when none is alive); the click makes the spare the run's worker,
  which loads the model.
- Next image: the neuron's second patch, through the worker now warm. Asked again: the first patch again (stored:
  read, no job); then also until the projection is coloured by it (the page colours it once the lit graph and the
  heat map are on screen). Each is clicked once the image before is on screen with the projection coloured by it, as
  a person reads one result before picking the next.
- No spare: every explain worker ended just before the click, so the worker starts from nothing and imports torch.
  Meanwhile the projection filter is toggled every half second, as a person might, each answer timed, against the
  same toggles with nothing being explained, in the same run: on the page (until the drawn points change) and on the
  server (its request's round trip on localhost, the measure of app_latency.py).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import psutil

from neurocarto.testing.browser import percentiles, toggle_filter
from neurocarto.testing.serving import start_app, stop_app

# Clicks the patch of an image in the page and times, on the page's clock from the click, until the graph's title
# names the image and its heat map has loaded (checked every animation frame); the result lands in window.timing, and
# the time until the projection is coloured by the image in window.projectionTiming.
CLICK_AND_TIME = """(image) => {
    window.timing = null;
    const title = document.getElementById('graph-title'), heat = document.getElementById('explain-heat');
    const start = performance.now();
    const check = () => {
        if (title.innerText.endsWith('lit by image ' + image) && heat.src.includes('/heat/')
                && heat.src.includes('/' + image + '/') && heat.complete && heat.naturalWidth > 0) {
            window.timing = (performance.now() - start) / 1000;
        } else {
            requestAnimationFrame(check);
        }
    };
    window.projectionTiming = null;     // until the projection is coloured by the image (it follows the rest)
    const projection = document.querySelector('#projection .js-plotly-plot');
    const coloured = () => {
        if (projection.layout && projection.layout.meta === 'run:' + image) {
            window.projectionTiming = (performance.now() - start) / 1000;
        } else if (performance.now() - start < 10000) {
            requestAnimationFrame(coloured);
        }
    };
    document.querySelector("#examples img.pickable[data-image='" + image + "']").click();
    requestAnimationFrame(check);
    requestAnimationFrame(coloured);
}"""


def fresh_neurons(run_reference: str | None, cache: str, count: int, seed: int = 0) -> tuple[str, list[tuple]]:
    """(run key, [(neuron id, its first patch's image, its second's)]): neurons whose two first top images are
    distinct, explained by no one yet, and used by no other trial."""
    import neurocarto as nc
    from neurocarto.store.explanations import run_image, stored_explained

    run = nc.open_run(run_reference, cache=cache)
    used, chosen = set(), []
    for neuron in np.random.default_rng(seed).permutation(len(run.neuron_ids)):
        first, second = (int(i) for i in run.top_images[neuron, :2])
        if first == second or {first, second} & used or any(
                stored_explained(run, run_image(i)) is not None for i in (first, second)):
            continue
        used |= {first, second}
        chosen.append((run.neuron_ids[neuron], first, second))
        if len(chosen) == count:
            break
    return run.key, chosen


def end_workers(cache: str, run_key: str, spare_too: bool) -> None:
    """End the run's warm worker (as when it ended idle), and the store's spare too if `spare_too`."""
    import diskcache

    from neurocarto.store import explain_queue
    from neurocarto.store.disk import JsonOnlyDisk

    jobs = diskcache.Cache(f"{cache}/background", disk=JsonOnlyDisk)
    state = explain_queue.state(jobs, run_key)
    for pid in (state and state["pid"], spare_too and explain_queue.spare(jobs)):
        try:
            if pid:
                psutil.Process(pid).kill()
                psutil.Process(pid).wait(10)
        except psutil.Error:
            pass
    jobs.close()


def wait_for_spare(cache: str, timeout: float = 60) -> None:
    """Until the store's spare has torch imported, as it has on a server that has run a while."""
    import diskcache

    from neurocarto.store import explain_queue
    from neurocarto.store.disk import JsonOnlyDisk

    jobs = diskcache.Cache(f"{cache}/background", disk=JsonOnlyDisk)
    deadline = time.monotonic() + timeout
    while explain_queue.spare(jobs, ready=True) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    jobs.close()


class FilterRequests:
    """Round trips (s) of the requests the projection filter sends, filed under the phase current when each was sent."""

    def __init__(self, page):
        self.phase: str | None = None
        self.times: dict[str, list[float]] = {"idle": [], "during": []}
        self.sent: dict = {}
        page.on("request", self.record_sent)
        page.on("requestfinished", self.record_finished)

    def record_sent(self, request) -> None:
        if self.phase and '"projection-filter.value"' in (request.post_data or ""):
            self.sent[request] = self.phase

    def record_finished(self, request) -> None:
        phase = self.sent.pop(request, None)
        if phase and request.timing["responseEnd"] >= 0:
            self.times[phase].append(request.timing["responseEnd"] / 1000)


COLOURED_BY = """(image) => {
    const projection = document.querySelector('#projection .js-plotly-plot');
    return Boolean(projection.layout && projection.layout.meta === 'run:' + image);
}"""


def explain(page, image: int, timeout: int = 120000) -> float:
    """Click the patch of `image`; seconds until the graph is lit by it and its heat map has loaded."""
    page.evaluate(CLICK_AND_TIME, str(image))
    page.wait_for_function("() => window.timing !== null", timeout=timeout)
    return page.evaluate("() => window.timing")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default=None, help="name, key or key prefix (default: the newest complete run)")
    parser.add_argument("--cache", default="cache")
    parser.add_argument("--images", type=int, default=5, help="trials (each: a first image, the next, again)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from neurocarto.ui.snapshot import CHROMIUM, CHROMIUM_FLAGS

    key, trials = fresh_neurons(args.run, args.cache, 2 * args.images)
    process, base = start_app(["--run", key, "--cache", args.cache])
    firsts, nexts, again, coloured, during, baseline, cold = [], [], [], [], [], [], []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                                 args=list(CHROMIUM_FLAGS))
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            requests = FilterRequests(page)
            state = {"class": False}
            for neuron, first, second in trials[args.images:]:
                page.goto(f"{base}/?run={key}&class=Coat&select={neuron}")
                page.wait_for_selector(f"#examples img.pickable[data-image='{second}']", timeout=60000)
                page.wait_for_timeout(1000)
                end_workers(args.cache, key, spare_too=True)
                state["class"] = False
                requests.phase = "idle"
                for _ in range(3):
                    baseline.append(toggle_filter(page, state))
                requests.phase = "during"
                started = toggled = time.perf_counter()
                page.evaluate(CLICK_AND_TIME, str(first))
                while page.evaluate("() => window.timing") is None:
                    page.wait_for_timeout(50)
                    if time.perf_counter() - toggled < 0.5:     # at a person's pace: a change every half second
                        continue
                    toggled = time.perf_counter()
                    seconds = toggle_filter(page, state)
                    if page.evaluate("() => window.timing") is None:
                        during.append(seconds)
                    if time.perf_counter() - started > 120:
                        raise RuntimeError(f"image {first} was not explained within 120 s")
                requests.phase = None
                cold.append(page.evaluate("() => window.timing"))
            for neuron, first, second in trials[:args.images]:
                end_workers(args.cache, key, spare_too=False)
                page.goto(f"{base}/?run={key}&class=Coat&select={neuron}")
                page.wait_for_selector(f"#examples img.pickable[data-image='{second}']", timeout=60000)
                wait_for_spare(args.cache)
                firsts.append(explain(page, first))
                page.wait_for_function(COLOURED_BY, arg=str(first), timeout=30000)
                nexts.append(explain(page, second))
                page.wait_for_function(COLOURED_BY, arg=str(second), timeout=30000)
                again.append(explain(page, first))
                page.wait_for_function("() => window.projectionTiming !== null", timeout=30000)
                coloured.append(page.evaluate("() => window.projectionTiming"))
            browser.close()
    finally:
        stop_app(process)
    print(f"run {key}, {len(trials)} trials; {len(os.sched_getaffinity(0))} CPU cores")
    print("| measure (click on an example patch → graph lit by its image, heat map loaded) | value |\n|---|---:|")
    print(f"| first image of a run: its worker made from the store's spare (s), median of "
          f"{len(firsts)} | {statistics.median(firsts):.2f} |")
    print(f"| first image with no spare, the worker started from nothing at the click (s), median of {len(cold)} | "
          f"{statistics.median(cold):.2f} |")
    print(f"| next image, worker warm (s), median of {len(nexts)} | {statistics.median(nexts):.2f} |")
    print(f"| image asked again, stored (s), median of {len(again)} | {statistics.median(again):.2f} |")
    print(f"| image asked again: the projection coloured by it too (s), median of {len(coloured)} | "
          f"{statistics.median(coloured):.2f} |")
    print(f"| projection filter, nothing explained: p50 / p95 (ms), {len(baseline)} | {percentiles(baseline)} |")
    print(f"| projection filter while a worker starts from nothing: p50 / p95 (ms), {len(during)} | "
          f"{percentiles(during)} |")
    print(f"| its request on the server, nothing explained: p50 / p95 (ms), {len(requests.times['idle'])} | "
          f"{percentiles(requests.times['idle'])} |")
    print(f"| its request on the server while a worker starts from nothing: p50 / p95 (ms), "
          f"{len(requests.times['during'])} | {percentiles(requests.times['during'])} |")


if __name__ == "__main__":
    main()
