"""Stored ablation results: one JSON value per run and (neurons, method, images, random sets, seed), written when an
ablation of a stored run finishes and read before one starts, so a test asked again — in the app, the CLI or
Python — is read, not recomputed; and per (method, images, seed) the unablated pass every such test shares (the
model's logits on those images and, for "mean", each neuron's mean activation). Torch-free: the web workers read
the results."""
from __future__ import annotations

import hashlib
import json

import numpy as np


def result_name(neurons, method: str, images: int, random_sets: int, seed: int) -> str:
    """The store name of one ablation's result (the neurons as a set of flat indices)."""
    spec = {"neurons": sorted({int(n) for n in np.asarray(neurons).ravel()}), "method": method,
            "images": int(images), "random_sets": int(random_sets), "seed": int(seed)}
    return "ablation/" + hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]


def stored_result(run, name: str) -> dict | None:
    """The stored result (`Ablation.as_dict`) under `name` in a StoredRun, or None."""
    return run.store.get_json(run.key, name) if run.store.has_json(run.key, name) else None


def store_result(run, name: str, result: dict) -> None:
    run.store.put_json(run.key, name, result)


def _baseline_name(method: str, images: int, seed: int) -> str:
    return f"ablation/baseline-{method}-{int(images)}-{int(seed)}"


def stored_baseline(run, method: str, images: int, seed: int) -> tuple[np.ndarray, np.ndarray | None] | None:
    """(logits (images, outputs), mean activations (neurons,) or None) of the unablated pass, if stored."""
    name = _baseline_name(method, images, seed)
    if not run.store.has_array(run.key, f"{name}/logits"):
        return None
    means = run.store.get_array(run.key, f"{name}/means") if method == "mean" else None
    return run.store.get_array(run.key, f"{name}/logits"), means


def store_baseline(run, method: str, images: int, seed: int, logits: np.ndarray, means: np.ndarray | None) -> None:
    name = _baseline_name(method, images, seed)
    if means is not None:
        run.store.put_array(run.key, f"{name}/means", means)
    run.store.put_array(run.key, f"{name}/logits", logits)
