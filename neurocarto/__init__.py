"""NeuroCarto: the concepts a CNN has learned, as clusters of neurons, a neuron embedding and class graphs.

    import neurocarto as nc
    run = nc.open_run(cache="cache")                       # the newest complete run, or by name or key
    run = nc.precompute(model=my_module, data="images/")   # compute (or resume) a run, then open it
    nc.ablate(run, ["mixed4b:c3"])                           # what a concept does to the prediction

`open_run` and `StoredRun` read stored runs without importing torch; `precompute` and `ablate` import it when
called.
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


precompute.__doc__ = "Compute (or resume) a run and open it: see `neurocarto.api.precompute`."
__all__ = ["AUTO", "Cluster", "Neighbor", "NeuroCartoError", "StoredRun", "ablate", "open_run", "precompute"]
