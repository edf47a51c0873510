"""Inputs: what a run is made of, checked before anything is computed (torch).

Reads a model spec, a data spec and a `RunConfig`; gives a `PreparedRun` (the loaded model, the data set and its
image sample, the layers and the run's key), one way to capture a layer's output in any model (`capture`) and which
selected layer feeds which (`feeding`).
"""
