"""3DGS optimisation, with or without deblurring.

Parameters live in one dict (``means``, ``log_scales``, ``quats``,
``opacity_logits``, ``sh_dc``, ``sh_rest`` and, for Deblurring-3DGS, ``mlp``),
each with its own Adam (``eps = 1e-15``) and learning rate as in 3DGS: means
decay exponentially from ``lr_means`` to ``lr_means_final`` (times the scene
extent), SH DC 2.5e-3, higher SH bands 1/20 of that, opacity 0.05, scales
5e-3, rotations 1e-3, the MLP 1e-3. The active SH degree rises by one every
``sh_every`` steps.

The loss is ``0.8 L1 + 0.2 (1 - SSIM)`` between the (blurry) render and the
(blurry) training image. Plain 3DGS renders the Gaussians; Deblurring-3DGS
renders them through the blur MLP (``blur_mlp``): one render for defocus, the
mean of ``M + 1`` for camera motion. Test views are always rendered without
the MLP.

Densification is 3DGS's on a fixed-capacity buffer (``densify``);
Deblurring-3DGS prunes with its depth-dependent threshold
(:func:`depth_pruning_threshold`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxsuite.core import image as image_lib
from jaxsuite.splat import blur_mlp
from jaxsuite.splat import gaussians as gl
from jaxsuite.splat import render as render_lib

Params = dict[str, Any]


def init_params(g: gl.Gaussians, mlp: Mapping | None = None) -> Params:
    """Trainable parameter dict of Gaussians (and the blur MLP if given)."""
    params = {
        "means": g.means,
        "log_scales": g.log_scales,
        "quats": g.quats,
        "opacity_logits": g.opacity_logits,
        "sh_dc": g.sh[:, :1],
        "sh_rest": g.sh[:, 1:],
    }
    if mlp is not None:
        params["mlp"] = dict(mlp)
    return params


def to_gaussians(params: Params) -> gl.Gaussians:
    """The :class:`Gaussians` held in ``params``."""
    return gl.Gaussians(
        means=params["means"],
        log_scales=params["log_scales"],
        quats=params["quats"],
        opacity_logits=params["opacity_logits"],
        sh=jnp.concatenate([params["sh_dc"], params["sh_rest"]], axis=1),
    )


def make_optimizer(config: Any, extent: float) -> optax.GradientTransformation:
    """Per-parameter Adam of 3DGS (see module docstring)."""
    steps = max(int(config.steps), 1)
    means_lr = optax.exponential_decay(
        config.lr_means * extent,
        transition_steps=steps,
        decay_rate=config.lr_means_final / config.lr_means,
    )
    lrs = {
        "means": means_lr,
        "log_scales": config.lr_scales,
        "quats": config.lr_quats,
        "opacity_logits": config.lr_opacity,
        "sh_dc": config.lr_sh,
        "sh_rest": config.lr_sh / 20.0,
        "mlp": config.lr_mlp,
    }
    transforms = {k: optax.adam(lr, eps=1e-15) for k, lr in lrs.items()}
    return optax.multi_transform(transforms, lambda p: {k: k for k in p})


def render_views(
    params: Params,
    c2w: jax.Array,
    K: jax.Array,
    *,
    width: int,
    height: int,
    sh_degree: int | jax.Array,
    background: jax.Array,
    deblur: bool,
    config: Any,
    reference_centers: jax.Array | None = None,
    active: jax.Array | None = None,
    means2d_offset: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Training render of one view.

    ``config`` holds one blur type's MLP settings (``lambda_s``, ``lambda_p``,
    ``max_clamp``, ``mlp_*``; see ``methods.blur_config``).
    ``reference_centers`` ``(V, 3)``: the training camera centres, used when
    ``config.mlp_relative_factors`` (see ``blur_mlp.factors``).
    ``active`` ``(N,)`` and ``means2d_offset`` ``(N, 2)``: see
    ``render.render`` (the offset is shared by the MLP's renders, so its
    gradient sums theirs).

    Returns:
      ``(image, num_intersections, overflow)``: the ``(H, W, 3)`` image (the
      mean of the MLP's renders when ``deblur``), the largest intersection
      count over the renders and whether any overflowed.
    """
    g = to_gaussians(params)
    kw = dict(
        width=width,
        height=height,
        sh_degree=sh_degree,
        background=background,
        capacity=config.capacity,
        max_per_tile=config.max_per_tile,
        tile=config.tile,
        implementation=config.implementation or None,
        active=active,
        means2d_offset=means2d_offset,
    )
    if not deblur:
        out = render_lib.render_gaussians(g, c2w, K, **kw)
        return out.image, out.num_intersections, out.overflow
    if config.mlp_relative_factors and reference_centers is None:
        raise ValueError("mlp_relative_factors needs the reference_centers.")
    means_r, scales_r, quats_r = blur_mlp.blur_transforms(
        params["mlp"],
        g.means,
        g.scales,
        g.rotations,
        c2w[:3, 3],
        lambda_s=config.lambda_s,
        lambda_p=config.lambda_p,
        max_clamp=config.max_clamp,
        rotation_factors=config.mlp_rotation_factors,
        center_offsets=config.mlp_center_offsets,
        reference_centers=(reference_centers if config.mlp_relative_factors else None),
    )
    outs = jax.vmap(
        lambda m, s, q: render_lib.render(m, s, q, g.opacities, g.sh, c2w, K, **kw)
    )(means_r, scales_r, quats_r)
    return (
        jnp.mean(outs.image, axis=0),
        jnp.max(outs.num_intersections),
        jnp.any(outs.overflow),
    )


def photometric_loss(image: jax.Array, target: jax.Array) -> jax.Array:
    """``0.8 L1 + 0.2 (1 - SSIM)`` of ``(H, W, 3)`` images."""
    l1 = jnp.mean(jnp.abs(image - target))
    return 0.8 * l1 + 0.2 * (1.0 - image_lib.ssim(image, target))


def depth_pruning_threshold(means: jax.Array, t_p: float, axis: int = 2) -> jax.Array:
    """Deblurring-3DGS's depth-based opacity threshold, ``(N,)``.

    ``t_p / (1 + 2 (z - z_min) / (z_max - z_min))`` with ``z`` the world
    coordinate ``axis`` (the code uses world ``z``, the viewing axis of
    forward-facing LLFF scenes), so the farthest Gaussians are pruned at
    ``t_p / 3``.
    """
    z = means[:, axis]
    z_min, z_max = jnp.min(z), jnp.max(z)
    return t_p / (1.0 + 2.0 * (z - z_min) / jnp.maximum(z_max - z_min, 1e-12))


def reset_moments(opt_state: Any, touched: jax.Array) -> Any:
    """Zeroes the Adam moments of the Gaussians where ``touched`` (``(N,)``)."""
    n = touched.shape[0]

    def reset(x):
        if x.ndim >= 1 and x.shape[0] == n:
            mask = touched.reshape((n,) + (1,) * (x.ndim - 1))
            return jnp.where(mask, jnp.zeros_like(x), x)
        return x

    inner = {
        k: (v if k == "mlp" else jax.tree.map(reset, v))
        for k, v in opt_state.inner_states.items()
    }
    return opt_state._replace(inner_states=inner)
