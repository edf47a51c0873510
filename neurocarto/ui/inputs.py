"""The callbacks' boundary: every value a browser sends is checked and bounded before a callback sees it.

Each (component, property) a callback reads has one checker here; a checker takes the raw value and
the run it concerns (None when the callback has no run) and returns a value of the expected type,
size and range, or a harmless default — never an error, never work proportional to a hostile size.
`bounded_callback` registers callbacks through them and answers any unexpected failure with no update.
"""
from __future__ import annotations

import functools
import math
import sys
import traceback

from dash import Input, State
from dash.exceptions import PreventUpdate

from neurocarto.concepts.hierarchy import AUTO, parse_cut
from neurocarto.errors import NeuroCartoError
from neurocarto.store.uploads import MAX_UPLOAD_BYTES

MAX_NODES = 50            # selected graph nodes
MAX_NEURONS = 5000        # neurons selected with the lasso or hovered
MAX_MEMBERS = 1000        # members listed in a node's data
MAX_TEXT = 200            # ids, labels, keys
MAX_SEARCH = 100          # the class search box
MAX_URL = 4096            # the URL's query
MAX_REQUEST = 2 ** 20     # bytes of one request body, but an upload's
MAX_UPLOAD_REQUEST = MAX_UPLOAD_BYTES * 4 // 3 + 2 ** 16       # an upload's request: the file in base64, and JSON
UPLOAD_INPUT = "upload-checked"                                 # the one callback input that carries an upload


def _text(value, limit: int = MAX_TEXT) -> str | None:
    return value if isinstance(value, str) and len(value) <= limit else None


def _integer(value) -> int | None:
    return value if type(value) is int else None


def _neurons(value, run, limit: int = MAX_NEURONS) -> list[int]:
    """Distinct neuron indices of the run, in first-seen order, at most `limit` (anything else dropped)."""
    if not isinstance(value, list):
        return []
    count = len(run.neuron_ids) if run is not None else None
    found: dict[int, None] = {}
    for item in value[:limit * 2]:
        if type(item) is int and item >= 0 and (count is None or item < count):
            found.setdefault(item)
            if len(found) >= limit:
                break
    return list(found)


def run_key(value, data=None) -> str | None:
    return _text(value, 64)


def class_index(value, run) -> int | None:
    value = _integer(value)
    if value is None or value < 0 or (run is not None and value >= len(run.class_names)):
        return None
    return value


def share(value, run) -> float:
    """A share in [0, 1]; anything else (NaN, text, …) is 0."""
    if type(value) not in (int, float) or not math.isfinite(value):
        return 0.0
    return min(max(float(value), 0.0), 1.0)


def flags(value, run) -> list[str]:
    """A checklist's ticked values."""
    if not isinstance(value, list):
        return []
    return [item for item in value[:8] if _text(item, 32)]


def one_of(*options: str):
    def check(value, run) -> str:
        return value if value in options else options[0]
    return check


def search_text(value, run) -> str:
    return value if isinstance(value, str) and len(value) <= MAX_SEARCH else ""


def url_search(value, run) -> str:
    return value if isinstance(value, str) and len(value) <= MAX_URL else ""


def cut_choice(value, run):
    """"auto" or a finite number (the run's own range is checked where it is used)."""
    if type(value) in (int, float) and math.isfinite(value):
        return value
    return value if value == "auto" else "auto"


def panel_size(value, run) -> dict | None:
    if not isinstance(value, dict):
        return None
    width, height = value.get("width"), value.get("height")
    if all(type(v) in (int, float) and math.isfinite(v) for v in (width, height)):
        return {"width": width, "height": height}
    return None


def selection(value, run) -> dict:
    """{"nodes": distinct node ids (≤ MAX_NODES), "neuron": a neuron of the run or None, "neurons": […]}."""
    value = value if isinstance(value, dict) else {}
    nodes = value.get("nodes") if isinstance(value.get("nodes"), list) else []
    nodes = list(dict.fromkeys(node for node in nodes[:MAX_NODES * 2] if _text(node)))[:MAX_NODES]
    neuron = _neurons([value.get("neuron")], run, 1)
    return {"nodes": nodes, "neuron": neuron[0] if neuron else None, "neurons": _neurons(value.get("neurons"), run)}


