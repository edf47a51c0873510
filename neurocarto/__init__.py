"""NeuroCarto: the concepts a CNN has learned, as clusters of neurons, a neuron embedding and class graphs.

    import neurocarto as nc
    run = nc.open_run(cache="cache")                       # the newest complete run, or by name or key
    run = nc.precompute(model=my_module, data="images/")   # compute (or resume) a run, then open it
    nc.ablate(run, ["mixed4b:c3"])                           # what a concept does to the prediction
    nc.explain(run, "coat.png")                              # why the model called this image what it did
    nc.compare(run, other_run)                               # which concepts two models share, split or lack

`open_run`, `StoredRun` and `compare` read stored runs without importing torch; `precompute`, `ablate` and
`explain` import it when called.
"""
from neurocarto.errors import NeuroCartoError
from neurocarto.store.stored_run import AUTO, Cluster, Neighbor, StoredRun, open_run


def precompute(*args, **kwargs) -> StoredRun:
    from neurocarto.api import precompute as compute

    return compute(*args, **kwargs)


def ablate(run: StoredRun, items: list[str], method: str = "zero", images: int = 1000, random_sets: int = 5,
           cut: str | float = AUTO, **options):
    """What these neurons or clusters of a stored run do to the prediction (loads torch, the model and the data):
    per class, accuracy and mean logit before and after, and after random same-size sets; see
    `neurocarto.analysis.ablation.ablate_stored`."""
    from neurocarto.analysis.ablation import ablate_stored

    return ablate_stored(run, list(items), method, images, random_sets, cut, **options)


def explain(run: StoredRun, image, model=None, device: str = "cpu"):
    """One image (a run image index, a path, bytes, a PIL image or an array) inside the run's summary (loads torch
    and the model): its top-5 prediction, each neuron's percentile and map on it; kept in the store. Light a class
    graph with it by `neurocarto.store.explanations.lit_graph`; see `neurocarto.analysis.explain.explain`."""
    from neurocarto.analysis.explain import explain as explain_image

    return explain_image(run, image, model, device)


def compare(run_a: StoredRun, run_b: StoredRun, cut: str | float = AUTO, recompute: bool = False):
    """Two complete runs over the same images matched (torch-free): every neuron's and concept's best match in the
    other run, each concept shared, split, merged or unique, the layers' correspondence and both projections in one
    frame; kept in the store. See `neurocarto.store.comparisons.Comparison`."""
    from neurocarto.store.comparisons import compare as compare_runs

    return compare_runs(run_a, run_b, cut, recompute)


precompute.__doc__ = "Compute (or resume) a run and open it: see `neurocarto.api.precompute`."
__all__ = ["AUTO", "Cluster", "Neighbor", "NeuroCartoError", "StoredRun", "ablate", "compare", "explain", "open_run",
           "precompute"]
