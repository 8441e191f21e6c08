"""Bootstrapped score distillation: the cycle, the augmented-render cache and
the two fine-tuned copies of the prior, as the released code runs them.

Within a cycle of ``P`` steps (``only_pretrain_step``), the first ``P // 5``
steps update the prior only: every ``augment_every`` steps a random view of
the current object is rendered, augmented by SDEdit with the frozen pretrained
prior (noise level ``t' = `` the current ``max_step``, 25 DDIM steps,
classifier-free guidance 7.5) and pushed into a cache of at most 10 images;
each step the DreamBooth copy takes one denoising step on a cached image with
its view-dependent prompt (dropped to the null prompt 10% of the time). In the
remaining steps, even steps fit the reference view and odd steps distil with
``g = w(t) (eps_DB^cfg(x_t; view-dependent prompt) - eps_est(x_t;
view-independent prompt))``, after which the estimator copy takes a denoising
step on the current render.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxsuite.gen3d import diffusion, guidance

CACHE_SIZE = 10
SDEDIT_STEPS = 25
SDEDIT_CFG = 7.5
NULL_PROMPT_P = 0.1
PRETRAIN_FRACTION = 5  # the first P // 5 steps of a cycle update the prior only
AUGMENTS_PER_CYCLE = 8  # released: one every 25 of the 200 prior-only steps


class Cache(NamedTuple):
    """Augmented renders: ``images (C, H, W, 3)`` in ``[-1, 1]``,
    ``azimuth (C,)`` in degrees, ``count ()`` images pushed so far."""

    images: jax.Array
    azimuth: jax.Array
    count: jax.Array


def empty_cache(size: int, capacity: int = CACHE_SIZE) -> Cache:
    return Cache(
        jnp.zeros((capacity, size, size, 3), jnp.float32),
        jnp.zeros((capacity,), jnp.float32),
        jnp.zeros((), jnp.int32),
    )


def push(cache: Cache, image: jax.Array, azimuth: jax.Array) -> Cache:
    """Adds one image, replacing the oldest when full (FIFO)."""
    i = cache.count % cache.images.shape[0]
    return Cache(
        cache.images.at[i].set(image),
        cache.azimuth.at[i].set(azimuth),
        cache.count + 1,
    )


def draw(cache: Cache, key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    """``n`` random cached images and their azimuths (from the filled part)."""
    filled = jnp.maximum(jnp.minimum(cache.count, cache.images.shape[0]), 1)
    idx = jax.random.randint(key, (n,), 0, filled)
    return cache.images[idx], cache.azimuth[idx]


def phase(step: int, cycle: int) -> str:
    """``"prior"`` (update the DreamBooth copy only), ``"ref"`` or ``"guide"``
    for the 0-based ``step`` (the released loop's ``global_step``)."""
    if step % cycle < cycle // PRETRAIN_FRACTION:
        return "prior"
    return "ref" if step % 2 == 0 else "guide"


def augment_every(cycle: int) -> int:
    """Steps between augmentations (25 at the released ``P = 1000``)."""
    return max(1, (cycle // PRETRAIN_FRACTION) // AUGMENTS_PER_CYCLE)


def sdedit_augment(
    schedule: diffusion.Schedule,
    apply: guidance.Apply,
    params: Any,
    x: jax.Array,
    cond: jax.Array,
    uncond: jax.Array,
    strength: float,
    key: jax.Array,
    steps: int = SDEDIT_STEPS,
    scale: float = SDEDIT_CFG,
) -> jax.Array:
    """SDEdit of renders ``x (B, H, W, 3)`` with the frozen prior (CFG)."""

    def eps_fn(x_t, t):
        return guidance.cfg_apply(apply, params, x_t, t, cond, uncond, scale)

    return diffusion.sdedit(schedule, eps_fn, x, strength, steps, key)


def prompt_dropout(key: jax.Array, cond: jax.Array, null: jax.Array) -> jax.Array:
    """Replaces each prompt by the null prompt with probability 10%."""
    drop = jax.random.uniform(key, (cond.shape[0], 1)) < NULL_PROMPT_P
    return jnp.where(drop, null, cond)
