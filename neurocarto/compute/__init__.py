"""Compute: a prepared run's stages, in data-flow order, into the store (torch).

Reads a `PreparedRun`; writes each stage's results under the run's key: pass 1 (top-k images per neuron, the class
matrix A), clusters (with spatial co-activation), the embedding, the class graphs (gradient × activation over each
feed: closed forms, cones or autograd) and example patches. `pipeline.precompute` is the entry; `contract` is what
every stage is given and returns; stages resume after Ctrl-C, a kill or a torchrun shard.
"""
