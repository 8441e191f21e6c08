"""Top-2 GShard gating with per-group expert capacity and dropped-token counts.

One *group* is the tokens of one device: capacity is enforced per (group,
expert) before any token leaves its device, so every parallel strategy and
the single-device reference compute the same function.

The auxiliary balancing loss is the standard Switch/GShard one,
``E * sum_e f_e * P_e`` per group and layer (``f_e`` = fraction of the
group's tokens whose first choice is ``e``, ``P_e`` = mean router
probability), to be weighted by ``alpha`` (0.01) and added for every MoE
layer. Two named departures from GShard top-2:

* the second expert is always used (GShard dispatches it only with
  probability ``2 g_2``, its "random routing"); this raises the measured
  loads of second choices and hence the dropped assignments;
* capacity is counted per device group (``cf * 2 T / E`` per group of ``T``
  tokens), as GShard's local groups do, not over the global batch: a
  device's hot expert drops tokens even when the expert has room globally.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp


class Gating(NamedTuple):
    """Top-2 routing of ``T`` tokens over ``E`` experts.

    Attributes:
      expert: (T, 2) int32 chosen experts (first, second choice).
      gate: (T, 2) float combine weights, renormalised over the two choices.
      position: (T, 2) int32 slot in the expert's queue (``< capacity`` if kept).
      keep: (T, 2) bool, whether the assignment fits the capacity.
      load: (E,) float32 tokens assigned to each expert before capacity.
      dropped: () float32 number of assignments dropped by capacity.
      aux_loss: () Switch/GShard load-balancing loss ``E * sum_e f_e * P_e``.
    """

    expert: jax.Array
    gate: jax.Array
    position: jax.Array
    keep: jax.Array
    load: jax.Array
    dropped: jax.Array
    aux_loss: jax.Array


def capacity(tokens: int, num_experts: int, capacity_factor: float) -> int:
    """Per-expert queue length ``ceil(cf * tokens * 2 / E)`` for top-2 routing."""
    return max(1, math.ceil(capacity_factor * tokens * 2 / num_experts))


def top2_gating(
    logits: jax.Array, cap: int, second_draw: jax.Array | None = None
) -> Gating:
    """GShard top-2 gating of one group.

    First choices fill each expert's queue in token order; second choices
    queue behind all kept first choices. Assignments past ``cap`` are dropped.

    Args:
      logits: (T, E) router logits.
      cap: per-expert capacity.
      second_draw: optional (T,) uniform draws in [0, 1). Given, a token's
        second choice is dispatched only where ``draw < 2 g_2 / (g_1 + g_2)``
        (GShard's random routing); a second choice not dispatched takes no
        queue position, adds no load and is not counted as dropped. ``None``
        (the default, used in training) dispatches every second choice.

    Returns:
      A :class:`Gating`.
    """
    num_experts = logits.shape[-1]
    # float32, or float64 for float64 logits (the references)
    dtype = jnp.float64 if logits.dtype == jnp.float64 else jnp.float32
    probs = jax.nn.softmax(logits.astype(dtype), axis=-1)
    e1 = jnp.argmax(probs, axis=-1)
    mask1 = jax.nn.one_hot(e1, num_experts, dtype=jnp.int32)
    masked = jnp.where(mask1 > 0, -jnp.inf, probs)
    e2 = jnp.argmax(masked, axis=-1)
    g1 = jnp.sum(probs * mask1.astype(dtype), axis=-1)
    g2 = jnp.sum(probs * jax.nn.one_hot(e2, num_experts, dtype=dtype), axis=-1)
    denom = g1 + g2
    if second_draw is None:
        use2 = jnp.ones(e2.shape, bool)
    else:
        use2 = second_draw < 2 * g2 / denom
    mask2 = jax.nn.one_hot(e2, num_experts, dtype=jnp.int32)
    mask2 = mask2 * use2[:, None].astype(jnp.int32)
    pos1 = jnp.sum((jnp.cumsum(mask1, axis=0) - 1) * mask1, axis=-1)
    keep1 = pos1 < cap
    kept1 = mask1 * keep1[:, None].astype(jnp.int32)
    kept1_per_expert = jnp.sum(kept1, axis=0, dtype=jnp.int32)
    pos2 = jnp.sum(
        (jnp.cumsum(mask2, axis=0) - 1 + kept1_per_expert[None, :]) * mask2, axis=-1
    )
    keep2 = use2 & (pos2 < cap)
    keep = jnp.stack([keep1, keep2], axis=-1)
    dispatched = jnp.stack([jnp.ones_like(use2), use2], axis=-1)
    frac = jnp.mean(mask1.astype(dtype), axis=0)
    aux = num_experts * jnp.sum(frac * jnp.mean(probs, axis=0))
    return Gating(
        expert=jnp.stack([e1, e2], axis=-1).astype(jnp.int32),
        gate=jnp.stack([g1 / denom, g2 / denom], axis=-1),
        position=jnp.stack([pos1, pos2], axis=-1).astype(jnp.int32),
        keep=keep,
        load=jnp.sum(mask1 + mask2, axis=0).astype(dtype),
        dropped=jnp.sum(dispatched & ~keep).astype(dtype),
        aux_loss=aux,
    )
