"""What a view's URL says, in one place: the app writes and reads it, `snapshot` writes it.

    ?run=KEY&class=NAME&threshold=0.1&cut=auto|J&select=ID,ID&mode=cascade&detail=all&style=paper&test=zero|mean
     &image=INDEX|SHA256&compare=KEY&projection=labels,density,class

Reading only splits the text (at most MAX_FIELDS fields); the app checks each value against the run.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode

MAX_FIELDS = 20


@dataclass(frozen=True)
class ViewState:
    """A view of a run: its class, graph settings and selection (node ids and neuron ids)."""

    run: str
    class_name: str | None = None
    threshold: float = 0.0
    cut: str = "auto"
    select: tuple[str, ...] = ()
    cascade: bool = False
    all_nodes: bool = False
    paper: bool = False
    test: str | None = None         # the method of the selection's concept test
    image: str | None = None        # the explained image: a run image's index or an upload's SHA-256
    compare: str | None = None      # the run compared with this one
    projection: tuple[str, ...] = ("labels",)   # what the projection shows: concept labels, density, class colours

    def query(self) -> str:
        fields = {"run": self.run}
        if self.class_name is not None:
            fields["class"] = self.class_name
        fields.update({"threshold": f"{self.threshold:g}", "cut": str(self.cut)})
        if self.select:
            fields["select"] = ",".join(self.select)
        if self.cascade:
            fields["mode"] = "cascade"
        if self.all_nodes:
            fields["detail"] = "all"
        if self.paper:
            fields["style"] = "paper"
        if self.test:
            fields["test"] = self.test
        if self.image:
            fields["image"] = self.image
        if self.compare:
            fields["compare"] = self.compare
        if tuple(self.projection) != ("labels",):
            fields["projection"] = ",".join(self.projection) or "points"
        return "?" + urlencode(fields)


def read_query(search: str | None) -> tuple[dict[str, str], list[str]]:
    """The URL's fields as text (the first value of each), and what could not be read."""
    try:
        return {k: v[0] for k, v in parse_qs((search or "").lstrip("?"), max_num_fields=MAX_FIELDS).items()}, []
    except ValueError:
        return {}, ["The URL holds more settings than the app has; showing the default view."]
