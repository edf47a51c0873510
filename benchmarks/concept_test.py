"""The app's "test this concept" in a browser: time to the first result, the page's other interactions while a
test runs against the same interactions with none running, and the same test asked again.

    python benchmarks/ablation_panel.py [--run RUN] [--cache cache] [--tests 6] [--interactions 10]

Serves `python app.py --run RUN` on a free 127.0.0.1 port and drives Debian's Chromium (Playwright). Each test
selects one neuron whose test is not stored yet (seeded choice) through the URL and clicks "Test this concept"
(zero, 1,000 held-out images, 5 random sets), timed until its result shows. Every other test runs with the page
idle; during the others the projection filter is toggled once a second, as a person might, and each answer timed
(click until the scatter has redrawn), against the same toggling with no test running, in the same call. Then the stored result is asked again (click until the button is enabled, with no job polled).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from neurocarto.testing.browser import percentiles, toggle_filter
from neurocarto.testing.serving import start_app, stop_app


def untested_neurons(run_reference: str | None, cache: str, count: int, seed: int = 0) -> tuple[str, list[str]]:
    import neurocarto as nc
    from neurocarto.store.ablation_results import result_name, stored_result
    from neurocarto.ui import ablation_panel

    run = nc.open_run(run_reference, cache=cache)
    order = np.random.default_rng(seed).permutation(len(run.neuron_ids))
    free = [int(n) for n in order if stored_result(run, result_name(
        [n], "zero", ablation_panel.TEST_IMAGES, ablation_panel.RANDOM_SETS, ablation_panel.SEED)) is None]
    return run.key, [run.neuron_ids[n] for n in free[:count]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default=None, help="name, key or key prefix (default: the newest complete run)")
    parser.add_argument("--cache", default="cache")
    parser.add_argument("--tests", type=int, default=6, help="tests; every other one while the page is used")
    parser.add_argument("--interactions", type=int, default=10, help="filter toggles of the baseline")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from neurocarto.ui.snapshot import CHROMIUM, CHROMIUM_FLAGS

    key, neurons = untested_neurons(args.run, args.cache, args.tests)
    process, base = start_app(["--run", key, "--cache", args.cache])
    firsts, firsts_used, again, during, baseline = [], [], [], [], []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                                 args=list(CHROMIUM_FLAGS))
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            polls: list[str] = []
            page.on("request", lambda request: polls.append(request.url) if "cacheKey=" in request.url else None)
            state = {"class": False}
            for index, neuron in enumerate(neurons):
                used = index % 2 == 1          # every other test runs while the page is used
                page.goto(f"{base}/?run={key}&class=Coat&select={neuron}")
                page.wait_for_selector("#test-view .test-hint", timeout=60000)
                state["class"] = False
                if used:
                    for _ in range(args.interactions):
                        baseline.append(toggle_filter(page, state))
                        page.wait_for_timeout(max(0.0, 1.0 - baseline[-1]) * 1000)
                started = time.perf_counter()
                page.click("#test-run")
                page.wait_for_selector("#test-progress-box", state="visible")
                while used and page.is_visible("#test-progress-box"):   # at a person's pace: a change a second
                    seconds = toggle_filter(page, state)
                    if page.is_visible("#test-progress-box"):
                        during.append(seconds)
                    page.wait_for_timeout(max(0.0, 1.0 - seconds) * 1000)
                page.wait_for_selector("#test-view .test-headline", timeout=120000)
                (firsts_used if used else firsts).append(time.perf_counter() - started)
                polls.clear()
                started = time.perf_counter()
                page.click("#test-run")
                page.wait_for_function("() => !document.getElementById('test-run').disabled "
                                       "&& document.querySelector('#test-view .test-headline')")
                again.append(time.perf_counter() - started)
                assert not polls, "a stored result started a job"
            browser.close()
    finally:
        stop_app(process)
    print(f"run {key}, {len(firsts) + len(firsts_used)} tests of one neuron each (zero, 1,000 held-out images, 5 random sets); "
          f"{len(os.sched_getaffinity(0))} CPU cores")
    print("| measure | value |\n|---|---:|")
    print(f"| first result, page idle: click to shown (s), median of {len(firsts)} | {statistics.median(firsts):.2f} |")
    if firsts_used:
        print(f"| first result, page used meanwhile (s), median of {len(firsts_used)} | "
              f"{statistics.median(firsts_used):.2f} |")
    print(f"| projection filter, no test running: p50 / p95 (ms), {len(baseline)} | {percentiles(baseline)} |")
    print(f"| projection filter while a test runs: p50 / p95 (ms), {len(during)} | {percentiles(during)} |")
    if during and baseline:
        print(f"| p50 while running ÷ p50 without | {statistics.median(during) / statistics.median(baseline):.2f} |")
    print(f"| stored result asked again, click to shown (ms), median | {statistics.median(again) * 1000:.0f} |")


if __name__ == "__main__":
    main()
