"""The units bar: which units the run on screen reads (neurons, dictionary latents, or both), links to the runs of
the same model and images in the other units (the view's URL with their key, so the class and settings carry over),
and, for a run with dictionaries, each one's quality."""
from __future__ import annotations

from urllib.parse import urlencode

from dash import Input, Output, html

from neurocarto.store.dictionaries import quality_line, stored_qualities
from neurocarto.store.stored_run import unit_siblings
from neurocarto.ui.url_state import read_query
from neurocarto.ui.wiring import wired

UNIT_NAMES = {"neurons": "neurons", "dictionary": "latents", "both": "both"}
CARRIED = ("class", "threshold", "cut", "mode", "detail", "style", "image", "projection")   # what means the same in both


def units_bar() -> html.Div:
    return html.Div(id="units", className="units-bar", style={"display": "none"})


def _href(query: dict[str, str], key: str) -> str:
    return "?" + urlencode({"run": key, **{name: query[name] for name in CARRIED if name in query}})


@wired(Output("units", "children"), Output("units", "style"), Input("url", "search"))
def show_units(catalog, search):
    """The bar for the run the URL shows; hidden for a run of neurons that has no sibling in other units."""
    query, _ = read_query(search)
    key = query.get("run") or (catalog.keys[0] if catalog.keys else None)
    run = catalog.get(key)
    if run is None:
        return [], {"display": "none"}
    siblings = unit_siblings(catalog.store, run.key)
    units = run.config.get("units", "neurons")
    if len(siblings) == 1 and units == "neurons":
        return [], {"display": "none"}
    links = []
    for name, label in UNIT_NAMES.items():
        if name == units:
            links.append(html.Span(label, className="units-current", title="the units of the run on screen: "
                                   "its layers' channels (neurons), their dictionaries' latents, or both"))
        elif name in siblings:
            links.append(html.A(label, href=_href(query, siblings[name]), className="units-link",
                                title=f"the run of the same model and images with {label} as units"))
        else:
            links.append(html.Span(label, className="units-missing",
                                   title=f"no run of these images with {label} as units: precompute one with "
                                         f"--units {name}"))
    qualities = stored_qualities(run)
    if qualities:
        links.append(html.Details(className="units-quality", children=[
            html.Summary("quality", title="each dictionary's variance explained, dead and dense latents, and the "
                                          "model's accuracy with its layer reconstructed"),
            html.Ul([html.Li(quality_line(quality)) for quality in qualities])]))
    return links, {}
