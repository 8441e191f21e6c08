"""What the gating's two departures from GShard top-2 do to the expert loads.

The strategies dispatch every token's second choice and count capacity per
device group (:mod:`jaxsuite.moe.gating`). GShard dispatches the second
choice only with probability ``2 g_2`` ("random routing"), and a global
capacity would let a device's hot expert use room other devices leave. This
study trains the single-device dense reference
(:func:`jaxsuite.moe.model.reference_loss`, the function every strategy
computes) on the experiment's token stream under each of four gatings:

* ``code``: this library's gating (the trained runs' loads, to rounding);
* ``random_routing``: GShard's random dispatch of second choices;
* ``global_capacity``: one capacity over the global batch;
* ``gshard``: both.

and reports the measured loads: how uneven they are (busiest expert over
the mean, share of the ``E / D`` busiest experts, i.e. one device's worth),
how many assignments are dispatched and dropped per token, and the loss.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxsuite.core import metrics as metrics_lib
from jaxsuite.core import optim
from jaxsuite.moe import data, gating, model
from jaxsuite.moe.settings import DataSettings, ModelSettings

# name -> (random routing of second choices, capacity over the global batch)
VARIANTS = {
    "code": (False, False),
    "random_routing": (True, False),
    "global_capacity": (False, True),
    "gshard": (True, True),
}


@dataclasses.dataclass(frozen=True)
class StudySettings:
    """The study's model, data and run (the experiment's own).

    Attributes:
      model: the model's shape, capacity, balancing weight and learning rate.
      data: the token stream's drift.
      devices: D, device groups (capacity is counted per group).
      steps: Adam steps per variant.
      skew: the token stream's skew.
      seed: initialisation and data seed.
    """

    model: ModelSettings
    data: DataSettings
    devices: int
    steps: int
    skew: float
    seed: int


def train_variant(
    s: StudySettings, random_routing: bool, global_capacity: bool
) -> dict[str, np.ndarray]:
    """Trains the dense reference with Adam under one gating variant.

    Initial parameters, token batches and optimizer are the experiment's,
    so the ``code`` variant retraces the strategies' training.

    Returns:
      ``loss (N,)``, ``load (N, L, E)`` dispatched assignments per expert
      (summed over groups), ``dropped (N, L)`` dispatched but over capacity.
    """
    m = s.model
    dense, experts = model.init_params(
        jax.random.PRNGKey(s.seed),
        vocab=m.vocab,
        hidden=m.hidden,
        ffn=m.ffn,
        layers=m.layers,
        experts=m.experts,
    )
    groups = 1 if global_capacity else s.devices
    tokens = s.devices * m.batch_per_device * m.seq_len
    cap = gating.capacity(tokens // groups, m.experts, m.capacity_factor)
    tx = optax.adam(m.learning_rate)
    params = {"dense": dense, "experts": experts}
    opt = tx.init(params)

    @jax.jit
    def step(params, opt, batch, key):
        draws = None
        if random_routing:
            draws = jax.random.uniform(key, (m.layers, groups, tokens // groups))

        def objective(p):
            return model.reference_loss(
                p["dense"],
                p["experts"],
                batch,
                groups=groups,
                cap=cap,
                heads=m.heads,
                hidden=m.hidden,
                ffn=m.ffn,
                aux_weight=m.aux_weight,
                second_draws=draws,
            )

        (loss, stats), grads = jax.value_and_grad(objective, has_aux=True)(params)
        updates, opt = optim.update(tx, grads, opt, params)
        return optax.apply_updates(params, updates), opt, loss, stats

    key = jax.random.PRNGKey(s.seed + 1)
    out = {
        "loss": np.zeros(s.steps, np.float32),
        "load": np.zeros((s.steps, m.layers, m.experts), np.float32),
        "dropped": np.zeros((s.steps, m.layers), np.float32),
    }
    for i in range(s.steps):
        batch = data.batch(
            i,
            batch_size=s.devices * m.batch_per_device,
            seq_len=m.seq_len,
            vocab=m.vocab,
            skew=s.skew,
            seed=s.seed,
            period=s.data.period,
            follow=s.data.follow,
        )
        params, opt, loss, stats = step(
            params, opt, jnp.asarray(batch), jax.random.fold_in(key, i)
        )
        out["loss"][i] = float(loss)
        out["load"][i] = np.asarray(stats["load"]).sum(axis=1)
        out["dropped"][i] = np.asarray(stats["dropped"])
    return out


def summarise(
    trace: dict[str, np.ndarray], *, devices: int, tokens: int
) -> dict[str, float]:
    """Load statistics of a trace from :func:`train_variant`.

    Args:
      trace: ``load (N, L, E)``, ``dropped (N, L)``, ``loss (N,)``.
      devices: D (the busiest ``E / D`` experts are one device's worth).
      tokens: tokens per step (the global batch).

    Returns:
      ``max_over_mean`` (busiest expert's load over the mean, averaged over
      steps and layers), ``top_share`` (share of the load on the ``E / D``
      busiest experts of a layer), ``dispatched_per_token`` (of 2),
      ``dropped_per_token``, and ``final_loss`` (mean of the last tenth of
      the steps).
    """
    load = trace["load"]  # (N, L, E)
    n, _, experts = load.shape
    total = load.sum(axis=-1)  # (N, L)
    top = max(1, experts // devices)
    ranked = -np.sort(-load, axis=-1)
    tail = max(1, n // 10)
    return {
        "max_over_mean": float(np.mean(load.max(-1) / (total / experts))),
        "top_share": float(np.mean(ranked[..., :top].sum(-1) / total)),
        "dispatched_per_token": float(np.mean(total) / tokens),
        "dropped_per_token": float(np.mean(trace["dropped"]) / tokens),
        "final_loss": float(np.mean(trace["loss"][-tail:])),
    }


def run_study(s: StudySettings) -> dict[str, Any]:
    """Every variant's load summary, keyed by variant name."""
    out = {}
    tokens = s.devices * s.model.batch_per_device * s.model.seq_len
    for name, (random_routing, global_capacity) in VARIANTS.items():
        trace = train_variant(s, random_routing, global_capacity)
        out[name] = summarise(trace, devices=s.devices, tokens=tokens)
    return out


def table(study: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """Rows of ``results.json``'s ``gating`` table, one per variant."""
    return [
        {
            "gating": name,
            "random_routing": VARIANTS[name][0],
            "global_capacity": VARIANTS[name][1],
            **summary,
        }
        for name, summary in study.items()
    ]


def metrics(study: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Load skew and drops of this library's gating and of GShard's."""
    out = {}
    for name in ("code", "gshard"):
        if name not in study:
            continue
        out[f"gating_{name}_expert_load_max_over_mean"] = metrics_lib.metric(
            study[name]["max_over_mean"], "ratio (dense reference, measured)"
        )
        out[f"gating_{name}_dropped_per_token"] = metrics_lib.metric(
            study[name]["dropped_per_token"], "assignments (dense reference)"
        )
    return out


def text(study: dict[str, dict[str, float]]) -> str:
    """One paragraph of the verdict: what each departure does to the loads."""

    def fmt(key, spec):
        return ", ".join(f"{n} {v[key]:{spec}}" for n, v in study.items())

    return (
        "Gating departures, measured by training the dense reference under "
        "each gating on the same stream: busiest expert over mean load "
        f"{fmt('max_over_mean', '.2f')}; share of the E/D busiest experts "
        f"{fmt('top_share', '.3f')}; assignments dispatched per token "
        f"{fmt('dispatched_per_token', '.2f')} and dropped per token "
        f"{fmt('dropped_per_token', '.3f')}; final loss "
        f"{fmt('final_loss', '.3f')}."
    )
