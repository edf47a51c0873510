"""The app under load on gunicorn while precomputes rewrite the store: errors, latency, worker memory.

    python benchmarks/serve_load.py [--clients 50] [--requests 200] [--workers 2]

A temporary store gets two runs of the default model on 600 Fashion-MNIST images (the served run A and a run
B). gunicorn serves `app:server` with --workers; --clients threads each send --requests requests, a user's mix
(graph, projection, examples and URL callbacks of random classes and cuts, node and neuron selections,
patches and mosaics) to the served run. Meanwhile `precompute --rebuild` rewrites run B from scratch and a
rerun of A's graph stage on fewer images per class rewrites the served run (the app then says it is being
recomputed, and serves the new graphs once done). Printed: requests, errors (5xx or no answer), p50/p95 ms,
the rewrites' outcomes, and the workers' resident memory sampled every second.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from neurocarto.store.disk import Store
from neurocarto.testing.serving import ROOT, free_port
from neurocarto.ui.app import create_app

RUN = ["--max-images", "600", "--top-k", "20", "--quiet"]


def precompute(cache: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "neurocarto", "precompute", "--cache", str(cache), *RUN, *flags],
                          cwd=ROOT, capture_output=True, text=True)


def callback_bodies(cache: Path, key: str) -> list[tuple[str, bytes | None]]:
    """(path, body) of a user's requests: callback posts (body) and image gets (None)."""
    app = create_app(cache, key)
    with Store(cache) as store:
        graph = store.get_json(key, "graph/0")
        classes = len(store.get_json(key, "class_names"))
    cluster = next((n for n in graph["nodes"] if n["cluster"] >= 0), graph["nodes"][0])
    values = {("run", "value"): key, ("class", "value"): 0, ("threshold", "value"): 0, ("mode", "value"): [],
              ("paper", "value"): [], ("cut-choice", "data"): "auto", ("graph-detail", "value"): "summary",
              ("projection-filter", "value"): "all", ("graph-size", "data"): {"width": 560, "height": 620},
              ("selection", "data"): {"nodes": [], "neuron": None, "neurons": []}, ("hovered", "data"): [],
              ("class", "search_value"): "", ("graph", "mouseoverNodeData"): None}
    wanted = ("graph.elements", "projection.figure", "examples.children", "url.search", "hovered.data")
    requests = []
    for output, entry in app.callback_map.items():
        if "callback" not in entry or not any(name in output for name in wanted):
            continue
        props = [(d["id"], d["property"]) for d in entry["inputs"] + entry["state"]]
        if not all(p in values for p in props):
            continue
        for variant in range(12):
            chosen = dict(values)
            chosen[("class", "value")] = variant % classes
            chosen[("cut-choice", "data")] = "auto" if variant % 3 == 0 else round(0.05 + 0.05 * variant, 2)
            if variant % 4 == 1:
                chosen[("selection", "data")] = {"nodes": [cluster["id"]], "neuron": None, "neurons": []}
            if variant % 4 == 2:
                chosen[("selection", "data")] = {"nodes": [], "neuron": variant * 7, "neurons": []}
            if variant % 4 == 3:
                chosen[("graph", "mouseoverNodeData")] = {"id": cluster["id"], "members": ["conv2:1", "conv2:2"]}
            parts = output[2:-2].split("...") if output.startswith("..") else [output]
            outputs = [dict(zip(("id", "property"), part.split(".", 1))) for part in parts]
            body = {"output": output, "outputs": outputs if len(outputs) > 1 else outputs[0],
                    "inputs": [{**d, "value": chosen[(d["id"], d["property"])]} for d in entry["inputs"]],
                    "state": [{**d, "value": chosen[(d["id"], d["property"])]} for d in entry["state"]],
                    "changedPropIds": [f"{entry['inputs'][0]['id']}.{entry['inputs'][0]['property']}"]}
            requests.append(("/_dash-update-component", json.dumps(body).encode()))
    requests += [(f"/patch/{key}/{n}/{n % 4}.png", None) for n in range(0, 700, 37)]
    requests += [(f"/members/{key}/{n}.{n + 1}.{n + 2}.png", None) for n in range(0, 700, 53)]
    return requests


