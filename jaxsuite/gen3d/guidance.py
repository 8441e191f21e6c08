"""Score distillation as pure functions: SDS, VSD and BSD, with the stop-gradient form.

A rendered batch ``x (B, ...)`` (images in ``[-1, 1]``) is noised at a random
timestep ``t`` in ``[t_min, t_max] * T``; a guidance gradient
``g = w(t) (eps_target - eps_ref)`` with ``w(t) = 1 - alpha_bar_t`` is turned
into a loss whose gradient with respect to ``x`` is exactly ``g / B``:
``L = 0.5 ||x - sg(x - g)||^2 / B`` (threestudio's form for every guidance).

* **SDS** (DreamFusion): ``eps_target`` = the prior's classifier-free-guided
  prediction, ``eps_ref`` = the injected noise.
* **VSD** (ProlificDreamer): ``eps_ref`` = an estimator network's prediction
  for the distribution of the current renders (trained on them with the
  ordinary denoising loss, :func:`denoising_loss`).
* **BSD** (DreamCraft3D): VSD in which ``eps_target`` comes from a copy of
  the prior fine-tuned DreamBooth-style on augmented renders of the current
  scene (``jaxsuite.gen3d.bsd`` runs the alternation).

A denoiser is ``apply(params, x_t, t, cond) -> eps``; ``params`` is any pytree
(an NNX state for the UNets, a mixture for ``jaxsuite.gen3d.toy``). For the
view prior, ``extra`` (the reference image) is concatenated to ``x_t`` inside
``apply``'s wrapper (:func:`concat_apply`). When several devices are present,
:func:`guidance_grad` evaluates the views of a batch on different devices with
``jax.shard_map``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsuite.core import devices
from jaxsuite.gen3d import diffusion

Apply = Callable[[Any, jax.Array, jax.Array, jax.Array], jax.Array]


class Guidance(NamedTuple):
    """A distillation loss and what produced it."""

    loss: jax.Array  # scalar, d loss / d x = grad / B
    grad: jax.Array  # (B, ...) the guidance gradient g
    t: jax.Array  # (B,) timesteps used


def anneal(step, start_step: float, start, end, end_step: float):
    """threestudio's ``C([start_step, start, end, end_step])``: linear in ``step``."""
    if end_step <= start_step:
        return end if step >= end_step else start
    f = np.clip((step - start_step) / (end_step - start_step), 0.0, 1.0)
    return start + (end - start) * f


def sample_t(key: jax.Array, batch: int, t_range, num_steps: int) -> jax.Array:
    """Integer timesteps uniform in ``[t_min T, t_max T]``, ``(batch,)``.

    ``t_range`` may be a pair of Python floats or a traced ``(2,)`` array (so
    annealed ranges do not recompile).
    """
    lo = jnp.floor(jnp.asarray(t_range[0], jnp.float32) * num_steps).astype(jnp.int32)
    hi = jnp.floor(jnp.asarray(t_range[1], jnp.float32) * num_steps).astype(jnp.int32)
    hi = jnp.maximum(hi, lo + 1)
    return jax.random.randint(key, (batch,), lo, hi + 1).clip(0, num_steps - 1)


def distillation_loss(x: jax.Array, grad: jax.Array) -> jax.Array:
    """``0.5 ||x - sg(x - grad)||^2 / B``; its gradient wrt ``x`` is ``grad / B``."""
    grad = jnp.nan_to_num(grad)
    target = jax.lax.stop_gradient(x - grad)
    return 0.5 * jnp.sum((x - target) ** 2) / x.shape[0]


def concat_apply(apply: Apply) -> Apply:
    """Wraps ``apply`` for a view prior: ``cond = (camera, reference)``.

    The reference image ``(B, H, W, C)`` is concatenated to ``x_t``'s
    channels; a zero reference is the unconditional input.
    """

    def f(params, x_t, t, cond):
        cam, ref = cond
        return apply(params, jnp.concatenate([x_t, ref], -1), t, cam)

    return f


def _cat_cond(a, b):
    return jax.tree.map(lambda u, v: jnp.concatenate([u, v]), a, b)


def cfg_apply(
    apply: Apply, params: Any, x_t: jax.Array, t: jax.Array, cond, uncond, scale
) -> jax.Array:
    """Classifier-free guided prediction ``eps_u + s (eps_c - eps_u)`` in one
    batched call; ``cond``/``uncond`` are pytrees with leading axis ``B``."""
    out = apply(
        params,
        jnp.concatenate([x_t, x_t]),
        jnp.concatenate([t, t]),
        _cat_cond(cond, uncond),
    )
    e_c, e_u = jnp.split(out, 2)
    return diffusion.cfg_eps(e_c, e_u, scale)


def _views_mesh():
    n = jax.device_count()
    return devices.make_mesh((n,), ("views",)) if n > 1 else None


