"""The render frame as separate stages, each a compiled function on stored inputs.

:func:`jaxsuite.splat.render.render` is one program; to see where its time
goes, :func:`forward_stages` runs the same computation as seven programs,
each jitted alone and fed the stored output of the one before: covariance,
projection, SH colours, binning expansion, sort, tile ranges and
rasterisation (``jaxsuite.kernels.splatting``'s binning steps and raster
paths). :func:`backward_stages` does the same for the training step's
backward pass: the rasteriser's VJP, the SH colours' VJP, the projection's
VJP and the covariance's VJP, each on stored residuals and fed the
cotangents of the stage after it, plus (Pallas only) the per-Gaussian
``segment_sum`` that ends the rasteriser's VJP, timed on its own. The stages
compose to the frame and its gradients (a test checks it), but stages run
alone cannot fuse across their boundaries, so their times need not add up to
the frame's.

:func:`reference_window` renders a tile-aligned window of the frame with the
dense reference rasteriser from the Gaussians that reach it, which checks a
frame of any size against the truth. :func:`analytic_cost` states how many
bytes each stage moves at least.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsuite.kernels import splatting
from jaxsuite.splat import gaussians as gaussians_lib
from jaxsuite.splat import projection

FORWARD = (
    "covariance",
    "projection",
    "sh_colors",
    "binning_expand",
    "sort",
    "tile_ranges",
    "rasterize",
)
BACKWARD = (
    "rasterize_vjp",
    "segment_sum",
    "sh_colors_vjp",
    "projection_vjp",
    "covariance_vjp",
)
# Part of rasterize_vjp, so not a separate share of the step.
NESTED = ("segment_sum",)


class Stage(NamedTuple):
    """A compiled stage: ``fn(*args)`` recomputes it from stored inputs."""

    name: str
    fn: Callable[..., Any]
    args: tuple


def _raster(means2d, conics, colors, opacities, ids, starts, ends, background, *,
            width, height, tile, implementation, interpret, max_per_tile):  # fmt: skip
    """Rasterisation given the binning: ``(image, alpha)`` as ``render``'s."""
    binned = splatting.Binning(ids, starts, ends, None, None)
    image, t, _ = splatting.rasterize_binned(
        means2d, conics, colors, opacities, binned, width=width, height=height,
        max_per_tile=max_per_tile, tile=tile, implementation=implementation,
        interpret=interpret,
    )  # fmt: skip
    return image + t[..., None] * background[None, None, :], 1.0 - t


def _run(stages: list, name: str, fn, *args):
    fn = jax.jit(fn)
    stages.append(Stage(name, fn, args))
    return fn(*args)


def forward_stages(
    scene: dict[str, jax.Array],
    c2w: jax.Array,
    K: jax.Array,
    *,
    width: int,
    height: int,
    capacity: int,
    implementation: str,
    interpret: bool = False,
    background: jax.Array | None = None,
    max_per_tile: int = 256,
    tile: int = splatting.TILE,
    sh_degree: int = 3,
    binning: str = "two_keys",
) -> tuple[list[Stage], dict[str, Any]]:
    """The frame of ``render(**scene, c2w=c2w, K=K, ...)`` as stages.

    Args:
      scene: ``means (N, 3)``, ``scales (N, 3)``, ``quats (N, 4)``,
        ``opacities (N,)``, ``sh (N, K, 3)``, as :func:`render` takes them.
      c2w: ``(4, 4)`` pose; K: ``(3, 3)`` intrinsics.
      width, height, capacity, implementation ('pallas' or 'xla'),
        interpret, background (default black), max_per_tile, tile, sh_degree,
        binning: as in :func:`render`. With ``binning='depth_first'`` the
        ``binning_expand`` stage includes the depth sort of the Gaussians and
        ``sort`` sorts by tile alone.

    Returns:
      ``(stages, outputs)``: the :data:`FORWARD` stages in order, each run
      once, and their stored outputs (``cov``, ``proj``, ``colors``,
      ``intersections``, ``ids``, ``starts``, ``ends``, ``image`` ``(H, W,
      3)``, ``alpha`` ``(H, W)``, and ``raster``, the rasteriser's function
      of ``(means2d, conics, colors, opacities, ids, starts, ends,
      background)``).
    """
    if background is None:
        background = jnp.zeros((3,), jnp.float32)
    stages, out = [], {}
    out["cov"] = _run(
        stages, "covariance", gaussians_lib.covariance_3d, scene["scales"],
        scene["quats"],
    )  # fmt: skip
    project = functools.partial(projection.project, width=width, height=height)
    out["proj"] = p = _run(
        stages, "projection", project, scene["means"], out["cov"], c2w, K
    )
    sh = functools.partial(gaussians_lib.sh_to_color, degree=sh_degree)
    out["colors"] = _run(
        stages, "sh_colors", sh, scene["sh"], scene["means"], c2w[:3, 3]
    )
    depth_first = binning == "depth_first"
    expand = functools.partial(
        splatting.expand_intersections_depth_first
        if depth_first
        else splatting.expand_intersections,
        width=width, height=height, capacity=capacity, tile=tile,
    )  # fmt: skip
    out["intersections"] = i = _run(
        stages, "binning_expand", expand, p.means2d, p.depths, p.radii
    )
    if depth_first:
        sort_args = (splatting.sort_by_tile, i.tile_keys, i.gaussian_ids)
    else:
        sort_args = (
            splatting.sort_intersections,
            i.tile_keys,
            i.depth_bits,
            i.gaussian_ids,
        )
    keys, out["ids"] = _run(stages, "sort", *sort_args)
    ranges = functools.partial(
        splatting.tile_ranges, width=width, height=height, tile=tile
    )
    out["starts"], out["ends"] = _run(stages, "tile_ranges", ranges, keys)
    out["raster"] = functools.partial(
        _raster, width=width, height=height, tile=tile,
        implementation=implementation, interpret=interpret,
        max_per_tile=max_per_tile,
    )  # fmt: skip
    out["image"], out["alpha"] = _run(
        stages, "rasterize", out["raster"], p.means2d, p.conics, out["colors"],
        scene["opacities"], out["ids"], out["starts"], out["ends"],
        jnp.asarray(background, jnp.float32),
    )  # fmt: skip
    out["background"] = jnp.asarray(background, jnp.float32)
    return stages, out


