"""Render Gaussians into a camera: covariance, projection, SH colour, raster.

``render`` takes the activated quantities explicitly (means, scales, raw
quaternions, opacities), so the deblurring MLP can hand in modified scales,
rotations and positions; ``render_gaussians`` is the plain 3DGS call;
``render_cameras`` renders one scene into ``B`` cameras of the same size in
one compiled call (``render`` mapped over the cameras, the Pallas kernel's
grid gaining a camera axis).
:class:`RasterSettings` holds the rasteriser's workspace and implementation.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp

from jaxsuite.kernels.splatting import api as raster_api
from jaxsuite.splat import gaussians as gaussians_lib
from jaxsuite.splat import projection


@dataclasses.dataclass(frozen=True)
class RasterSettings:
    """The rasteriser's workspace and implementation (see :func:`render`).

    Attributes:
      capacity: tile-intersection workspace size.
      max_per_tile: per-tile list length of the 'xla' rasteriser.
      tile: tile side (16 for the Pallas kernel).
      implementation: rasteriser, see ``jaxsuite.kernels.splatting.api``
        (``None``: Pallas on GPU, the tiled XLA path elsewhere).
    """

    capacity: int
    max_per_tile: int
    tile: int
    implementation: raster_api.Implementation | None = None

    def kwargs(self) -> dict[str, Any]:
        """The settings as keyword arguments of :func:`render`."""
        return dict(
            capacity=self.capacity,
            max_per_tile=self.max_per_tile,
            tile=self.tile,
            implementation=self.implementation,
        )


def render(
    means: jax.Array,
    scales: jax.Array,
    quats: jax.Array,
    opacities: jax.Array,
    sh: jax.Array,
    c2w: jax.Array,
    K: jax.Array,
    *,
    width: int,
    height: int,
    sh_degree: int | jax.Array = 3,
    background: jax.Array | None = None,
    capacity: int = 1 << 16,
    max_per_tile: int = 256,
    tile: int = 16,
    implementation: raster_api.Implementation | None = None,
    interpret: bool | None = None,
    active: jax.Array | None = None,
    means2d_offset: jax.Array | None = None,
    binning: str = "two_keys",
) -> raster_api.RasterOutput:
    """Renders one view.

    Args:
      means: ``(N, 3)`` world positions.
      scales: ``(N, 3)`` standard deviations.
      quats: ``(N, 4)`` quaternions ``(w, x, y, z)``, used as given (the
        rasteriser does not normalise them).
      opacities: ``(N,)``.
      sh: ``(N, K, 3)`` SH coefficients.
      c2w: ``(4, 4)`` OpenGL camera-to-world pose.
      K: ``(3, 3)`` intrinsics.
      width: image width.
      height: image height.
      sh_degree: active SH degree.
      background: ``(3,)`` background colour (default black).
      capacity: tile-intersection workspace size.
      max_per_tile: per-tile list length of the 'xla' rasteriser.
      tile: tile side (16 for the Pallas kernel).
      implementation: rasteriser, see ``jaxsuite.kernels.splatting.api``.
      interpret: Pallas interpreter flag.
      active: optional ``(N,)`` bool mask of a fixed-capacity buffer; inactive
        Gaussians get radius 0 (no tile intersections) and opacity 0.
      means2d_offset: optional ``(N, 2)`` pixels added to the projected means;
        pass zeros and differentiate with respect to it to obtain the
        view-space positional gradient that 3DGS densification thresholds.
      binning: how intersections are sorted (``'two_keys'`` or
        ``'depth_first'``, the same frame; see the kernels' ``bin_gaussians``).

    Returns:
      ``RasterOutput`` with ``image`` ``(H, W, 3)``.
    """
    cov = gaussians_lib.covariance_3d(scales, quats)
    proj = projection.project(means, cov, c2w, K, width, height)
    colors = gaussians_lib.sh_to_color(sh, means, c2w[:3, 3], sh_degree)
    means2d, radii = proj.means2d, proj.radii
    if means2d_offset is not None:
        means2d = means2d + means2d_offset
    if active is not None:
        radii = jnp.where(active, radii, 0)
        opacities = jnp.where(active, opacities, 0.0)
    return raster_api.rasterize(
        means2d,
        proj.conics,
        colors,
        opacities,
        proj.depths,
        radii,
        width=width,
        height=height,
        background=background,
        capacity=capacity,
        max_per_tile=max_per_tile,
        tile=tile,
        implementation=implementation,
        interpret=interpret,
    )


@functools.partial(
    jax.jit,
    static_argnames=(
        "width",
        "height",
        "capacity",
        "max_per_tile",
        "tile",
        "implementation",
        "interpret",
        "binning",
    ),
)
def _render_cameras(
    means, scales, quats, opacities, sh, c2ws, Ks, sh_degree, background, active, **kw
):
    def one(c2w, K):
        return render(
            means,
            scales,
            quats,
            opacities,
            sh,
            c2w,
            K,
            sh_degree=sh_degree,
            background=background,
            active=active,
            **kw,
        )

    return jax.vmap(one)(c2ws, Ks)


def render_cameras(
    means: jax.Array,
    scales: jax.Array,
    quats: jax.Array,
    opacities: jax.Array,
    sh: jax.Array,
    c2ws: jax.Array,
    Ks: jax.Array,
    *,
    width: int,
    height: int,
    sh_degree: int | jax.Array = 3,
    background: jax.Array | None = None,
    capacity: int = 1 << 16,
    max_per_tile: int = 256,
    tile: int = 16,
    implementation: raster_api.Implementation | None = None,
    interpret: bool | None = None,
    active: jax.Array | None = None,
    binning: str = "two_keys",
) -> raster_api.RasterOutput:
    """Renders one scene into ``B`` cameras of one image size, one compiled call.

    Equal to :func:`render` per camera, stacked; each camera has its own
    binning of ``capacity`` slots, intersection count and overflow flag.

    Args:
      means, scales, quats, opacities, sh: the scene, as in :func:`render`.
      c2ws: ``(B, 4, 4)`` OpenGL camera-to-world poses.
      Ks: ``(B, 3, 3)`` intrinsics.
      width: image width of every camera.
      height: image height of every camera.
      sh_degree, background, capacity, max_per_tile, tile, implementation,
        interpret, active, binning: as in :func:`render`, shared by the
        cameras.

    Returns:
      ``RasterOutput`` with a leading camera axis: ``image`` ``(B, H, W, 3)``,
      ``alpha`` ``(B, H, W)``, ``num_intersections`` and ``overflow`` ``(B,)``.
    """
    if implementation is None:
        implementation = raster_api.default_implementation()
    if interpret is None:
        interpret = jax.default_backend() == "cpu"
    return _render_cameras(
        means,
        scales,
        quats,
        opacities,
        sh,
        c2ws,
        Ks,
        jnp.asarray(sh_degree, jnp.int32),
        background,
        active,
        width=width,
        height=height,
        capacity=capacity,
        max_per_tile=max_per_tile,
        tile=tile,
        implementation=implementation,
        interpret=bool(interpret),
        binning=binning,
    )


def render_gaussians(
    g: gaussians_lib.Gaussians,
    c2w: jax.Array,
    K: jax.Array,
    **kwargs,
) -> raster_api.RasterOutput:
    """Plain 3DGS render of ``g`` (normalised rotations); kwargs as :func:`render`."""
    return render(g.means, g.scales, g.rotations, g.opacities, g.sh, c2w, K, **kwargs)


def image_of(out: raster_api.RasterOutput) -> jax.Array:
    """The ``(H, W, 3)`` image of a render, clipped to ``[0, 1]``."""
    return jnp.clip(out.image, 0.0, 1.0)
