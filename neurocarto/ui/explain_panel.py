"""Explain one image in the app: pick one of the run's images (click an example patch or one of the class's images in
the panel's strip, or type its index) or upload one; its prediction, the class graph lit by it
(`callbacks.draw_graph`), a heat map of the selected concept over it and, once these are on screen
(`projection-image`), the projection coloured by it (`callbacks.draw_projection`).

An image explained before shows at once (`store.explanations`, read by any worker). Otherwise the request is queued
(`store.explain_queue`) for the run's warm worker (`analysis.explain_worker`, a fresh interpreter: the store's spare,
which a page showing a run keeps ready with torch imported, becomes it, else this web worker starts one), waits
briefly for its answer, and else the page polls the store until the result is there: torch never loads in a web
worker, and the model is loaded once per run, not once per image.
"""
from __future__ import annotations

import base64
import os
import subprocess
import sys
import time

from dash import ClientsideFunction, Input, Output, Patch, State, dcc, html, no_update

from neurocarto.errors import NeuroCartoError
from neurocarto.store import explain_queue
from neurocarto.store.explanations import explained_of, run_image, store_upload, stored_upload, url_of_reference
from neurocarto.store.uploads import MAX_UPLOAD_BYTES, read_upload, too_large
from neurocarto.ui.ablation_jobs import alive
from neurocarto.ui.inputs import chosen_cut
from neurocarto.ui.panels import patch_image, patch_url
from neurocarto.ui.wiring import triggered, wired

WORKER = "neurocarto.analysis.explain_worker"
POLL_MS = 100               # how often the page looks for a pending explanation
GIVE_UP_SECONDS = 180       # a pending explanation not there by then is reported as lost
WAIT_SECONDS = 0.8          # a request waits this long for its worker's answer before the page polls
HEAT_MEMBERS = 16           # members whose maps a concept's heat map averages
STRIP_IMAGES = 6            # the class's images offered in the panel's strip
NO_JOBS = ("this server runs no compute jobs (it was started with --no-jobs); images explained before still show")
SHOWN, HIDDEN = {}, {"display": "none"}


def explain_panel() -> html.Section:
    """The block at the top of the example panel: how to pick an image, and the explained image."""
    return html.Section(id="explain", className="explain-panel", children=[
        html.Div(className="explain-controls", children=[
            html.Strong("Explain an image"),
            dcc.Input(id="explain-index", type="number", min=0, step=1, placeholder="image #", debounce=True,
                      className="explain-index"),
            html.Button("Explain", id="explain-go", className="test-button"),
            dcc.Upload(id="explain-upload", className="explain-upload", accept="image/png,image/jpeg,image/webp",
                       children=html.Span(["or ", html.A("upload"), " a PNG, JPEG or WebP"])),
            html.Button("×", id="explain-clear", className="explain-clear", title="stop explaining this image"),
        ]),
        html.Div(id="explain-strip", className="explain-strip"),
        html.P("…or click any example patch below.", id="explain-status", className="explain-status"),
        html.Div(id="explain-result", style=HIDDEN, children=[
            html.Div(className="explain-figure", children=[
                html.Img(id="explain-base", className="explain-base", alt="the image as the model sees it"),
                html.Img(id="explain-heat", className="explain-heat", alt="", style={"opacity": 0.8})]),
            html.Div(className="explain-side", children=[
                html.Div(id="explain-prediction", className="explain-prediction"),
                html.Div(id="heat-caption", className="heat-caption"),
                html.Label("heat map opacity", htmlFor="heat-opacity", className="heat-label"),
                dcc.Slider(id="heat-opacity", min=0, max=1, step=0.05, value=0.8, marks=None),
            ]),
        ]),
        dcc.Store(id="explained"),          # the reference of the image shown (run:INDEX or upload:SHA256)
        dcc.Store(id="explain-pending"),    # {"reference", "since", "switch"}: asked of the worker, not yet there
        dcc.Store(id="image-pick"),         # {"reference", "switch"}: a patch clicked (assets/explain.js) or the URL
        dcc.Store(id="upload-checked"),     # {"contents", "filename"} of an upload small enough to send
        dcc.Store(id="upload-limit", data=MAX_UPLOAD_BYTES),
        dcc.Interval(id="explain-poll", interval=POLL_MS, disabled=True),
        dcc.Store(id="explain-spare"),      # (written by no one: the output of the callback that keeps a spare)
        dcc.Store(id="explained-known", data={}),   # "RUN|REFERENCE" → predicted class, of images shown here
        dcc.Store(id="explain-mirror"),     # (the output of the callback that hands the page's state to explain.js)
        dcc.Store(id="projection-image"),   # the explained image the projection is coloured by, once it is shown
    ])


