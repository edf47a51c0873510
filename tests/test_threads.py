"""Thread pools are sized to the CPUs a process may really use (affinity and cgroup quota)."""
import os

import torch

from neurocarto.threads import cpu_budget, limit_threads


def test_the_budget_is_the_affinity_capped_by_the_cgroup_quota(tmp_path):
    cores = len(os.sched_getaffinity(0))
    assert cpu_budget(tmp_path) == cores                           # no cgroup files: the affinity
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu_budget(tmp_path) == cores                           # no quota
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    assert cpu_budget(tmp_path) == 1                               # half a CPU still gets one thread
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")  # cgroup v1: one CPU
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_budget(tmp_path) == 1
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cpu_budget(tmp_path) == cores


def test_torch_shrinks_to_the_budget_and_never_grows():
    threads = torch.get_num_threads()
    try:
        assert limit_threads(1) == 1
        assert torch.get_num_threads() == 1
        limit_threads(64)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
