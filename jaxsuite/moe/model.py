"""A small GPT-style MoE language model and its single-device dense reference.

Each of ``L`` blocks is ``x += attn(norm(x)); x += moe(norm(x))`` with
causal multi-head attention and a top-2 MoE FFN (``d_ffn = 2 d_model``).
Parameters are pure pytrees:

* ``dense``: ``embed (V, h)``, ``attn (L, 4, h, h)`` (q, k, v, o),
  ``router (L, h, E)``, ``unembed (h, V)``: replicated, data parallel.
* expert parameters: one flat vector of ``P = 2 h f`` floats per expert
  (``w1 (h, f)`` then ``w2 (f, h)``); the reference holds them as
  ``(L, E, P)``, the parallel strategies as per-device slot pools.

:func:`forward` is shared by the reference and the per-device body of every
strategy; only the ``moe_fn`` it is given differs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxsuite.moe import gating as gating_lib

Dense = dict[str, jax.Array]
MoeFn = Callable[[int, jax.Array], tuple[jax.Array, gating_lib.Gating]]


def expert_size(hidden: int, ffn: int) -> int:
    """Floats per expert: ``w1 (h, f)`` and ``w2 (f, h)``."""
    return 2 * hidden * ffn


def init_params(
    key: jax.Array, *, vocab: int, hidden: int, ffn: int, layers: int, experts: int
) -> tuple[Dense, jax.Array]:
    """Initial dense parameters and expert parameters ``(L, E, P)``."""
    keys = jax.random.split(key, 6)
    h, f = hidden, ffn
    dense = {
        "embed": jax.random.normal(keys[0], (vocab, h)) * 0.5,
        "attn": jax.random.normal(keys[1], (layers, 4, h, h)) / jnp.sqrt(h),
        "router": jax.random.normal(keys[2], (layers, h, experts)) / jnp.sqrt(h),
        "unembed": jax.random.normal(keys[3], (h, vocab)) / jnp.sqrt(h),
    }
    w1 = jax.random.normal(keys[4], (layers, experts, h * f)) / jnp.sqrt(h)
    w2 = jax.random.normal(keys[5], (layers, experts, f * h)) / jnp.sqrt(f)
    return dense, jnp.concatenate([w1, w2], axis=-1)


def expert_ffn(w: jax.Array, x: jax.Array, hidden: int, ffn: int) -> jax.Array:
    """Applies ``n`` experts to their own token rows.

    Args:
      w: (n, P) flat expert parameters.
      x: (n, N, h) tokens, row block i goes to expert i.

    Returns:
      (n, N, h) ``gelu(x @ w1) @ w2``; zero rows map to zero rows.
    """
    n = w.shape[0]
    w1 = w[:, : hidden * ffn].reshape(n, hidden, ffn)
    w2 = w[:, hidden * ffn :].reshape(n, ffn, hidden)
    return jnp.einsum(
        "nsf,nfh->nsh", jax.nn.gelu(jnp.einsum("nsh,nhf->nsf", x, w1)), w2
    )


def rms_norm(x: jax.Array) -> jax.Array:
    """Parameter-free RMS normalisation over the last axis."""
    return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + 1e-6)


def attention(x: jax.Array, w: jax.Array, heads: int) -> jax.Array:
    """Causal multi-head self-attention.

    Args:
      x: (B, T, h).
      w: (4, h, h) query, key, value and output projections.
      heads: number of heads (divides h).

    Returns:
      (B, T, h).
    """
    b, t, h = x.shape
    q, k, v = (jnp.einsum("bth,hd->btd", x, w[i]) for i in range(3))
    split = lambda a: a.reshape(b, t, heads, h // heads)
    q, k, v = split(q), split(k), split(v)
    scores = jnp.einsum("bqnd,bknd->bnqk", q, k) / jnp.sqrt(h / heads)
    causal = jnp.tril(jnp.ones((t, t), dtype=bool))
    scores = jnp.where(causal, scores, -1e30)
    out = jnp.einsum("bnqk,bknd->bqnd", jax.nn.softmax(scores, axis=-1), v)
    return jnp.einsum("btd,dh->bth", out.reshape(b, t, h), w[3])


def combine(g: gating_lib.Gating, expert_out: jax.Array, cap: int) -> jax.Array:
    """Weighted sum of each token's kept expert outputs.

    Args:
      g: gating of ``T`` tokens.
      expert_out: (E, cap, h) outputs in expert-queue order.
      cap: capacity.

    Returns:
      (T, h).
    """
    flat = expert_out.reshape(-1, expert_out.shape[-1])
    idx = jnp.where(g.keep, g.expert * cap + g.position, 0)
    w = jnp.where(g.keep, g.gate, 0.0)
    return jnp.einsum("tk,tkh->th", w, flat[idx])


def dispatch(x: jax.Array, g: gating_lib.Gating, num_experts: int, cap: int):
    """Scatters tokens into per-expert queues.

    Args:
      x: (T, h) tokens.
      g: their gating.

    Returns:
      (E, cap, h) queues; empty positions are zero.
    """
    h = x.shape[-1]
    idx = jnp.where(g.keep, g.expert * cap + g.position, num_experts * cap)
    buf = jnp.zeros((num_experts * cap + 1, h), x.dtype)
    buf = buf.at[idx.reshape(-1)].add(jnp.repeat(x, 2, axis=0))
    return buf[:-1].reshape(num_experts, cap, h)


def forward(
    dense: Dense, tokens: jax.Array, moe_fn: MoeFn, *, heads: int
) -> tuple[jax.Array, jax.Array, jax.Array, list[gating_lib.Gating]]:
    """Runs the model on a batch and returns loss statistics.

    Args:
      dense: dense parameters.
      tokens: (B, T) int32 token ids.
      moe_fn: ``(layer, x (N, h)) -> (y (N, h), gating)`` for ``N = B T``.
      heads: attention heads.

    Returns:
      (sum of next-token cross-entropies, number of predictions, sum over
      layers of the balancing loss, per-layer gatings). The training loss is
      ``ce / count + alpha * aux`` (Switch/GShard: every layer adds its
      ``alpha E sum_e f_e P_e``, averaged over device groups).
    """
    b, t = tokens.shape
    x = dense["embed"][tokens]
    gatings = []
    aux = jnp.zeros((), x.dtype)
    for layer in range(dense["attn"].shape[0]):
        x = x + attention(rms_norm(x), dense["attn"][layer], heads)
        y, g = moe_fn(layer, rms_norm(x).reshape(b * t, -1))
        x = x + y.reshape(b, t, -1)
        aux = aux + g.aux_loss
        gatings.append(g)
    logits = jnp.einsum("bth,hv->btv", rms_norm(x), dense["unembed"])
    logp = jax.nn.log_softmax(logits[:, :-1], axis=-1)
    ce = -jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)
    return jnp.sum(ce), jnp.asarray(b * (t - 1), ce.dtype), aux, gatings


def reference_loss(
    dense: Dense,
    experts: jax.Array,
    tokens: jax.Array,
    *,
    groups: int,
    cap: int,
    heads: int,
    hidden: int,
    ffn: int,
    aux_weight: float,
    second_draws: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, Any]]:
    """Single-device dense reference of the loss every strategy computes.

    Every expert is applied to every token (no dispatch); the gating of each
    of ``groups`` contiguous row blocks (one per device) picks and weights
    the outputs.

    Args:
      dense: dense parameters.
      experts: (L, E, P) expert parameters.
      tokens: (groups * B, T) global batch; group g = rows of device g.
      second_draws: optional (L, groups, B T) uniform draws for GShard's
        random routing of second choices (see ``gating.top2_gating``); the
        strategies dispatch every second choice (``None``).

    Returns:
      (loss, {"load": (L, groups, E), "dropped": (L,)}).
    """
    num_experts = experts.shape[1]

    def moe_fn(layer, x):
        n = x.shape[0]
        xg = x.reshape(groups, n // groups, -1)
        logits = jnp.einsum("gth,he->gte", xg, dense["router"][layer])
        if second_draws is None:
            g = jax.vmap(lambda lg: gating_lib.top2_gating(lg, cap))(logits)
        else:
            g = jax.vmap(lambda lg, u: gating_lib.top2_gating(lg, cap, u))(
                logits, second_draws[layer]
            )
        every = jnp.broadcast_to(x, (num_experts, *x.shape))
        outs = expert_ffn(experts[layer], every, hidden, ffn)  # (E, N, h)
        outs = outs.reshape(num_experts, groups, n // groups, -1)
        tok = jnp.arange(n // groups)
        picked = outs[g.expert, jnp.arange(groups)[:, None, None], tok[None, :, None]]
        w = jnp.where(g.keep, g.gate, 0.0)
        y = jnp.einsum("gtk,gtkh->gth", w, picked).reshape(n, -1)
        merged = g._replace(aux_loss=jnp.mean(g.aux_loss))
        return y, merged

    ce, count, aux, gatings = forward(dense, tokens, moe_fn, heads=heads)
    loss = ce / count + aux_weight * aux
    stats = {
        "load": jnp.stack([g.load for g in gatings]),
        "dropped": jnp.stack([jnp.sum(g.dropped) for g in gatings]),
    }
    return loss, stats
