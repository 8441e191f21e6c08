"""Hecate: fully sharded sparse data parallelism (FSSDP) for MoE training.

Modules: ``gating`` (top-2 GShard gating with capacity), ``model`` (a small
MoE language model and its single-device dense reference), ``data``
(procedural tokens with skewed, drifting expert loads), ``plans`` (host-side
placement plans: even and heterogeneous sharding, Algorithm 1 sparse
materialisation, FasterMoE-style shadowing, replica-first routing),
``collectives`` (SparseAllGather over fixed slots; its transpose is
SparseReduceScatter), ``strategies`` (EP, FSDP, FasterMoE and FSSDP in
``jax.shard_map``), ``policy`` (per-iteration planners), ``cost`` (the 2-node
cost model), ``replay`` (load traces through planners and the cost model),
``measure`` (HLO bytes, memory, residuals, compile counting), ``experiment``
(the launcher's ``run``) and ``report`` (tables, figures, results.json).
"""
