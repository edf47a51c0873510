""""Test this concept": the selected neurons ablated on held-out images, as a Dash background callback.

A click checks the run's store for the result (`ablation_results`): if it is there it shows at once; else the
job's spec is written to the background cache (`ablation_jobs`) and the background callback, in a process of its
own (Dash's DiskcacheManager), runs the ablation in a fresh interpreter, relaying each forward batch to the progress
bar; Cancel ends both processes. The finished
result goes to the store, so the same test is read, not recomputed, by every worker, the CLI and Python, and a URL
with `test=METHOD` shows it.
"""
from __future__ import annotations

import numpy as np
from dash import Input, Output, State, dcc, html, no_update
from dash.exceptions import PreventUpdate

from neurocarto.store.ablation_results import result_name, stored_result
from neurocarto.ui import ablation_jobs
from neurocarto.ui.figures import ablation_figure
from neurocarto.ui.inputs import chosen_cut
from neurocarto.ui.wiring import triggered, wired

TEST_IMAGES = 1000          # held-out images per test
RANDOM_SETS = 5             # random same-size sets of the same layers to compare with
SEED = 0
NO_JOBS = "this server runs no compute jobs (it was started with --no-jobs); tests already stored still show"
PROGRESS_SHOWN, HIDDEN = {"display": "flex"}, {"display": "none"}


def test_panel() -> html.Section:
    """The action's block above the example panel (shown while something is selected)."""
    return html.Section(id="concept-test", className="concept-test", style=HIDDEN, children=[
        html.Div(className="test-controls", children=[
            html.Button("Test this concept", id="test-run", className="test-button",
                        title="zero (or mean-replace) the selected neurons on held-out images and compare with "
                              "random sets of as many neurons in the same layers"),
            dcc.RadioItems(id="test-method", inline=True, value="zero", options=[
                {"label": "zero", "value": "zero"}, {"label": "mean", "value": "mean"}]),
            html.Button("Cancel", id="test-cancel", className="test-cancel", disabled=True),
        ]),
        html.Div(id="test-progress-box", className="test-progress", style=HIDDEN, children=[
            html.Progress(id="test-progress", value=0, max=1), html.Span(id="test-status")]),
        html.Div(id="test-view"),
        dcc.Store(id="test-job"),       # the name of a job to run (its spec is in the background cache)
        dcc.Store(id="test-done"),      # {"name": a finished job, "error": its message or None}
    ])


def selected_neurons(run, class_index, cut, selection: dict) -> np.ndarray:
    """Flat indices of the selected graph nodes' members, the selected neuron and the lasso's neurons."""
    found = list(selection["neurons"]) + ([selection["neuron"]] if selection["neuron"] is not None else [])
    if selection["nodes"] and class_index is not None:
        graph = run.graph(int(class_index), cut)
        found += [n for node in run.resolve_nodes(graph, selection["nodes"], cut, outside=True)
                  for n in node["members"]]
    return np.unique(np.array(found, dtype=np.int64))


def _test_of(catalog, run_key, class_index, cut_choice, selection, method):
    """(run, neurons, result name) of the test the controls describe, or None."""
    run = catalog.get(run_key)
    if run is None:
        return None
    neurons = selected_neurons(run, class_index, chosen_cut(run, cut_choice), selection)
    if not len(neurons):
        return None
    return run, neurons, result_name(neurons, method, TEST_IMAGES, RANDOM_SETS, SEED)


@wired(Output("test-job", "data"), Output("test-done", "data", allow_duplicate=True),
       Input("test-run", "n_clicks"), State("run", "value"), State("class", "value"), State("cut-choice", "data"),
       State("selection", "data"), State("test-method", "value"), prevent_initial_call=True)
def request_test(catalog, clicks, run_key, class_index, cut_choice, selection, method):
    """A stored result is shown at once; otherwise the job is described for `run_test`."""
    test = _test_of(catalog, run_key, class_index, cut_choice, selection, method) if clicks else None
    if test is None:
        return no_update, no_update
    run, neurons, name = test
    if stored_result(run, name) is not None:
        return no_update, {"name": name, "error": None}
    if not catalog.compute_jobs:
        return no_update, {"name": name, "error": NO_JOBS}
    spec = {"run": run.key, "neurons": neurons.tolist(), "method": method, "images": TEST_IMAGES,
            "random_sets": RANDOM_SETS, "seed": SEED}
    ablation_jobs.put_spec(catalog.jobs, name, spec)
    return name, no_update