def worker_memory(master: int) -> list[float]:
    """Resident MB of each gunicorn worker (the master's children)."""
    sizes = []
    for child in Path(f"/proc/{master}/task/{master}/children").read_text().split():
        try:
            status = Path(f"/proc/{child}/status").read_text()
        except OSError:
            continue
        sizes.append(int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024)
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        cache = Path(temporary) / "cache"
        for name in ("served", "other"):
            result = precompute(cache, "--name", name, *(["--seed", "1"] if name == "other" else []))
            if result.returncode:
                raise SystemExit(result.stderr)
        with Store(cache) as store:
            key = store.resolve("served")
        requests = callback_bodies(cache, key)
        port = free_port()
        log = open(Path(temporary) / "gunicorn.log", "w")
        server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-w", str(args.workers), "-b", f"127.0.0.1:{port}",
                                   "--timeout", "120", "app:server"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                  env={**os.environ, "NEUROCARTO_CACHE": str(cache)})
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(base + "/", timeout=5)
                break
            except OSError:
                if time.time() > deadline:
                    raise SystemExit(f"gunicorn did not start: {(Path(temporary) / 'gunicorn.log').read_text()}")
                time.sleep(0.3)
        times: list[float] = []
        errors: list[str] = []
        memory: list[tuple[float, list[float]]] = []
        lock = threading.Lock()
        done = threading.Event()
        started = time.perf_counter()

        def client(seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(args.requests):
                path, body = rng.choice(requests)
                request = urllib.request.Request(base + path, data=body, headers={"Content-Type": "application/json"})
                began = time.perf_counter()
                try:
                    with urllib.request.urlopen(request, timeout=60) as response:
                        response.read()
                    problem = None
                except urllib.error.HTTPError as error:
                    problem = f"{error.code} {path}" if error.code >= 500 or error.code == 404 else None
                except OSError as error:
                    problem = f"no answer ({error}) {path}"
                with lock:
                    times.append((time.perf_counter() - began) * 1000)
                    if problem:
                        errors.append(problem)

        def sample() -> None:
            while not done.wait(1.0):
                memory.append((time.perf_counter() - started, worker_memory(server.pid)))

        rewrites = {}

        def rewrite() -> None:
            time.sleep(2)
            rewrites["rebuild of another run"] = precompute(cache, "--name", "other", "--seed", "1", "--rebuild")
            rewrites["graph stage of the served run"] = precompute(cache, "--name", "served", "--graph-images", "30")

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        side = [threading.Thread(target=sample), threading.Thread(target=rewrite)]
        for thread in threads + side:
            thread.start()
        for thread in threads:
            thread.join()
        side[1].join()
        done.set()
        side[0].join()
        wall = time.perf_counter() - started
        server.terminate()
        server.wait(timeout=30)
        log.close()
        ordered = sorted(times)
        print(f"{len(times)} requests from {args.clients} clients on gunicorn -w {args.workers} in {wall:.0f} s: "
              f"{len(errors)} errors; p50 {statistics.median(ordered):.0f} ms, "
              f"p95 {ordered[int(0.95 * (len(ordered) - 1))]:.0f} ms, max {ordered[-1]:.0f} ms")
        for name, result in rewrites.items():
            print(f"concurrent {name}: {'done' if result.returncode == 0 else 'failed: ' + result.stderr[-300:]}")
        peak = max((max(sizes) for _, sizes in memory if sizes), default=0)
        first = ", ".join(f"{size:.0f}" for size in (memory[0][1] if memory else []))
        print(f"worker resident memory: first {first} MB, peak {peak:.0f} MB")
        print("| s | " + " | ".join(f"worker {i + 1} MB" for i in range(args.workers)) + " |")
        print("|---:|" + "---:|" * args.workers)
        for at, sizes in memory[::max(1, len(memory) // 12)]:
            print(f"| {at:.0f} | " + " | ".join(f"{size:.0f}" for size in sizes) + " |")
        for problem in sorted(set(errors))[:20]:
            print("error:", problem)


if __name__ == "__main__":
    main()