def neuron_list(value, run) -> list[int]:
    return _neurons(value, run)


def node_data(value, run) -> dict | None:
    """A graph node's data as Cytoscape sends it back: its id, label and member ids."""
    if not isinstance(value, dict) or not _text(value.get("id")):
        return None
    members = value.get("members") if isinstance(value.get("members"), list) else []
    return {"id": value["id"], "label": _text(value.get("label")) or "",
            "members": [m for m in members[:MAX_MEMBERS] if _text(m)]}


def plot_points(value, run) -> dict | None:
    """Plotly's click, hover or lasso data: the points' neuron indices (customdata) and a hover's bbox."""
    if not isinstance(value, dict) or not isinstance(value.get("points"), list):
        return None
    points = []
    for point in value["points"][:MAX_NEURONS]:
        if not isinstance(point, dict):
            continue
        checked = {}
        if _neurons([point.get("customdata")], run, 1):
            checked["customdata"] = point["customdata"]
        box = point.get("bbox")
        if isinstance(box, dict) and all(type(box.get(k)) in (int, float) and math.isfinite(box[k])
                                         for k in ("x0", "x1", "y0", "y1")):
            checked["bbox"] = {k: box[k] for k in ("x0", "x1", "y0", "y1")}
        points.append(checked)
    return {"points": points}


def relayout(value, run) -> dict | None:
    """Plotly's relayoutData: only the axes' ranges (finite numbers) and autorange flags are kept."""
    if not isinstance(value, dict):
        return None
    kept = {key: value[key] for key in ("xaxis.range[0]", "xaxis.range[1]", "yaxis.range[0]", "yaxis.range[1]")
            if type(value.get(key)) in (int, float) and math.isfinite(value[key])}
    if value.get("xaxis.autorange") is True:
        kept["xaxis.autorange"] = True
    return kept


def clicks(value, run) -> int | None:
    return _integer(value)


def progress_focus(value, run) -> dict | None:
    """{"key": a run key, "switch": whether to open it when complete}, or None."""
    if not isinstance(value, dict) or run_key(value.get("key")) is None:
        return None
    return {"key": run_key(value.get("key")), "switch": value.get("switch") is True}


def job_name(value, run) -> str | None:
    """A concept test's result name (`ablation_results.result_name`)."""
    text = _text(value, 64)
    return text if text and text.startswith("ablation/") and text[9:].isalnum() else None


def job_outcome(value, run) -> dict | None:
    """{"name": a job's name, "error": its message or None}."""
    if not isinstance(value, dict) or job_name(value.get("name"), run) is None:
        return None
    error = value.get("error")
    return {"name": value["name"], "error": error[:2000] if isinstance(error, str) else None}


def image_reference(value, run) -> str | None:
    """An image's reference: `run:INDEX` or `upload:SHA256` (`store.explanations`); the run's own range is checked
    where it is used."""
    if not isinstance(value, str):
        return None
    kind, _, name = value.partition(":")
    if kind == "run" and name.isdigit() and len(name) <= 9:
        return value
    return value if kind == "upload" and len(name) == 64 and all(c in "0123456789abcdef" for c in name) else None


def image_pick(value, run) -> dict | None:
    """{"reference": an image's reference, "switch": whether the class follows its prediction}."""
    if not isinstance(value, dict) or image_reference(value.get("reference"), run) is None:
        return None
    return {"reference": value["reference"], "switch": value.get("switch") is not False}


def explain_pending(value, run) -> dict | None:
    """{"reference", "since" (a time), "switch"}: an explanation asked of the worker."""
    pick = image_pick(value, run)
    since = value.get("since") if pick else None
    if type(since) not in (int, float) or not math.isfinite(since):
        return None
    return {**pick, "since": float(since)}


def image_index(value, run) -> int | None:
    """A typed image index (a whole number, maybe sent as a float)."""
    if type(value) is float and value.is_integer():
        value = int(value)
    return value if type(value) is int and 0 <= value < 10 ** 9 else None