@wired(Output("test-done", "data"), Input("test-job", "data"), background=True, prevent_initial_call=True,
       interval=250, cancel=[Input("test-cancel", "n_clicks")],
       running=[(Output("test-run", "disabled"), True, False), (Output("test-cancel", "disabled"), False, True),
                (Output("test-progress-box", "style"), PROGRESS_SHOWN, HIDDEN)],
       progress=[Output("test-progress", "value"), Output("test-progress", "max"), Output("test-status", "children")])
def run_test(catalog, set_progress, name):
    """In a process of its own (Dash's): the job's ablation, run by a fresh interpreter (`ablation_jobs.run_worker`)
    whose progress it relays. A fresh interpreter, not this fork of the web worker: a worker's OpenMP pool (numba
    started it) does not survive a fork, and torch would wait on it forever."""
    spec = ablation_jobs.get_spec(catalog.jobs, name) if name else None
    if spec is None or catalog.get(spec["run"]) is None or not catalog.compute_jobs:
        raise PreventUpdate
    if not ablation_jobs.take_slot(catalog.jobs):
        return {"name": name, "error": f"{ablation_jobs.MAX_JOBS} tests are running on this server; try again when "
                                       "they finish."}
    try:
        set_progress((0, 1, f"loading the model and {spec['images']:,} held-out images…"))
        error, _ = ablation_jobs.run_worker(
            str(catalog.store.directory), spec,
            lambda done, total: set_progress((done, total, f"forward passes: batch {done} of {total}")))
        return {"name": name, "error": error}
    finally:
        ablation_jobs.free_slot(catalog.jobs)


@wired(Output("concept-test", "style"), Output("test-view", "children"),
       Input("run", "value"), Input("class", "value"), Input("cut-choice", "data"), Input("selection", "data"),
       Input("test-method", "value"), Input("test-done", "data"), Input("paper", "value"))
def show_test(catalog, run_key, class_index, cut_choice, selection, method, done, paper):
    """The stored result for the selection and method, the message of a test that could not run, or what the
    button will do; for another class, only a result's view changes (the neurons of a selection without nodes do
    not)."""
    class_only = triggered() == {"class.value"} and not selection["nodes"]
    test = _test_of(catalog, run_key, class_index, cut_choice, selection, method)
    if test is None:
        return (no_update, no_update) if class_only else (HIDDEN, [])
    run, neurons, name = test
    result = stored_result(run, name)
    if result is not None:
        return {}, result_view(result, class_index, bool(paper))
    if class_only:
        return no_update, no_update
    if done and done["name"] == name and done["error"]:
        return {}, html.P(f"Not tested: {done['error']}", className="test-problem")
    which = "this neuron" if len(neurons) == 1 else f"these {len(neurons)} neurons"
    verb = f"Zero {which}" if method == "zero" else f"Set {which} to {'its' if len(neurons) == 1 else 'their'} mean"
    return {}, html.P(f"{verb} on {TEST_IMAGES:,} held-out images, against {RANDOM_SETS} random sets of as many "
                      "neurons in the same layers.", className="test-hint")


def _signed(value: float) -> str:
    return f"{round(value, 3) + 0.0:+.3f}"        # no "-0.000"


def result_view(result: dict, class_index, paper: bool) -> list:
    """The chosen class's accuracy and mean logit before → after, its drop against random sets, and every class's
    change as a bar chart."""
    chosen = int(class_index) if class_index is not None else 0
    row = result["classes"][chosen]
    drop = row["accuracy_before"] - row["accuracy_after"]
    random, spread = row["random_drop_mean"], row["random_drop_std"]
    against = "" if random is None else f", random sets {_signed(-random)} ± {spread:.3f}" + (
        f": {drop / random:.1f}× random" if drop > 0 and random > 1e-9 else "")
    source = "held-out images" if result["held_out"] else "of the run's own images (it holds the whole data set)"
    count = len(result["neurons"])
    return [
        html.H3(f"{count} neuron{'s' * (count > 1)} {'zeroed' if result['method'] == 'zero' else 'set to the mean'} "
                f"on {result['images']:,} {source}"),
        html.Div(className="test-headline", children=[
            html.Strong(row["class"]),
            html.Span(f" accuracy {row['accuracy_before']:.3f} → {row['accuracy_after']:.3f} ({_signed(-drop)}{against}); "
                      f"mean logit {row['logit_before']:.2f} → {row['logit_after']:.2f}")]),
        dcc.Graph(figure=ablation_figure(result, chosen, paper), config={"displayModeBar": False}),
    ]
