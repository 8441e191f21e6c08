"""Discrete-time diffusion: noise schedules, forward noising, DDIM sampling.

``T`` training timesteps with ``alpha_bar_t = prod_{s<=t} (1 - beta_s)``;
``x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps``. The default is
the cosine schedule of Nichol & Dhariwal (used by the pixel-space DeepFloyd
IF, ``squaredcos_cap_v2`` in diffusers) with ``T = 1000``; ``linear`` and
``scaled_linear`` (Stable Diffusion's) are there for loaded real weights.

A denoiser is any function ``eps_fn(x_t, t) -> eps_hat`` of images
``(B, H, W, C)`` and integer-valued timesteps ``(B,)``; classifier-free
guidance is :func:`cfg_eps`. :func:`ddim_sample` draws samples (``eta = 0``:
deterministic DDIM, the first-order DPM-Solver) and :func:`sdedit` noises an
image to ``t'`` and denoises it back (the SDEdit augmentation of BSD).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

EpsFn = Callable[[jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A noise schedule; ``alphas_cumprod`` is a float32 numpy ``(T,)``."""

    kind: str = "cosine"
    num_steps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02

    @property
    def alphas_cumprod(self) -> np.ndarray:
        return alphas_cumprod(self)


def alphas_cumprod(schedule: Schedule) -> np.ndarray:
    """``alpha_bar_t`` for ``t = 0..T-1``, float32 ``(T,)``."""
    n = schedule.num_steps
    if schedule.kind == "cosine":
        s = 0.008
        f = lambda u: math.cos((u + s) / (1 + s) * math.pi / 2) ** 2
        betas = np.array([min(1 - f((i + 1) / n) / f(i / n), 0.999) for i in range(n)])
    elif schedule.kind == "linear":
        betas = np.linspace(schedule.beta_start, schedule.beta_end, n)
    elif schedule.kind == "scaled_linear":
        betas = np.linspace(schedule.beta_start**0.5, schedule.beta_end**0.5, n) ** 2
    else:
        raise ValueError(f"Unknown schedule {schedule.kind!r}.")
    return np.cumprod(1.0 - betas).astype(np.float32)


def _bcast(a: jax.Array, x: jax.Array) -> jax.Array:
    return a.reshape(a.shape + (1,) * (x.ndim - a.ndim))


def q_sample(
    schedule: Schedule, x0: jax.Array, t: jax.Array, eps: jax.Array
) -> jax.Array:
    """Forward noising ``x_t`` of ``x0 (B, ...)`` at integer ``t (B,)``."""
    ab = jnp.asarray(schedule.alphas_cumprod)[t]
    return _bcast(jnp.sqrt(ab), x0) * x0 + _bcast(jnp.sqrt(1.0 - ab), x0) * eps


def predict_x0(
    schedule: Schedule, x_t: jax.Array, t: jax.Array, eps: jax.Array
) -> jax.Array:
    """``x0_hat = (x_t - sqrt(1 - ab) eps) / sqrt(ab)``."""
    ab = jnp.asarray(schedule.alphas_cumprod)[t]
    return (x_t - _bcast(jnp.sqrt(1.0 - ab), x_t) * eps) / _bcast(jnp.sqrt(ab), x_t)


def cfg_eps(eps_cond: jax.Array, eps_uncond: jax.Array, scale: float) -> jax.Array:
    """Classifier-free guidance ``eps_u + s (eps_c - eps_u)``."""
    return eps_uncond + scale * (eps_cond - eps_uncond)


def ddim_timesteps(t_start: int, num_steps: int) -> np.ndarray:
    """Decreasing integer timesteps from ``t_start`` to 0, ``(num_steps,)``."""
    return np.unique(np.linspace(0, t_start, num_steps).round().astype(np.int32))[::-1]


def ddim_sample(
    schedule: Schedule,
    eps_fn: EpsFn,
    x_t: jax.Array,
    t_start: int,
    num_steps: int,
    *,
    key: jax.Array | None = None,
    eta: float = 0.0,
    clip: float | None = 1.0,
) -> jax.Array:
    """Denoises ``x_t (B, ...)`` from timestep ``t_start`` to a sample ``x_0``.

    Args:
      schedule: the noise schedule.
      eps_fn: denoiser ``(x (B, ...), t (B,)) -> eps (B, ...)``.
      x_t: noisy images at ``t_start``.
      t_start: the starting timestep (``T - 1`` for sampling from noise).
      num_steps: number of denoiser calls.
      key: noise for ``eta > 0``.
      eta: DDIM stochasticity (0: deterministic).
      clip: clip ``x0_hat`` to ``[-clip, clip]`` (None: no clipping).

    Returns:
      ``x_0`` of the same shape as ``x_t``.
    """
    ab_all = jnp.asarray(schedule.alphas_cumprod)
    if isinstance(t_start, (int, np.integer)):
        ts = jnp.asarray(ddim_timesteps(int(t_start), num_steps))
    else:  # traced: fixed step count, repeated timesteps are no-ops
        ts = jnp.linspace(jnp.asarray(t_start, jnp.float32), 0.0, num_steps)
        ts = jnp.round(ts).astype(jnp.int32)
    t_next = jnp.concatenate([ts[1:], jnp.full((1,), -1, jnp.int32)])

    def step(carry, inp):
        x, k = carry
        t, tn = inp
        tb = jnp.full((x.shape[0],), t, jnp.int32)
        eps = eps_fn(x, tb)
        ab = ab_all[t]
        ab_n = jnp.where(tn >= 0, ab_all[jnp.maximum(tn, 0)], 1.0)
        ab_n = jnp.where(tn == t, ab, ab_n)
        x0 = (x - jnp.sqrt(1 - ab) * eps) / jnp.sqrt(ab)
        if clip is not None:
            x0 = jnp.clip(x0, -clip, clip)
            eps = (x - jnp.sqrt(ab) * x0) / jnp.sqrt(1 - ab)
        sigma = eta * jnp.sqrt(jnp.maximum((1 - ab_n) / (1 - ab) * (1 - ab / ab_n), 0))
        x = jnp.sqrt(ab_n) * x0 + jnp.sqrt(jnp.maximum(1 - ab_n - sigma**2, 0.0)) * eps
        if key is not None and eta > 0:
            k, sub = jax.random.split(k)
            x = x + sigma * jax.random.normal(sub, x.shape, x.dtype)
        return (x, k), None

    k0 = key if key is not None else jax.random.PRNGKey(0)
    (x, _), _ = jax.lax.scan(step, (x_t, k0), (ts, t_next))
    return x


def sdedit(
    schedule: Schedule,
    eps_fn: EpsFn,
    x0: jax.Array,
    strength: float | jax.Array,
    num_steps: int,
    key: jax.Array,
) -> jax.Array:
    """SDEdit: noise ``x0 (B, ...)`` to ``t' = strength (T - 1)`` and denoise it.

    ``strength`` in ``(0, 1]`` is BSD's ``t'`` (the released code anneals it
    from 0.5 to 0.2).
    """
    if isinstance(strength, (int, float)):
        t_start = int(round(strength * (schedule.num_steps - 1)))
        num_steps = max(1, min(num_steps, t_start))
    else:  # traced strength: one compiled program for every t'
        t_start = jnp.round(strength * (schedule.num_steps - 1)).astype(jnp.int32)
    t = jnp.full((x0.shape[0],), t_start, jnp.int32)
    x_t = q_sample(schedule, x0, t, jax.random.normal(key, x0.shape, x0.dtype))
    return ddim_sample(schedule, eps_fn, x_t, t_start, num_steps)