def _vjp(stages: list, name: str, fn, primals: tuple, cotangent):
    """Appends the backward pass of ``jit(fn)`` alone; returns its cotangents."""
    _, pull = jax.vjp(jax.jit(fn), *primals)
    backward = jax.jit(lambda pull, ct: pull(ct))
    stages.append(Stage(name, backward, (pull, cotangent)))
    return backward(pull, cotangent)


def backward_stages(
    scene: dict[str, jax.Array],
    c2w: jax.Array,
    K: jax.Array,
    outputs: dict[str, Any],
    image_cotangent: jax.Array,
    *,
    width: int,
    height: int,
    sh_degree: int = 3,
) -> tuple[list[Stage], dict[str, jax.Array]]:
    """The backward pass of the frame's image as stages (chain rule by hand).

    Args:
      scene, c2w, K, width, height, sh_degree: as for :func:`forward_stages`.
      outputs: :func:`forward_stages`' outputs.
      image_cotangent: ``(H, W, 3)``, the loss's gradient wrt the image.

    Returns:
      ``(stages, grads)``: the :data:`BACKWARD` stages in order (``segment_sum``
      only for the Pallas rasteriser; its input is random, of the shapes the
      kernel's VJP sums), each run once, and the gradients of the image's
      inner product with the cotangent wrt ``means``, ``scales``, ``quats``,
      ``opacities`` and ``sh``, as ``jax.vjp`` of ``render`` gives them.
    """
    stages, o, p = [], outputs, outputs["proj"]
    bins = (o["ids"], o["starts"], o["ends"], o["background"])
    raster = lambda m, c, col, op: o["raster"](m, c, col, op, *bins)[0]
    g_m2d, g_con, g_col, g_op = _vjp(
        stages, "rasterize_vjp", raster,
        (p.means2d, p.conics, o["colors"], scene["opacities"]), image_cotangent,
    )  # fmt: skip
    if o["raster"].keywords["implementation"] == "pallas":
        n, f = scene["means"].shape[0], 6 + g_col.shape[-1]
        slots = jax.random.normal(jax.random.key(0), (f, o["ids"].shape[0]))
        seg = lambda g, ids: jax.ops.segment_sum(g.T, ids, num_segments=n + 1)[:n]
        _run(stages, "segment_sum", seg, slots, o["ids"])
    sh = lambda sh, m: gaussians_lib.sh_to_color(sh, m, c2w[:3, 3], sh_degree)
    g_sh, g_means_sh = _vjp(
        stages, "sh_colors_vjp", sh, (scene["sh"], scene["means"]), g_col
    )

    def proj(means, cov):
        q = projection.project(means, cov, c2w, K, width, height)
        return q.means2d, q.conics

    g_means, g_cov = _vjp(
        stages, "projection_vjp", proj, (scene["means"], o["cov"]), (g_m2d, g_con)
    )
    g_scales, g_quats = _vjp(
        stages, "covariance_vjp", gaussians_lib.covariance_3d,
        (scene["scales"], scene["quats"]), g_cov,
    )  # fmt: skip
    grads = dict(
        means=g_means + g_means_sh, scales=g_scales, quats=g_quats, opacities=g_op,
        sh=g_sh,
    )  # fmt: skip
    return stages, grads


