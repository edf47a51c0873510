"""The units bar: which units the run on screen reads (neurons, dictionary latents, or both), links to the runs of
the same model and images in the other units (`assets/units.js` gives a link the view's URL with that run's key
when it is clicked, so the class and settings carry over), and, for a run with dictionaries, each one's quality."""
from __future__ import annotations

from dash import Input, Output, html

from neurocarto.store.dictionaries import quality_line, stored_qualities
from neurocarto.store.stored_run import unit_siblings
from neurocarto.ui.wiring import wired

UNIT_NAMES = {"neurons": "neurons", "dictionary": "latents", "both": "both"}


def units_bar() -> html.Div:
    return html.Div(id="units", className="units-bar", style={"display": "none"})


@wired(Output("units", "children"), Output("units", "style"), Input("run", "value"))
def show_units(catalog, key):
    """The bar for the run on screen; hidden for a run of neurons that has no sibling in other units."""
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
            links.append(html.A(label, href=f"?run={siblings[name]}", className="units-link",
                                title=f"the run of the same model and images with {label} as units",
                                **{"data-run": siblings[name]}))
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
