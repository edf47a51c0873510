"""Runs being computed, as the page shows them until their views can open: each stage done, running (share and
ETA, from the precompute's `progress` record), waiting, or failed with its message and the command that resumes it.
"""
from __future__ import annotations

import time

from dash import html

from neurocarto.errors import NeuroCartoError
from neurocarto.store import keys
from neurocarto.store.disk import Store

GENERIC_COMMAND = "python -m neurocarto precompute (with the options that started it)"


def incomplete_runs(store: Store) -> list[tuple[str, dict]]:
    """(key, manifest) of every run not complete yet, newest first."""
    runs = [(key, manifest) for key, manifest, _ in store.list_runs() if manifest and not manifest.get("complete")]
    return sorted(runs, key=lambda item: item[1].get("created", ""), reverse=True)


def run_progress(store: Store, key: str, now: float | None = None) -> dict:
    """A run's state ("computing", "stopped", "complete") and per stage: name, state and, while it runs, its share
    and seconds left; a stopped run's message and the command that resumes it."""
    manifest = store.manifest(key)
    try:
        record = store.get_json(key, keys.PROGRESS)
    except NeuroCartoError:
        record = None
    writer = store.writer_of(key)
    now = time.time() if now is None else now
    stages, problem = [], None
    for name in keys.stages_of(manifest.get("config", {}).get("units")):
        recorded = manifest["stages"].get(name, {})
        status = recorded.get("status")
        row = {"stage": name, "state": "waiting"}
        if status == "done":
            row = {"stage": name, "state": "done", "seconds": recorded.get("seconds")}
        elif status == "failed":
            row["state"], problem = "failed", recorded.get("error", "failed")
        elif status == "running" and writer is None:
            row["state"] = "stopped"
            problem = problem or "the process computing it stopped before this stage ended (killed, or its machine went down)"
        elif status == "running":
            row["state"] = "running"
            if record and record.get("stage") == name and record.get("total"):
                row.update(_share_and_eta(record, now))
        stages.append(row)
    complete = bool(manifest.get("complete"))
    state = "complete" if complete else "stopped" if problem or writer is None else "computing"
    return {"key": key, "name": manifest["name"], "state": state, "stages": stages, "problem": problem,
            "command": manifest.get("command") or GENERIC_COMMAND, "writer": writer}


def _share_and_eta(record: dict, now: float) -> dict:
    done, total = record["done"], record["total"]
    moved, seconds = done - record.get("initial", 0), max(record["updated"] - record["started"], 1e-9)
    left = (total - done) * seconds / moved if moved > 0 else None
    return {"share": min(done / total, 1.0), "done": done, "total": total, "unit": record.get("unit", ""),
            "eta": None if left is None else max(left - (now - record["updated"]), 0.0)}


def progress_panel(progress: dict) -> list:
    """The page's view of `run_progress`: a title, a bar per stage, and for a stopped run what to do."""
    title = {"computing": f"Computing {progress['name']}", "stopped": f"{progress['name']} stopped",
             "complete": f"{progress['name']} is ready"}[progress["state"]]
    rows = [html.H2(title)]
    for stage in progress["stages"]:
        share = stage.get("share", 1.0 if stage["state"] == "done" else 0.0)
        rows.append(html.Div(className=f"stage-row stage-{stage['state']}", children=[
            html.Span(stage["stage"], className="stage-name"),
            html.Div(className="stage-bar", role="progressbar", **{"aria-valuenow": round(100 * share)}, children=[
                html.Div(className="stage-fill", style={"width": f"{100 * share:.1f}%"})]),
            html.Span(_stage_text(stage), className="stage-text")]))
    if progress["state"] == "stopped":
        rows += [html.P(progress["problem"] or "stopped", className="stage-problem"),
                 html.P(["Resume it (finished stages are kept): ", html.Code(progress["command"])])]
    else:
        rows.append(html.P("The views open here by themselves when the run is complete; runs already complete "
                           "are in the run selector."))
    return rows


def progress_line(progress: dict) -> list:
    """`progress_panel` folded into one line that expands, for above views that stay open: the run and its running
    (or last) stage."""
    current = next((stage for stage in progress["stages"] if stage["state"] == "running"), None) or next(
        (stage for stage in reversed(progress["stages"]) if stage["state"] != "waiting"), progress["stages"][0])
    state = {"computing": "computing", "stopped": "stopped", "complete": "ready"}[progress["state"]]
    return [html.Details(className="progress-line", children=[
        html.Summary(f"{progress['name']} {state}: {current['stage']} {_stage_text(current)}"),
        *progress_panel(progress)])]


def launch_panel(launched) -> list | None:
    """Before the precompute `python app.py` started has written its run: that it starts, or why it stopped."""
    if launched is None:
        return None
    code = launched.poll()
    if code is None:
        return [html.H2("Starting the precompute"),
                html.P("Loading the model and the data; the stages appear here once the run is in the store.")]
    if code != 0:
        return [html.H2("The precompute stopped before its run began"),
                html.P(f"It exited with code {code}; its message is in the terminal that started the app.",
                       className="stage-problem")]
    return None


def _stage_text(stage: dict) -> str:
    if stage["state"] == "done":
        return f"done in {stage['seconds']:.0f} s" if stage.get("seconds") is not None else "done"
    if stage["state"] != "running":
        return stage["state"]
    if "share" not in stage:
        return "running"
    eta = stage.get("eta")
    left = "" if eta is None else f", about {eta:.0f} s left" if eta < 120 else f", about {eta / 60:.0f} min left"
    return f"{stage['share']:.0%} ({stage['done']:,} of {stage['total']:,} {stage['unit']}){left}"
