"""Pass 1 over a run's images as a resumable stream: checkpoints, torchrun shards and Ctrl-C.

`pass1.run_pass1` does the arithmetic of one stream; here the stream is cut into shards (one per
process, at batch boundaries), saved as one checkpoint every `checkpoint_every` batches and after a
Ctrl-C, and resumed from that checkpoint. Returns the whole stream's state on rank 0.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from neurocarto.compute.contract import StageContext
from neurocarto.compute.interrupt import deferred_interrupt
from neurocarto.compute.pass1 import (
    ClassStatistics,
    MaximaSample,
    Pass1State,
    StreamingTopK,
    merge_states,
    run_pass1,
    sample_every,
)
from neurocarto.errors import NeuroCartoError
from neurocarto.inputs.prepared_run import RunImages, collate_readable
from neurocarto.store import keys


def pack_shards(states: list[dict[str, np.ndarray]], batch_size: int) -> dict[str, np.ndarray]:
    """The states of all shards as one checkpoint (one transaction: the shards always agree)."""
    packed = {"shards": np.array(len(states)), "batch_size": np.array(batch_size)}
    for rank, state in enumerate(states):
        packed.update({f"{rank}/{name}": value for name, value in state.items()})
    return packed


def unpack_shards(checkpoint: dict[str, np.ndarray], world: int, batch_size: int) -> list[dict[str, np.ndarray]]:
    """Each shard's state from a checkpoint, if it was written by `world` processes with this batch size."""
    if "shards" not in checkpoint:           # one process, before checkpoints recorded their shards
        shards, saved_batch_size, states = 1, batch_size, [checkpoint]
    else:
        shards, saved_batch_size = int(checkpoint["shards"]), int(checkpoint["batch_size"])
        states = [{name.split("/", 1)[1]: value for name, value in checkpoint.items() if name.startswith(f"{rank}/")}
                  for rank in range(shards)]
    if (shards, saved_batch_size) != (world, batch_size):
        raise NeuroCartoError(
            f"pass 1 has a checkpoint written by {shards} process{'es' * (shards > 1)} with --batch-size "
            f"{saved_batch_size}; this command has {world} with --batch-size {batch_size}. Resume with the same "
            "process count and batch size (the shards are cut by them), or start over with --rebuild")
    return states


class CheckpointedPass1:
    """Pass 1 over this process's shard (all images in one process), from the checkpoint if there is one.

    Every `checkpoint_every` batches, and after a Ctrl-C once the batch in flight is merged, rank 0 gathers
    every shard's state into one checkpoint. The processes agree after each batch every shard has (they
    differ by at most one) whether any was interrupted, so all stop after the same batch; a Ctrl-C during a
    shard's extra last batch stops them all once every shard is whole.
    """

    def __init__(self, context: StageContext, device: torch.device):
        self.context, self.device = context, device
        self.run, self.store, self.execution, self.log, self.group = (
            context.run, context.store, context.execution, context.log, context.group)
        self.n_images, self.batch_size = len(self.run.indices), self.execution.batch_size
        self.shard = self.group.batch_shard(self.n_images, self.batch_size)
        self.common = self.group.common_batches(self.n_images, self.batch_size)
        self.done = 0
        self.interrupt = None

    def compute(self) -> dict[str, np.ndarray] | None:
        """The whole stream's state (rank 0), or None (the other processes)."""
        group, run = self.group, self.run
        state = self._resumed_state()
        self.done = (state.next_image - self.shard.start) // self.batch_size
        with deferred_interrupt() as interrupt:
            self.interrupt = interrupt
            self._stream(state)
            if group.any(interrupt.requested):      # during the extra last batches: every shard is whole
                self._stop(state, f"as its {group.world} shards ended")
        states = group.gather(state.state())
        if not group.leader:
            return None
        return states[0] if len(states) == 1 else merge_states(states, run.config.top_k)

    def _resumed_state(self) -> Pass1State:
        group, run = self.group, self.run
        saved = None
        if group.leader:
            checkpoint = self.store.load_checkpoint(run.key, keys.PASS1)
            saved = None if checkpoint is None else unpack_shards(checkpoint, group.world, self.batch_size)
        state = Pass1State(StreamingTopK(run.n_neurons, run.config.top_k, self.device),
                           ClassStatistics(len(run.dataset.class_names), run.n_neurons, self.device), self.shard.start,
                           sample=MaximaSample(sample_every(self.n_images), run.n_neurons))
        mine = group.scatter(saved if saved is not None else [None] * group.world)
        if mine is not None:
            state.load(mine)
            self.log(f"pass 1: resuming at image {state.next_image} of {self.n_images} from its checkpoint"
                     if group.world == 1 else f"pass 1: resuming {group.world} shards, each from batch "
                     f"{(state.next_image - self.shard.start) // self.batch_size}")
        return state

    def _stream(self, state: Pass1State) -> None:
        """Run the shard from the state's next image to its end, with a progress bar on rank 0."""
        run, execution, stop = self.run, self.execution, self.shard.stop
        images = RunImages(run.dataset, run.indices, run.model.transform)
        loader = DataLoader(images, batch_size=self.batch_size, sampler=range(state.next_image, stop),
                            collate_fn=collate_readable, num_workers=execution.workers,
                            pin_memory=self.device.type == "cuda")
        progress = self.context.progress(stop - self.shard.start, "images", state.next_image - self.shard.start)

        def advance(current: Pass1State, _n: int) -> None:
            progress.update(current.next_image - self.shard.start - progress.record["done"])
            self._after_batch(current)

        try:
            run_pass1(run.model.module.to(self.device), run.layers, loader, state, run.config.threshold, self.device,
                      run.config.amp, advance)
        finally:
            progress.close()

    def _after_batch(self, current: Pass1State) -> None:
        """Called only where every accumulator has taken the whole batch: a consistent state to save."""
        self.done += 1
        if self.done > self.common:     # a shard's extra last batch: the others have no batch to agree on
            return
        if self.group.any(self.interrupt.requested):
            self._stop(current, f"after batch {self.done} of each of {self.group.world} shards")
        if self.done % self.execution.checkpoint_every == 0 and self.done < self.common:
            self._save(current)

    def _save(self, current: Pass1State) -> None:
        states = self.group.gather(current.state())
        if self.group.leader:
            self.store.save_checkpoint(self.run.key, keys.PASS1, pack_shards(states, self.batch_size))

    def _stop(self, current: Pass1State, where: str) -> None:
        self._save(current)
        self.group.barrier()        # torchrun ends the others as soon as one process exits: only after the save
        raise NeuroCartoError(
            f"pass 1 interrupted at image {current.next_image} of {self.n_images}; its state is saved: the same "
            "command resumes from there" if self.group.world == 1 else
            f"pass 1 interrupted {where}; their state is saved: the same torchrun command resumes from there")
