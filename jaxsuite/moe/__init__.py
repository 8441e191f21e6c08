"""Hecate: fully sharded sparse data parallelism (FSSDP) for MoE training.

Modules: ``gating`` (top-2 GShard gating with capacity), ``model`` (a small
MoE language model and its single-device dense reference), ``nnx_model``
(the same model as Flax NNX modules whose state is the strategies'
pytree), ``data`` (procedural tokens with skewed, drifting expert loads),
``sharding`` (one expert pool per device over all layers: even sharding
and Algorithm 2 heterogeneous sharding), ``plans`` (host-side per-layer
plans: Algorithm 1 sparse materialisation, FasterMoE-style shadowing, token
dispatch split evenly over the nearest replicas), ``collectives``
(SparseAllGather over fixed slots; its transpose is SparseReduceScatter),
``strategies`` (EP, FSDP, FasterMoE and FSSDP in ``jax.shard_map``),
``ragged`` (token exchange of the kept rows with ``ragged_all_to_all``),
``policy`` (per-iteration planners), ``cost`` (the 2-node cost model),
``settings`` (the config read once into the typed settings the package
takes), ``replay`` (load traces through planners and the cost model),
``runtime`` (per-strategy mesh, optimizer, parameters and compiled
steps), ``gating_study`` (the gating's departures from GShard, measured),
``measure`` (HLO bytes, memory, residuals, compile counting), ``analysis``
(derived report tables), ``experiment`` (the
launcher's ``run``) and ``report`` (tables, figures, results.json).
"""
