"""Procedural token streams and the two adaptation tasks of the experiment.

The *language* is an order-2 Markov chain over ``vocab`` tokens whose
next-token logits are additive in the two previous tokens,

    logits(x_t | x_{t-2} = a, x_{t-1} = b) = u[a] + w[b],

with ``u`` and ``w`` random (vocab, vocab) tables. The true log-probability
of every token is known, so a model's excess loss over the chain's entropy
(an unbiased estimate of the KL divergence, in nats per token) measures how
much of the language it has not learnt. The first two tokens of a sequence
are uniform; losses count positions 2 onwards.

Tasks built on a base model pretrained on the chain:

* **remap**: the downstream chain relabels the *outputs* of a cycle of
  ``remap_tokens`` tokens (``u[:, perm]``, ``w[:, perm]``): the model must
  move probability mass between those tokens in every context, an update of
  rank about ``remap_tokens - 1`` in logit space, above the adapters' budget.
* **teacher**: a teacher is the base model plus a random rank-k update of
  every adapted kernel (``teacher_update``); the student (base + adapter)
  is distilled on the chain's sequences and scored by KL(teacher || student).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Chain(NamedTuple):
    """Logit tables of an order-2 additive Markov chain: u, w (vocab, vocab)."""

    u: jax.Array
    w: jax.Array


def make_chain(key: jax.Array, vocab: int, scale: float) -> Chain:
    """A random chain; ``scale`` is the std of each table's entries."""
    ku, kw = jax.random.split(key)
    u = scale * jax.random.normal(ku, (vocab, vocab))
    w = scale * jax.random.normal(kw, (vocab, vocab))
    return Chain(u, w)


def remap_chain(chain: Chain, n_tokens: int, seed: int) -> Chain:
    """Relabels the outputs of a random cycle of ``n_tokens`` tokens."""
    vocab = chain.u.shape[0]
    rng = np.random.default_rng(seed)
    cycle = rng.permutation(vocab)[:n_tokens]
    perm = np.arange(vocab)
    perm[cycle] = np.roll(cycle, 1)
    return Chain(chain.u[:, perm], chain.w[:, perm])


def next_logits(chain: Chain, a: jax.Array, b: jax.Array) -> jax.Array:
    """Logits (..., vocab) of the token after ``a, b`` (int arrays)."""
    return chain.u[a] + chain.w[b]


def sample(chain: Chain, key: jax.Array, batch: int, length: int) -> jax.Array:
    """Sequences (batch, length) int32 drawn from the chain."""
    vocab = chain.u.shape[0]
    k0, k1 = jax.random.split(key)
    first = jax.random.randint(k0, (batch, 2), 0, vocab)

    def body(carry, k):
        a, b = carry
        nxt = jax.random.categorical(k, next_logits(chain, a, b))
        return (b, nxt), nxt

    keys = jax.random.split(k1, length - 2)
    _, rest = jax.lax.scan(body, (first[:, 0], first[:, 1]), keys)
    return jnp.concatenate([first, rest.T], axis=1).astype(jnp.int32)


def true_log_probs(chain: Chain, tokens: jax.Array) -> jax.Array:
    """log p(x_t | x_{t-2}, x_{t-1}) of positions 2.. : (B, T - 2)."""
    logits = next_logits(chain, tokens[:, :-2], tokens[:, 1:-1])
    logp = jax.nn.log_softmax(logits, axis=-1)
    return jnp.take_along_axis(logp, tokens[:, 2:, None], axis=-1)[..., 0]


def lm_loss(logits: jax.Array, tokens: jax.Array) -> jax.Array:
    """Mean next-token cross-entropy of positions 2.. (nats per token).

    ``logits`` (B, T, vocab) come from the model run on ``tokens`` (B, T);
    logits at position t predict token t + 1.
    """
    logp = jax.nn.log_softmax(logits[:, 1:-1], axis=-1)
    picked = jnp.take_along_axis(logp, tokens[:, 2:, None], axis=-1)[..., 0]
    return -jnp.mean(picked)


def kl_loss(student_logits: jax.Array, teacher_logits: jax.Array) -> jax.Array:
    """Mean KL(teacher || student) over positions 1.. of (B, T, vocab) logits."""
    lt = jax.nn.log_softmax(teacher_logits[:, 1:-1], axis=-1)
    ls = jax.nn.log_softmax(student_logits[:, 1:-1], axis=-1)
    return jnp.mean(jnp.sum(jnp.exp(lt) * (lt - ls), axis=-1))


def low_rank_update(
    key: jax.Array, kernel: jax.Array, rank: int, relative_norm: float
) -> jax.Array:
    """A random rank-``rank`` matrix shaped like ``kernel`` (d_in, d_out).

    Its Frobenius norm is ``relative_norm`` times the kernel's, and its
    ``rank`` singular values are equal (a flat spectrum, so no rank-e
    approximation captures more than e / rank of it).
    """
    d_in, d_out = kernel.shape
    ku, kv = jax.random.split(key)
    q_u, _ = jnp.linalg.qr(jax.random.normal(ku, (d_in, rank)))
    q_v, _ = jnp.linalg.qr(jax.random.normal(kv, (d_out, rank)))
    delta = q_u @ q_v.T  # Frobenius norm sqrt(rank)
    target = relative_norm * jnp.linalg.norm(kernel)
    return delta * (target / jnp.sqrt(float(rank)))