def guidance_grad(
    schedule: diffusion.Schedule,
    apply: Apply,
    params: Any,
    x: jax.Array,
    t: jax.Array,
    eps: jax.Array,
    cond: Any,
    uncond: Any,
    scale: float,
    est: tuple[Apply, Any, Any] | None = None,
    shard: bool = True,
) -> jax.Array:
    """``g = w(t) (eps_cfg(x_t) - eps_ref)`` for a batch of views, no gradient.

    Args:
      schedule: noise schedule.
      apply, params: the prior (or its DreamBooth copy).
      x: renders ``(B, H, W, C)`` in ``[-1, 1]`` (treated as constants).
      t: timesteps ``(B,)``; eps: noise like ``x``.
      cond, uncond: conditions (pytrees with leading axis ``B``).
      scale: classifier-free guidance scale.
      est: ``(apply, params, cond)`` of the estimator for VSD/BSD; None: SDS.
      shard: split the views over devices with ``shard_map`` when there are
        several and ``B`` divides evenly.

    Returns:
      ``g`` of shape ``(B, H, W, C)``.
    """

    def grad_fn(params, est_params, x, t, eps, cond, uncond, est_cond):
        x_t = diffusion.q_sample(schedule, x, t, eps)
        target = cfg_apply(apply, params, x_t, t, cond, uncond, scale)
        ref = eps if est is None else est[0](est_params, x_t, t, est_cond)
        w = 1.0 - jnp.asarray(schedule.alphas_cumprod)[t]
        return w.reshape((-1,) + (1,) * (x.ndim - 1)) * (target - ref)

    x = jax.lax.stop_gradient(x)
    est_params = None if est is None else est[1]
    est_cond = None if est is None else est[2]
    args = (x, t, eps, cond, uncond, est_cond)
    mesh = _views_mesh() if shard else None
    if mesh is None or x.shape[0] % mesh.size:
        return grad_fn(params, est_params, *args)
    spec = jax.P("views")
    sharded = jax.shard_map(
        grad_fn,
        mesh=mesh,
        in_specs=(jax.P(), jax.P())
        + tuple(jax.tree.map(lambda _: spec, a) for a in args),
        out_specs=spec,
    )
    return sharded(params, est_params, *args)


def score_distillation(
    schedule: diffusion.Schedule,
    apply: Apply,
    params: Any,
    x: jax.Array,
    key: jax.Array,
    t_range: tuple[float, float],
    cond: Any,
    uncond: Any,
    scale: float,
    est: tuple[Apply, Any, Any] | None = None,
    shard: bool = True,
) -> Guidance:
    """SDS (``est=None``) or VSD/BSD (``est`` given) loss on renders ``x``.

    ``x (B, H, W, C)`` in ``[-1, 1]`` carries the gradient to the 3-D
    parameters; everything else is a stop-gradient target.
    """
    k_t, k_e = jax.random.split(key)
    t = sample_t(k_t, x.shape[0], t_range, schedule.num_steps)
    eps = jax.random.normal(k_e, x.shape, x.dtype)
    g = guidance_grad(
        schedule, apply, params, x, t, eps, cond, uncond, scale, est, shard
    )
    return Guidance(distillation_loss(x, g), g, t)


def sds(schedule, apply, params, x, key, t_range, cond, uncond, scale) -> Guidance:
    """Score distillation sampling (DreamFusion)."""
    return score_distillation(
        schedule, apply, params, x, key, t_range, cond, uncond, scale
    )


def vsd(
    schedule,
    apply,
    params,
    est_apply,
    est_params,
    x,
    key,
    t_range,
    cond,
    uncond,
    est_cond,
    scale,
) -> Guidance:
    """Variational score distillation (ProlificDreamer): the estimator replaces
    the injected noise."""
    return score_distillation(
        schedule,
        apply,
        params,
        x,
        key,
        t_range,
        cond,
        uncond,
        scale,
        est=(est_apply, est_params, est_cond),
    )


def bsd(
    schedule,
    apply,
    db_params,
    est_apply,
    est_params,
    x,
    key,
    t_range,
    cond,
    uncond,
    est_cond,
    scale,
) -> Guidance:
    """Bootstrapped score distillation (DreamCraft3D): VSD whose target is the
    DreamBooth-fine-tuned copy ``db_params`` of the prior."""
    return vsd(
        schedule,
        apply,
        db_params,
        est_apply,
        est_params,
        x,
        key,
        t_range,
        cond,
        uncond,
        est_cond,
        scale,
    )


def denoising_loss(
    schedule: diffusion.Schedule,
    apply: Apply,
    params: Any,
    x0: jax.Array,
    cond: Any,
    key: jax.Array,
    t_range: tuple[float, float] = (0.0, 1.0),
) -> jax.Array:
    """``E ||eps_theta(x_t, t, c) - eps||^2`` on ``x0 (B, ...)`` (stop-gradient).

    Trains VSD/BSD's estimator on current renders and BSD's DreamBooth copy on
    augmented renders.
    """
    x0 = jax.lax.stop_gradient(x0)
    k_t, k_e = jax.random.split(key)
    t = sample_t(k_t, x0.shape[0], t_range, schedule.num_steps)
    eps = jax.random.normal(k_e, x0.shape, x0.dtype)
    x_t = diffusion.q_sample(schedule, x0, t, eps)
    return jnp.mean((apply(params, x_t, t, cond) - eps) ** 2)
