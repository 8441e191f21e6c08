"""Derived tables of the Hecate report: Algorithm 2 at work, measured beside
modelled step times, re-materialisation, SparseAllGather bytes, and the
FSSDP/FSDP crossover.

All inputs are traces of the trained runs (``loss``, ``load (N, L, D, E)``,
``wall``, ``moved``, ``spag_hlo``, ``spag_plan``, ``bucket``) and the
replays of :mod:`jaxsuite.moe.replay`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxsuite.moe import collectives, model
from jaxsuite.moe.replay import replay
from jaxsuite.moe.settings import Settings

GAP_REASON = (
    "The 8 CPU devices are emulated on this machine's 2 shared cores: they "
    "compute one after another rather than in parallel, collectives are "
    "memory copies rather than NVLink/network transfers, and the model is "
    "about 1000x smaller than GPT-MoE-S, so fixed per-op overheads (gathers, "
    "scatters, padding of the fixed-slot token exchange, the extra replica "
    "compute slots) dominate; the modelled times are for 2 nodes x 4 A100s "
    "at GPT-MoE-S scale, where attention and expert FLOPs and inter-node "
    "bytes dominate."
)


def algorithm2_rows(
    settings: Settings, trace: dict, overlap: int
) -> list[dict[str, Any]]:
    """Algorithm 2 in the trained FSSDP run versus even sharding, same loads.

    The trained run re-sharded every ``reshard_every`` steps (``trace
    ["moved"] >= 0``); replaying its measured loads with Algorithm 2 on and
    off gives, for the steps after the first re-shard, the experts of one
    layer a device owns, the per-device token load (max over mean of the
    tokens each device computes, from the measured routing) and the modelled
    step time (cluster B).
    """
    loads = trace["load"]
    moved = trace["moved"]
    at = np.nonzero(moved >= 0)[0]
    if not len(at):
        return []
    after = slice(int(at[0]), None)
    rows = []
    for name, on in (("algorithm2", True), ("even_sharding", False)):
        r = replay(settings, "fssdp", loads, overlap, reshard=on)
        rows.append(
            {
                "sharding": name,
                "reshard_steps": [int(s) for s in at] if on else [],
                "experts_moved": [int(moved[s]) for s in at] if on else [],
                "experts_of_a_layer_per_device": [
                    int(r["experts_min"][after].min()),
                    int(r["experts_max"][after].max()),
                ],
                "device_tokens_max_over_mean": float(
                    np.mean(r["max_over_mean_tokens"][after])
                ),
                "modelled_ms_per_step": 1e3 * float(np.mean(r["total"][after])),
                "modelled_param_ms_per_step": 1e3 * float(np.mean(r["param"][after])),
                "modelled_a2a_ms_per_step": 1e3 * float(np.mean(r["a2a"][after])),
            }
        )
    return rows


def remat_rows(
    settings: Settings, measured: dict[str, dict[str, Any]]
) -> tuple[list[dict[str, Any]], float]:
    """Re-materialisation: measured residuals and peaks, analytic buffers.

    ``measured`` maps a strategy to its step measurements (``residual``,
    ``memory`` and their ``_remat`` twins, bytes per device); returns a row
    for FSSDP and FSDP where they were measured with re-materialisation,
    and FSSDP's fraction of backward residuals saved (NaN if not measured).
    """
    m = settings.model
    p_bytes = 4 * model.expert_size(m.hidden, m.ffn)
    rows, saving = [], float("nan")
    for strategy in ("fssdp", "fsdp"):
        got = measured.get(strategy, {})
        if "memory_remat" not in got:
            continue
        per_layer = settings.fssdp.mat_slots if strategy == "fssdp" else m.experts
        per_layer *= p_bytes
        res, res_rm = got["residual"], got["residual_remat"]
        rows.append(
            {
                "strategy": strategy,
                "residual_bytes": res,
                "residual_bytes_remat": res_rm,
                "residual_saving_fraction": 1.0 - res_rm / res,
                "peak_bytes": got["memory"]["total"],
                "peak_bytes_remat": got["memory_remat"]["total"],
                "materialised_bytes": m.layers * per_layer,
                "materialised_bytes_remat": per_layer,
                "materialised_saving_fraction": 1.0 - 1.0 / m.layers,
            }
        )
        if strategy == "fssdp":
            saving = 1.0 - res_rm / res
    return rows, saving


def spag_summary(trace: dict) -> dict[str, Any]:
    """Mean SparseAllGather bytes per step and device: compiled vs planned."""
    buckets = {tuple(int(v) for v in b) for b in trace["bucket"] if b[0] >= 0}
    return {
        "spag_hlo_bytes_per_step": float(np.mean(trace["spag_hlo"])),
        "spag_plan_bytes_per_step": float(np.mean(trace["spag_plan"])),
        "spag_buckets_used": sorted(
            f"{collectives.MODES[m]}:{c}:{c2}" for m, c, c2 in buckets
        ),
    }


def crossover(expert_rows: list[dict[str, Any]], key: str) -> int | str:
    """Smallest expert count (cluster B) where FSSDP's ``key`` beats FSDP's."""
    rows = [r for r in expert_rows if r["cluster"] == "B"]
    for experts in sorted({r["experts"] for r in rows}):
        t = {r["strategy"]: r[key] for r in rows if r["experts"] == experts}
        if t["fssdp"] < t["fsdp"]:
            return int(experts)
    return f"not within {max(r['experts'] for r in rows)} experts"
