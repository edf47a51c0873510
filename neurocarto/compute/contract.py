"""The stage contract: what every stage is given (`StageContext`) and what the pipeline knows of it (`Stage`).

A stage is `compute(context) -> details`: it reads its inputs from the store, writes its results there and returns
what the manifest records of it. Sharded stages run on every process of a torchrun group (`context.store` is None
but on rank 0); the others run on rank 0 only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from neurocarto.compute.distributed import Group
from neurocarto.compute.progress import StageProgress
from neurocarto.config import ExecutionConfig, RunConfig
from neurocarto.inputs.prepared_run import PreparedRun
from neurocarto.store.disk import Store


@dataclass(frozen=True)
class Stage:
    name: str
    compute: Callable
    params: Callable[[RunConfig], object]   # the config section whose change reruns this stage
    inputs: tuple[str, ...]                 # upstream stages
    sharded: bool = False                   # every process of a torchrun group takes part
    version: int = 1                        # raised when the stage computes differently: stored results rerun
    applies: Callable[[RunConfig], bool] = lambda config: True     # runs of this config have the stage
    after: tuple[str, ...] = ()             # stages that must have run first, whose parameters are in the run's key



@dataclass(frozen=True)
class StageContext:
    """What every stage gets: the prepared run, the store (rank 0 only), how to execute, a log, the process group."""

    run: PreparedRun
    store: Store | None
    execution: ExecutionConfig
    log: Callable[[str], None] = print
    group: Group = Group()
    stage: str = ""

    def progress(self, total: int, unit: str, initial: int = 0) -> StageProgress:
        """The stage's progress: a bar in the terminal (rank 0, unless quiet) and a record in the store."""
        return StageProgress(self.store, self.run.key, self.stage, total, unit, initial,
                             show=self.execution.progress and self.group.leader)
