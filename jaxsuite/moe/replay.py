"""Replaying load traces through planners and the cost model.

Builds the cost models and planners that typed :class:`settings.Settings`
describe (:func:`with_experts`: the same at another expert count), and
turns a measured load trace ``(N, L, D, E)`` into modelled per-step times
(:func:`replay`), useful bytes at the CPU model's scale
(:func:`plan_bytes`) and load imbalance (:func:`imbalance`).
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from jaxsuite.moe import cost as cost_lib
from jaxsuite.moe import policy
from jaxsuite.moe.settings import Settings


def cost_model(settings: Settings, cluster: str = "B") -> cost_lib.CostModel:
    """The modelled cluster: ``B`` (``settings.cost``) or ``A`` (its ``alt_`` links)."""
    c = settings.cost
    intra, inter = c.bw_intra, c.bw_inter
    if cluster == "A":
        intra, inter = c.alt_bw_intra, c.alt_bw_inter
    return cost_lib.CostModel(
        devices=jax.device_count(),
        nodes=c.nodes,
        bw_intra=intra,
        bw_inter=inter,
        flops=c.tflops * 1e12,
        hidden=c.hidden,
        ffn=c.ffn,
        seq_len=c.seq_len,
        tokens_per_device=c.tokens_per_device,
    )


def overlap_degree(settings: Settings, cluster: str = "B") -> int:
    """Algorithm 1's t: ``settings.fssdp.overlap`` or the cost model's."""
    if settings.fssdp.overlap > 0:
        return int(settings.fssdp.overlap)
    return cost_model(settings, cluster).overlap_degree()


def small_cost_model(settings: Settings) -> cost_lib.CostModel:
    """The CPU model's own scale (float32), for its plan bytes."""
    return cost_lib.CostModel(
        devices=jax.device_count(),
        nodes=settings.cost.nodes,
        hidden=settings.model.hidden,
        ffn=settings.model.ffn,
        bytes_per_value=4,
    )


def with_experts(settings: Settings, experts: int) -> Settings:
    """``settings`` with ``experts`` per layer at equal memory per expert count.

    Pools hold exactly the model (``S = L E / D`` over the
    ``jax.device_count()`` devices D) and ``K`` scales with E; ``m``
    (materialisation slots) stays as it is.
    """
    devices = jax.device_count()
    experts = int(experts)
    model, fssdp = settings.model, settings.fssdp
    scale = experts / model.experts
    layer_slots = max(experts // devices, int(round(fssdp.layer_slots * scale)))
    return dataclasses.replace(
        settings,
        model=dataclasses.replace(model, experts=experts),
        fssdp=dataclasses.replace(
            fssdp, slots=model.layers * experts // devices, layer_slots=layer_slots
        ),
    )


def layer_slots(settings: Settings, strategy: str) -> int:
    """K: ``E / D`` for the evenly sharded EP and FSDP, else ``fssdp.layer_slots``."""
    if strategy in ("ep", "fsdp"):
        return settings.model.experts // jax.device_count()
    return int(settings.fssdp.layer_slots)


def planner(
    settings: Settings, strategy: str, overlap: int, cluster: str = "B"
) -> policy.Planner:
    """The strategy's planner with the shapes of ``settings``."""
    cm = cost_model(settings, cluster)
    return policy.Planner(
        strategy,
        layers=settings.model.layers,
        experts=settings.model.experts,
        slots=settings.fssdp.slots,
        layer_slots=layer_slots(settings, strategy),
        mat_slots=settings.fssdp.mat_slots,
        topo=cm.topo,
        overlap=overlap,
        model=cm,
        window=settings.fssdp.window,
        reshard_every=settings.fssdp.reshard_every,
    )


def replay(
    settings: Settings,
    strategy: str,
    loads: np.ndarray,
    overlap: int,
    remat: bool = False,
    cluster: str = "B",
    collective: str = "bucketed",
    reshard: bool = True,
) -> dict[str, np.ndarray]:
    """Modelled per-step times of ``strategy`` on a load trace ``(N, L, D, E)``.

    ``collective``: see :func:`cost.layer_time`; ``reshard=False`` turns
    Algorithm 2 off (even sharding throughout). Rows also hold
    ``experts_min`` / ``experts_max``, the fewest and most experts of one
    layer a device owns in that step.
    """
    cm = cost_model(settings, cluster)
    plnr = planner(settings, strategy, overlap, cluster)
    if not reshard:
        plnr.reshard_every = 0
    rows = []
    for load in loads:
        plnr.maybe_reshard()
        mat = plnr.materialise()
        per_layer = [
            cost_lib.layer_time(
                strategy,
                cm.scale_counts(load[i]),
                plnr.pool_expert[i],
                mat[i],
                cm,
                remat=remat,
                collective=collective,
            )
            for i in range(load.shape[0])
        ]
        row = {k: sum(r[k] for r in per_layer) for k in per_layer[0]}
        row["max_over_mean_tokens"] /= len(per_layer)  # a ratio: layer mean
        owned = (plnr.pool_expert >= 0).sum(-1)  # (L, D)
        row["experts_min"], row["experts_max"] = owned.min(), owned.max()
        rows.append(row)
        plnr.observe(load)
    return {k: np.array([r[k] for r in rows]) for k in rows[0]}


def plan_bytes(
    settings: Settings, strategy: str, loads: np.ndarray, overlap: int
) -> float:
    """Mean useful bytes per step and device (params + tokens), CPU model scale."""
    small = small_cost_model(settings)
    plnr = planner(settings, strategy, overlap)
    total = []
    for load in loads:
        plnr.maybe_reshard()
        mat = plnr.materialise()
        step_bytes = 0.0
        for i in range(load.shape[0]):
            r = cost_lib.layer_time(
                strategy, load[i], plnr.pool_expert[i], mat[i], small
            )
            step_bytes += r["token_bytes"] + r["param_bytes"]
        total.append(step_bytes)
        plnr.observe(load)
    return float(np.mean(total)) / small.devices


def layer_spread(
    settings: Settings, loads: np.ndarray, overlap: int
) -> tuple[int, int]:
    """Fewest and most experts of one layer on one device under FSSDP's shardings.

    Replays the FSSDP planner (Algorithm 2 every ``reshard_every`` steps) on
    a load trace ``(N, L, D, E)``; even sharding gives ``E / D`` each.
    """
    plnr = planner(settings, "fssdp", overlap)
    low, high = settings.model.experts, 0
    for load in loads:
        plnr.maybe_reshard()
        owned = (plnr.pool_expert >= 0).sum(-1)  # (L, D)
        low, high = min(low, int(owned.min())), max(high, int(owned.max()))
        plnr.observe(load)
    return low, high


def imbalance(loads: np.ndarray) -> np.ndarray:
    """Max over mean expert load per step (mean over layers): (N,)."""
    per_expert = loads.sum(2)  # (N, L, E)
    return np.mean(per_expert.max(-1) / np.maximum(per_expert.mean(-1), 1e-9), axis=-1)