CLIENTSIDE = [      # (function in assets/explain.js, outputs and inputs)
    (ClientsideFunction("explain", "checkUpload"), Output("upload-checked", "data"),
     Output("explain-status", "children", allow_duplicate=True), Input("explain-upload", "contents"),
     State("explain-upload", "filename"), State("upload-limit", "data")),
    (ClientsideFunction("explain", "heatOpacity"), Output("explain-heat", "style"), Input("heat-opacity", "value")),
    (ClientsideFunction("explain", "mirror"), Output("explain-mirror", "data"), Input("run", "value"),
     Input("explained-known", "data"), Input("class", "value")),
    (ClientsideFunction("explain", "projectionImage"), Output("projection-image", "data"),
     Input("explained", "data")),
]


def _spawn(catalog, run_key: str) -> int:
    worker = subprocess.Popen([sys.executable, "-m", WORKER, str(catalog.store.directory), run_key, str(os.getpid())],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    os.setpriority(os.PRIO_PROCESS, worker.pid, 5)      # the web workers' requests come first
    return worker.pid


def ensure_spare(catalog) -> None:
    """Keep one spare worker (torch imported, no run) alive for the store, so that a run's first explanation waits
    for its model only."""
    jobs = catalog.jobs
    with jobs.transact():
        pid = explain_queue.spare(jobs)
        if pid is None or not alive(pid):
            explain_queue.set_spare(jobs, _spawn(catalog, "--spare"), ready=False)


def start_worker(catalog, run_key: str) -> None:
    """Start the run's warm worker unless one is alive (a worker that failed is started again: its model or data
    may be back): the spare becomes it, or a new one starts; a new spare is started for the next run."""
    jobs = catalog.jobs
    with jobs.transact():
        state = explain_queue.state(jobs, run_key)
        if state is not None and state["state"] != "failed" and alive(state["pid"]):
            return
        spare = explain_queue.spare(jobs)
        if spare is not None and alive(spare):
            explain_queue.assign(jobs, spare, run_key)
        else:
            explain_queue.set_state(jobs, run_key, _spawn(catalog, run_key), "loading")
    ensure_spare(catalog)


def awaited(catalog, run, reference: str) -> bool | str:
    """True once the run's worker has explained `reference`, or why it could not, within WAIT_SECONDS (else
    False): a warm worker answers a new image in well under a poll's round trip, and the page then needs no poll."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if explained_of(run, reference) is not None:
            return True
        state = explain_queue.state(catalog.jobs, run.key)
        error = explain_queue.failure(catalog.jobs, run.key, reference) or (
            state["error"] if state is not None and state["state"] == "failed" else None)
        if error:
            return error
        time.sleep(0.01)
    return False


@wired(Output("explain-strip", "children"), Input("run", "value"), Input("class", "value"))
def class_strip(catalog, run_key, class_index):
    """A row of the class's own images that its graph's neurons fire on most, each shown by a patch; a click explains
    it (`assets/explain.js`)."""
    run = catalog.get(run_key)
    if run is None or class_index is None:
        return []
    url, chosen = patch_url(run.key), run.typical_images(int(class_index), STRIP_IMAGES)
    return [html.Span(f"or a {run.class_names[int(class_index)]}:", className="strip-label",
                      title="this class's own images that its graph's neurons fire on most: click one to explain it"),
            html.Div(className="patches", children=[patch_image(run, url, neuron, rank, 32)
                                                    for _, neuron, rank in chosen])] if chosen else []


@wired(Output("explain-spare", "data"), Input("run", "value"))
def prepare_spare(catalog, run_key):
    """A page that shows a run keeps a spare worker ready for its first explanation (unless the server runs no
    jobs)."""
    if catalog.compute_jobs and catalog.get(run_key) is not None:
        ensure_spare(catalog)
    return no_update


def uploaded(run, upload: dict) -> str:
    """The reference of an upload from the page (a data URL), checked (`store.uploads`) and kept in the store for
    the worker; NeuroCartoError says what is wrong with it."""
    contents = upload["contents"]
    header, _, payload = contents.partition(",")
    if not header.startswith("data:") or not header.endswith(";base64"):
        raise NeuroCartoError("the upload did not arrive as a file: choose a PNG, JPEG or WebP image")
    if too_large(len(payload) * 3 // 4):
        raise NeuroCartoError(too_large(len(payload) * 3 // 4))
    try:
        content = base64.b64decode(payload, validate=True)
    except ValueError:
        raise NeuroCartoError("the upload is damaged (not base64): choose the file again") from None
    read_upload(content, None)
    return store_upload(run, content)


def picked(run, pick: dict) -> str:
    """A picked reference, checked against the run: one of its images, or an upload its store holds."""
    reference = pick["reference"]
    if reference.startswith("run:"):
        index = int(reference[4:])
        if not index < len(run.image_labels):
            raise NeuroCartoError(f"image {index}: the run's images are 0 … {len(run.image_labels) - 1}")
    elif explained_of(run, reference) is None and stored_upload(run, reference) is None:
        raise NeuroCartoError("the uploaded image this URL names is not in this store: upload it again")
    return reference


def problem(message: str) -> html.Span:
    return html.Span(f"Not explained: {message}", className="test-problem")


def _shown(run, reference: str, switch: bool) -> tuple:
    """The outputs of a finished explanation: shown, nothing pending, the class switched to its prediction."""
    explained = explained_of(run, reference)
    return reference, None, True, "", explained.predicted if switch else no_update


@wired(Output("explained", "data", allow_duplicate=True), Output("explain-pending", "data", allow_duplicate=True),
       Output("explain-poll", "disabled", allow_duplicate=True),
       Output("explain-status", "children", allow_duplicate=True), Output("class", "value", allow_duplicate=True),
       Input("image-pick", "data"), Input("explain-go", "n_clicks"), Input("upload-checked", "data"),
       State("run", "value"), State("explain-index", "value"), prevent_initial_call=True)
def request_explain(catalog, pick, go, upload, run_key, index):
    """An image asked for: shown at once when explained before, else queued for the run's worker."""
    run = catalog.get(run_key)
    fired = triggered()

    def asked(prop: str, value) -> bool:        # (outside a request, e.g. in a unit test, the one value given)
        return bool(value) and (not fired or prop in fired)

    if run is None:
        return no_update, no_update, no_update, no_update, no_update
    switch = True
    try:
        if asked("upload-checked.data", upload):
            reference = uploaded(run, upload)
        elif asked("explain-go.n_clicks", go):
            if index is None:
                raise NeuroCartoError(f"type an image index, 0 … {len(run.image_labels) - 1}")
            reference = picked(run, {"reference": run_image(index)})
        elif asked("image-pick.data", pick):
            reference, switch = picked(run, pick), pick["switch"]
        else:
            return no_update, no_update, no_update, no_update, no_update
    except NeuroCartoError as error:
        return no_update, None, True, problem(str(error)), no_update
    if explained_of(run, reference) is not None:
        return _shown(run, reference, switch)
    if not catalog.compute_jobs:
        return no_update, None, True, problem(NO_JOBS), no_update
    explain_queue.ask(catalog.jobs, run.key, reference)
    start_worker(catalog, run.key)
    outcome = awaited(catalog, run, reference)
    if outcome is True:
        return _shown(run, reference, switch)
    if outcome:
        return no_update, None, True, problem(outcome), no_update
    return (no_update, {"reference": reference, "since": time.time(), "switch": switch}, False,
            "explaining (loading the model the first time)…", no_update)


@wired(Output("explained", "data", allow_duplicate=True), Output("explain-pending", "data", allow_duplicate=True),
       Output("explain-poll", "disabled", allow_duplicate=True),
       Output("explain-status", "children", allow_duplicate=True), Output("class", "value", allow_duplicate=True),
       Input("explain-poll", "n_intervals"), State("explain-pending", "data"), State("run", "value"),
       prevent_initial_call=True)
def poll_explain(catalog, _n, pending, run_key):
    """Until the pending explanation is in the store: what the worker is doing, or why it could not."""
    run = catalog.get(run_key)
    if run is None or pending is None:
        return no_update, None, True, no_update, no_update
    reference = pending["reference"]
    if explained_of(run, reference) is not None:
        return _shown(run, reference, pending["switch"])
    stop = no_update, None, True
    error = explain_queue.failure(catalog.jobs, run.key, reference)
    if error:
        return *stop, problem(error), no_update
    state = explain_queue.state(catalog.jobs, run.key)
    if state is not None and state["state"] == "failed":
        return *stop, problem(state["error"]), no_update
    waited = time.time() - pending["since"]
    if waited > GIVE_UP_SECONDS:
        return *stop, problem(f"no result after {GIVE_UP_SECONDS} s (see the server's log)"), no_update
    if state is None or not alive(state["pid"]):        # it ended idle just as this was asked: start another
        explain_queue.ask(catalog.jobs, run.key, reference)
        start_worker(catalog, run.key)
    doing = "loading the model" if state is None or state["state"] == "loading" else "explaining"
    return no_update, no_update, no_update, f"{doing}… {waited:.1f} s", no_update


@wired(Output("explained", "data", allow_duplicate=True), Output("explain-pending", "data", allow_duplicate=True),
       Output("explain-poll", "disabled", allow_duplicate=True),
       Output("explain-status", "children", allow_duplicate=True),
       Input("explain-clear", "n_clicks"), prevent_initial_call=True)
def clear_explanation(catalog, clicks):
    if not clicks:
        return no_update, no_update, no_update, no_update
    return None, None, True, "…or click any example patch below."


def heat_concept(run, graph: dict, explained, selection: dict, cut) -> tuple[list[int], str]:
    """The neurons whose map the heat map shows and what they are: the selected neuron, else the last selected
    node, else the graph node most lit by the image."""
    if selection["neuron"] is not None:
        return [selection["neuron"]], run.neuron_ids[selection["neuron"]]
    chosen = run.resolve_nodes(graph, selection["nodes"], cut, outside=True)
    if chosen:
        return chosen[-1]["members"], chosen[-1]["id"]
    if not graph["nodes"]:
        return [], ""
    values = {node["id"]: float(explained.percentiles[node["members"]].mean()) for node in graph["nodes"]}
    best = max(graph["nodes"], key=lambda node: (values[node["id"]], node["id"]))
    return best["members"], f"{best['id']} (most lit)"


@wired(Output("explain-result", "style"), Output("explain-base", "src"), Output("explain-heat", "src"),
       Output("heat-caption", "children"), Output("explain-prediction", "children"),
       Output("explained-known", "data"),
       Input("explained", "data"), Input("run", "value"), Input("class", "value"), Input("cut-choice", "data"),
       Input("selection", "data"), State("explained-known", "data"))
def show_explanation(catalog, reference, run_key, class_index, cut_choice, selection, known=None):
    """The image as the model saw it, the heat map of the selected (or most lit) concept over it, the top-5; the page
    remembers each image it has shown with its prediction, so that a click on it again shows it without asking the
    server (assets/explain.js)."""
    run = catalog.get(run_key)
    explained = explained_of(run, reference) if run is not None and reference else None
    if explained is None:
        return HIDDEN, "", "", [], [], no_update
    remembered = f"{run.key}|{reference}"
    if remembered in (known or {}):
        remember = no_update
    else:
        remember = Patch()
        remember[remembered] = explained.predicted
    cut = chosen_cut(run, cut_choice)
    graph = run.graph(int(class_index if class_index is not None else explained.predicted), cut)
    members, name = heat_concept(run, graph, explained, selection, cut)
    layer = run.layer_of[members[0]] if members else None
    members = [m for m in members if run.layer_of[m] == layer][:HEAT_MEMBERS]
    image = url_of_reference(reference)
    heat = f"/heat/{run.key}/{image}/{'.'.join(map(str, members))}.png" if members else ""
    lit = float(explained.percentiles[members].mean()) if members else 0.0
    caption = [html.Strong(name), html.Span(f" lit {lit:.0%}: where it fires on the image")] if members else []
    truth = (f"true class {run.class_names[explained.true_class]}" if explained.true_class is not None
             else "uploaded image (true class unknown)")
    where = f"image {reference[4:]}" if reference.startswith("run:") else "upload"
    prediction = [html.Div(f"{where} · {truth}", className="explain-truth"), html.Ol([
        html.Li(className="explain-class", children=[
            html.Span(run.class_names[c]), html.Span(className="explain-bar", style={"width": f"{p * 100:.0f}%"}),
            html.Span(f"{p:.2f}")]) for c, p in explained.top_classes])]
    return SHOWN, f"/explained/{run.key}/{image}.png", heat, caption, prediction, remember