def reference_window(
    proj: projection.Projected,
    colors: jax.Array,
    opacities: jax.Array,
    width: int,
    height: int,
    window: tuple[int, int, int, int],
    background: jax.Array,
    tile: int = splatting.TILE,
) -> jax.Array:
    """Dense-reference pixels of a window ``(y0, x0, h, w)`` of the frame.

    ``y0`` and ``x0`` must be multiples of ``tile``. Only Gaussians whose tile
    rectangle (in the whole frame) meets the window take part, shifted into
    the window's coordinates, so the reference's ``h w N`` work stays small
    for a frame of any size; the pixels equal the whole frame's.

    Returns:
      ``(h, w, 3)`` image over ``background``.
    """
    y0, x0, h, w = window
    if x0 % tile or y0 % tile:
        raise ValueError(f"window corner {(y0, x0)} is not on the {tile}-pixel grid")
    lo, hi = splatting.tile_rects(proj.means2d, proj.radii, width, height, tile)
    lo, hi = np.asarray(lo), np.asarray(hi)
    tx0, ty0 = x0 // tile, y0 // tile
    tx1, ty1 = -(-(x0 + w) // tile), -(-(y0 + h) // tile)
    keep = np.asarray(proj.radii) > 0
    keep &= (lo[:, 0] < tx1) & (hi[:, 0] > tx0) & (lo[:, 1] < ty1) & (hi[:, 1] > ty0)
    idx = jnp.asarray(np.nonzero(keep)[0], jnp.int32)
    out = splatting.rasterize(
        proj.means2d[idx] - jnp.array([[x0, y0]], jnp.float32), proj.conics[idx],
        colors[idx], opacities[idx], proj.depths[idx], proj.radii[idx], width=w,
        height=h, background=background, tile=tile, implementation="reference",
    )  # fmt: skip
    return out.image


def analytic_cost(
    stage: str,
    n: int,
    capacity: int,
    used: int,
    width: int,
    height: int,
    channels: int = 3,
) -> dict[str, int | None]:
    """A stated estimate of the bytes a Pallas-path stage moves at least.

    For ``N = n`` Gaussians, ``S = capacity`` slots of which ``U = used``
    hold intersections, a ``H x W`` image of ``C = channels`` colours in
    ``T`` tiles, ``F = 6 + C`` workspace rows and ``K = 16`` SH coefficients,
    each array a stage must read or write is counted once, in 4-byte words:

    * ``covariance``: scales, quaternions in, covariances out: ``16 N``;
    * ``projection``: means, covariances in; means2d, conics, depths, radii,
      2D covariances out: ``22 N``;
    * ``sh_colors``: SH and means in, colours out: ``(3K + 6) N``;
    * ``binning_expand``: per-Gaussian rectangles, depths and running totals
      in, three words per slot out: ``8 N + 3 S``;
    * ``sort``: a radix-sort estimate, 64-bit key and 32-bit value in 8-bit
      digits: 8 passes each reading and writing all slots, ``48 S``; this is
      what CUB's radix sort moves; XLA may run a comparison sort (bitonic,
      ``log2(S)^2 / 2`` passes) that moves more;
    * ``tile_ranges``: two binary searches per tile: ``2 T (log2 S + 1)``;
    * ``rasterize``: the sorted gather (ids and source rows read, ``(F, S)``
      workspace written), the kernel's read of the used slots, image,
      transmittance and ``last`` written: ``S (1 + 2F) + U F + H W (C + 2)``;
    * ``rasterize_vjp``: the slot gradients zero-filled and summed (``(F,
      S)`` written, read with the ids), the used slots read and written,
      per-pixel state and cotangents read, per-Gaussian gradients written:
      ``S (2F + 1) + 2 U F + H W (2C + 3) + N F``;
    * ``segment_sum``: ``S (F + 1) + N F``;
    * the VJPs of covariance, projection and SH colours: twice their forward.

    ``workspace_bytes`` is the stage's slot-sized scratch. Returns
    ``{"bytes", "workspace_bytes"}``, both None for a stage not modelled.
    """
    f, hw = 6 + channels, width * height
    tiles = math.ceil(width / splatting.TILE) * math.ceil(height / splatting.TILE)
    words = {
        "covariance": (16 * n, 0),
        "projection": (22 * n, 0),
        "sh_colors": ((3 * 16 + 6) * n, 0),
        "binning_expand": (8 * n + 3 * capacity, 3 * capacity),
        "sort": (48 * capacity, 3 * capacity),
        "tile_ranges": (2 * tiles * (math.log2(capacity) + 1), 0),
        "rasterize": (
            capacity * (1 + 2 * f) + used * f + hw * (channels + 2),
            f * capacity,
        ),
        "rasterize_vjp": (
            capacity * (2 * f + 1) + 2 * used * f + hw * (2 * channels + 3) + n * f,
            2 * f * capacity,
        ),
        "segment_sum": (capacity * (f + 1) + n * f, 0),
    }
    for name in ("covariance", "projection", "sh_colors"):
        words[f"{name}_vjp"] = (2 * words[name][0], 0)
    if stage not in words:
        return {"bytes": None, "workspace_bytes": None}
    total, scratch = words[stage]
    return {"bytes": int(4 * total), "workspace_bytes": int(4 * scratch)}
