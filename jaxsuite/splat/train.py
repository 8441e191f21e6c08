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
(:func:`depth_pruning_threshold`). :class:`OptimizerSettings` holds the
learning rates, :class:`DeblurSettings` one blur type's MLP and pruning
settings.
"""

from __future__ import annotations

import dataclasses
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


@dataclasses.dataclass(frozen=True)
class OptimizerSettings:
    """The per-parameter Adam of :func:`make_optimizer` (defaults: 3DGS's).

    Attributes:
      steps: the training steps (the means' decay runs over them).
      lr_means: the means' first learning rate, times the scene extent.
      lr_means_final: their last, times the scene extent.
      lr_scales: the log-scales'.
      lr_quats: the rotations'.
      lr_opacity: the opacity logits'.
      lr_sh: SH DC's (the higher bands get 1/20 of it).
      lr_mlp: the blur MLP's.
    """

    steps: int
    lr_means: float = 1.6e-3
    lr_means_final: float = 1.6e-5
    lr_scales: float = 5e-3
    lr_quats: float = 1e-3
    lr_opacity: float = 0.05
    lr_sh: float = 2.5e-3
    lr_mlp: float = 1e-3


@dataclasses.dataclass(frozen=True)
class DeblurSettings:
    """Deblurring-3DGS's settings for one blur type (defaults: the official
    code's defocus settings).

    Attributes:
      lambda_s: the scale and rotation factors' ``lambda_s``
        (``blur_mlp.clamp_delta``).
      lambda_p: the camera-motion position offsets' scale.
      max_clamp: the factors' upper clamp.
      mlp_scale_bias: the MLP's initial scale-head bias (``blur_mlp.init``).
      mlp_rotation_bias: its initial rotation-head bias.
      mlp_rotation_factors: whether the rotation factors scale the raw
        quaternions.
      mlp_relative_factors: factors relative to their smallest over the
        training views (``blur_mlp.factors``).
      mlp_center_offsets: camera motion's offsets centred on the plain
        Gaussians (``blur_mlp.position_shifts``).
      grad_threshold: the densification gradient threshold.
      prune_opacity: the depth-based pruning threshold ``t_p``
        (:func:`depth_pruning_threshold`).
    """

    lambda_s: float = 0.01
    lambda_p: float = 0.0
    max_clamp: float = 1.1
    mlp_scale_bias: float = 0.0
    mlp_rotation_bias: float = 0.0
    mlp_rotation_factors: bool = True
    mlp_relative_factors: bool = False
    mlp_center_offsets: bool = False
    grad_threshold: float = 2e-4
    prune_opacity: float = 0.005


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


def make_optimizer(
    settings: OptimizerSettings, extent: float
) -> optax.GradientTransformation:
    """Per-parameter Adam of 3DGS (see module docstring) over a :data:`Params`
    dict; ``extent`` scales the means' learning rates."""
    s = settings
    steps = max(int(s.steps), 1)
    means_lr = optax.exponential_decay(
        s.lr_means * extent,
        transition_steps=steps,
        decay_rate=s.lr_means_final / s.lr_means,
    )
    lrs = {
        "means": means_lr,
        "log_scales": s.lr_scales,
        "quats": s.lr_quats,
        "opacity_logits": s.lr_opacity,
        "sh_dc": s.lr_sh,
        "sh_rest": s.lr_sh / 20.0,
        "mlp": s.lr_mlp,
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
    raster: render_lib.RasterSettings,
    mlp: DeblurSettings | None = None,
    reference_centers: jax.Array | None = None,
    active: jax.Array | None = None,
    means2d_offset: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Training render of one view (``c2w`` ``(4, 4)``, ``K`` ``(3, 3)``).

    ``raster``: the rasteriser's workspace. ``mlp``: one blur type's MLP
    settings (``lambda_s``, ``lambda_p``, ``max_clamp``, ``mlp_*``); given,
    the Gaussians are rendered through the blur MLP ``params["mlp"]``
    (Deblurring-3DGS), else as they are (3DGS).
    ``reference_centers`` ``(V, 3)``: the training camera centres, used when
    ``mlp.mlp_relative_factors`` (see ``blur_mlp.factors``).
    ``active`` ``(N,)`` and ``means2d_offset`` ``(N, 2)``: see
    ``render.render`` (the offset is shared by the MLP's renders, so its
    gradient sums theirs).

    Returns:
      ``(image, num_intersections, overflow)``: the ``(H, W, 3)`` image (the
      mean of the MLP's renders when ``mlp`` is given), the largest intersection
      count over the renders and whether any overflowed.
    """
    g = to_gaussians(params)
    kw = dict(
        width=width,
        height=height,
        sh_degree=sh_degree,
        background=background,
        **raster.kwargs(),
        active=active,
        means2d_offset=means2d_offset,
    )
    if mlp is None:
        out = render_lib.render_gaussians(g, c2w, K, **kw)
        return out.image, out.num_intersections, out.overflow
    if mlp.mlp_relative_factors and reference_centers is None:
        raise ValueError("mlp_relative_factors needs the reference_centers.")
    means_r, scales_r, quats_r = blur_mlp.blur_transforms(
        params["mlp"],
        g.means,
        g.scales,
        g.rotations,
        c2w[:3, 3],
        lambda_s=mlp.lambda_s,
        lambda_p=mlp.lambda_p,
        max_clamp=mlp.max_clamp,
        rotation_factors=mlp.mlp_rotation_factors,
        center_offsets=mlp.mlp_center_offsets,
        reference_centers=(reference_centers if mlp.mlp_relative_factors else None),
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