def known_images(value, run) -> dict:
    """The page's "RUN|REFERENCE" → predicted class of the images it has shown (only its keys are read)."""
    if not isinstance(value, dict) or len(value) > 100_000:
        return {}
    return {key: label for key, label in value.items() if isinstance(key, str) and len(key) <= 200
            and type(label) is int}


def upload(value, run) -> dict | None:
    """{"contents": a data URL, "filename"} of an upload (its size was checked in the page and by the request's)."""
    if not isinstance(value, dict) or not isinstance(value.get("contents"), str):
        return None
    return {"contents": value["contents"], "filename": _text(value.get("filename")) or ""}


def compare_points(value, run) -> dict | None:
    """Plotly's click data on the compare projections: each point's [side 0 | 1, neuron index ≥ 0] (the neuron is
    checked against its run's comparison when used)."""
    if not isinstance(value, dict) or not isinstance(value.get("points"), list):
        return None
    points = []
    for point in value["points"][:1]:
        data = point.get("customdata") if isinstance(point, dict) else None
        if (isinstance(data, list) and len(data) == 2 and data[0] in (0, 1) and type(data[1]) is int
                and 0 <= data[1] < 10 ** 9):
            points.append({"customdata": list(data)})
    return {"points": points} if points else None


def compare_selection(value, run) -> dict | None:
    """{"side": "a" | "b", "concept": an index ≥ 0} (checked against the comparison when used)."""
    if not isinstance(value, dict) or value.get("side") not in ("a", "b") or type(value.get("concept")) is not int:
        return None
    return {"side": value["side"], "concept": value["concept"]} if 0 <= value["concept"] < 10 ** 9 else None


def page_number(value, run) -> int:
    value = _integer(value)
    return value if value is not None and 0 <= value < 10 ** 7 else 0


def table_sort(value, run) -> dict | None:
    """{"column": a sortable column of the compare table, "descending": bool}."""
    from neurocarto.ui.compare_view import SORTABLE

    if not isinstance(value, dict) or value.get("column") not in SORTABLE:
        return None
    return {"column": value["column"], "descending": value.get("descending") is True}


def categories(value, run) -> list[str] | None:
    from neurocarto.concepts.matching import CATEGORIES

    return [item for item in value if item in CATEGORIES] if isinstance(value, list) else None


def table_row(value, run) -> str | None:
    """A compare table row's concept: `a:INDEX` or `b:INDEX`."""
    text = _text(value, 16)
    side, _, index = (text or "").partition(":")
    return text if side in ("a", "b") and index.isdigit() else None


CHECKS = {
    ("url", "pathname"): lambda value, run: _text(value, 256) or "/",
    ("url", "search"): url_search,
    ("run", "value"): run_key,
    ("class", "value"): class_index,
    ("class", "search_value"): search_text,
    ("threshold", "value"): share,
    ("mode", "value"): flags,
    ("paper", "value"): flags,
    ("cut-auto", "value"): flags,
    ("cut-choice", "data"): cut_choice,
    ("graph-detail", "value"): one_of("summary", "all"),
    ("projection-filter", "value"): one_of("all", "class", "clusters"),
    ("graph-size", "data"): panel_size,
    ("selection", "data"): selection,
    ("hovered", "data"): neuron_list,
    ("graph", "tapNodeData"): node_data,
    ("graph", "mouseoverNodeData"): node_data,
    ("projection", "clickData"): plot_points,
    ("projection", "selectedData"): plot_points,
    ("projection", "hoverData"): plot_points,
    ("projection", "relayoutData"): relayout,
    ("projection-show", "value"): lambda value, run: [item for item in value if item in ("labels", "density", "class")]
    if isinstance(value, list) else [],
    ("export-graph-png", "n_clicks"): clicks,
    ("export-graph-svg", "n_clicks"): clicks,
    ("progress-poll", "n_intervals"): clicks,
    ("ready", "data"): run_key,
    ("progress-focus", "data"): progress_focus,
    ("test-run", "n_clicks"): clicks,
    ("test-method", "value"): one_of("zero", "mean"),
    ("test-job", "data"): job_name,
    ("test-done", "data"): job_outcome,
    ("explained", "data"): image_reference,
    ("projection-image", "data"): image_reference,
    ("explain-pending", "data"): explain_pending,
    ("explained-known", "data"): known_images,
    ("image-pick", "data"): image_pick,
    ("explain-go", "n_clicks"): clicks,
    ("explain-clear", "n_clicks"): clicks,
    ("explain-index", "value"): image_index,
    ("explain-poll", "n_intervals"): clicks,
    ("upload-checked", "data"): upload,
    ("compare", "value"): run_key,
    ("compare-poll", "n_intervals"): clicks,
    ("compare-ready", "data"): lambda value, run: _text(value, 160),
    ("compare-selection", "data"): compare_selection,
    ("compare-projection", "clickData"): compare_points,
    ("compare-graph", "tapNodeData"): node_data,
    ("compare-row", "data"): table_row,
    ("checkpoint", "value"): page_number,
    ("compare-sort", "data"): table_sort,
    ("compare-page", "data"): page_number,
    ("compare-prev", "n_clicks"): clicks,
    ("compare-next", "n_clicks"): clicks,
    ("compare-layer", "value"): lambda value, run: _text(value, 256),
    ("compare-category", "value"): categories,
}


