"""NeuroCarto: the concepts a CNN has learned, as clusters of neurons, a neuron embedding and class graphs.

    import neurocarto as nc
    run = nc.open_run(cache="cache")                       # the newest complete run, or by name or key
    run = nc.precompute(model=my_module, data="images/")   # compute (or resume) a run, then open it

`open_run` and `StoredRun` read stored runs without importing torch; `precompute` imports it when called.
"""
from neurocarto.errors import NeuroCartoError
from neurocarto.store.stored_run import AUTO, Cluster, Neighbor, StoredRun, open_run


def precompute(*args, **kwargs) -> StoredRun:
    from neurocarto.api import precompute as compute

    return compute(*args, **kwargs)


precompute.__doc__ = "Compute (or resume) a run and open it: see `neurocarto.api.precompute`."
__all__ = ["AUTO", "Cluster", "Neighbor", "NeuroCartoError", "StoredRun", "open_run", "precompute"]
