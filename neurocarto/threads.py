"""How many CPUs this process may really use, and thread pools sized to it.

torch and numba size their pools from the machine's cores; in a container with a CPU quota, or a
process pinned to fewer cores, that oversubscribes them and the surplus threads spin in the
kernel. The budget is the smallest of the cores this process may run on and its cgroup's quota;
torch's pool is shrunk to it at the start of a precompute, and UMAP (numba's only parallel user
here) is given it as its job count.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


def _quota(root: Path) -> float | None:
    """CPUs granted by the cgroup quota (v2 `cpu.max`, else v1 `cpu.cfs_quota_us`), if any."""
    try:
        text = (root / "cpu.max").read_text().split()
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def cpu_budget(root: Path = CGROUP) -> int:
    """Cores this process may use: its CPU affinity, capped by its cgroup's quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _quota(root)
    return max(1, min(cores, math.ceil(quota)) if quota else cores)


def limit_threads(budget: int | None = None) -> int:
    """Shrink torch's thread pool to the CPU budget (never grow it); returns the budget. numba's pool is left
    alone: starting it in every torchrun worker only to resize it is a cost, and UMAP takes the budget itself."""
    import torch
    budget = budget or cpu_budget()
    if torch.get_num_threads() > budget:
        torch.set_num_threads(budget)
    return budget