def check_requests(app) -> None:
    """Refuse (400) a callback request whose shape is not one of the app's callbacks: its output unknown, or its
    inputs and state not those the callback declares — before Dash reads it."""
    from flask import abort, request

    @app.server.before_request
    def callback_request_shape():
        if request.method != "POST" or not request.path.endswith("/_dash-update-component"):
            return None
        if (request.content_length or 0) > MAX_UPLOAD_REQUEST:
            abort(413)
        body = request.get_json(silent=True)
        if (request.content_length or 0) > MAX_REQUEST and not (isinstance(body, dict) and any(
                isinstance(item, dict) and item.get("id") == UPLOAD_INPUT for item in body.get("inputs") or [])):
            abort(413)
        entry = app.callback_map.get(body.get("output")) if isinstance(body, dict) and isinstance(
            body.get("output"), str) else None
        if entry is None or "callback" not in entry:
            abort(400)
        for kind in ("inputs", "state"):
            sent = body.get(kind, [])
            declared = [(d["id"], d["property"]) for d in entry[kind]]
            if not isinstance(sent, list) or len(sent) != len(declared) or any(
                    not isinstance(item, dict) or (item.get("id"), item.get("property")) != expected
                    for item, expected in zip(sent, declared)):
                abort(400)
        return None


def bounded_callback(app, catalog):
    """`app.callback`, with each input and state passed through its check (the run, when a callback reads
    "run.value", loaded first so that indices are checked against it); an unexpected failure is logged and
    answered with no update, never a server error. A background callback's progress setter comes first, as Dash
    passes it."""

    def callback(*dependencies, **options):
        props = [(d.component_id, d.component_property) for d in dependencies if isinstance(d, (Input, State))]
        unchecked = [f"{i}.{p}" for i, p in props if (i, p) not in CHECKS]
        if unchecked:
            raise ValueError(f"no input check for {', '.join(unchecked)}: add one to neurocarto/ui/inputs.py")

        def register(function):
            @functools.wraps(function)
            def checked(*values):
                setter, values = (values[:1], values[1:]) if options.get("progress") else ((), values)
                try:
                    key = next((run_key(v) for (i, p), v in zip(props, values) if (i, p) == ("run", "value")), None)
                    run = catalog.get(key) if key else None
                    return function(*setter, *(CHECKS[prop](value, run) for prop, value in zip(props, values)))
                except PreventUpdate:
                    raise
                except Exception:
                    print(f"callback {function.__name__} failed; answered with no update:\n{traceback.format_exc()}",
                          file=sys.stderr, flush=True)
                    raise PreventUpdate from None
            return app.callback(*dependencies, **options)(checked)
        return register
    return callback


def chosen_cut(run, cut_choice):
    """The cut the controls ask for (`cut-choice`: "auto" or the slider's Jaccard), checked against the run."""
    try:
        return parse_cut(cut_choice, run.floor)
    except NeuroCartoError:
        return AUTO
