"""Public entry point: ``rasterize`` picks the reference, XLA or Pallas path.

``implementation=None`` means the Pallas kernel on a GPU backend and the tiled
XLA rasteriser (``tiled.py``) elsewhere (on CPU the kernel only runs in the
Pallas interpreter, which is far slower than XLA). ``interpret=None`` means
interpret mode exactly when the backend is CPU. All paths are differentiable
with respect to ``means2d``, ``conics``, ``colors`` and ``opacities`` and
return the same intersection count and overflow flag.
"""

from __future__ import annotations

import functools
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp

from . import binning as binning_lib
from . import pallas as pallas_lib
from . import reference as reference_lib
from . import tiled as tiled_lib

Implementation = Literal["reference", "pallas", "xla"]


class RasterOutput(NamedTuple):
    """Rendered frame.

    Attributes:
      image: ``(H, W, C)`` colour over the background.
      alpha: ``(H, W)`` accumulated opacity, ``1 - T``.
      num_intersections: ``()`` int32 tile intersections the frame needs.
      overflow: ``()`` bool, the workspace was too small (the Pallas image is
        then missing intersections; see ``binning.check_overflow``).
    """

    image: jax.Array
    alpha: jax.Array
    num_intersections: jax.Array
    overflow: jax.Array


def default_implementation() -> Implementation:
    """'pallas' on a GPU backend, else 'xla' (the tiled XLA rasteriser)."""
    return "pallas" if jax.default_backend() == "gpu" else "xla"


def rasterize_binned(
    means2d: jax.Array,
    conics: jax.Array,
    colors: jax.Array,
    opacities: jax.Array,
    binned: binning_lib.Binning,
    *,
    width: int,
    height: int,
    max_per_tile: int,
    tile: int,
    implementation: Implementation,
    interpret: bool,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Blends already-binned Gaussians with the 'xla' or 'pallas' rasteriser.

    Args:
      means2d, conics, colors, opacities: as :func:`rasterize`.
      binned: the frame's :class:`binning.Binning` (only ``gaussian_ids``,
        ``tile_starts`` and ``tile_ends`` are read).
      width, height, max_per_tile, tile, implementation, interpret: as
        :func:`rasterize` (``implementation`` 'xla' or 'pallas').

    Returns:
      ``(image (H, W, C), transmittance (H, W), tile_overflow ())``: colour
      without background, final ``T`` and whether an 'xla' tile list was too
      short (always False for 'pallas').
    """
    ids, starts, ends = binned.gaussian_ids, binned.tile_starts, binned.tile_ends
    if implementation == "xla":
        return tiled_lib.rasterize(
            means2d, conics, colors, opacities, ids, starts, ends, width, height,
            max_per_tile, tile,
        )  # fmt: skip
    if implementation != "pallas":
        raise ValueError(
            f"rasterize_binned needs 'xla' or 'pallas', not {implementation!r}"
        )
    if tile != pallas_lib.TILE:
        raise ValueError(f"The Pallas kernel uses {pallas_lib.TILE}-pixel tiles.")
    image, t = pallas_lib.rasterize(
        means2d, conics, colors, opacities, ids, starts, ends, width, height,
        interpret=interpret,
    )  # fmt: skip
    return image, t, jnp.zeros((), bool)


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
def _rasterize(
    means2d,
    conics,
    colors,
    opacities,
    depths,
    radii,
    background,
    *,
    width,
    height,
    capacity,
    max_per_tile,
    tile,
    implementation,
    interpret,
    binning,
):
    sg = jax.lax.stop_gradient
    if implementation == "reference":
        counts = binning_lib.count_intersections(
            sg(means2d), radii, width, height, tile
        )
        total = binning_lib.total_intersections(counts)
        overflow = total > capacity
        image, t = reference_lib.rasterize(
            means2d, conics, colors, opacities, depths, radii, width, height, tile
        )
    else:
        b = binning_lib.bin_gaussians(
            sg(means2d), sg(depths), radii, width, height, capacity, tile, binning
        )
        total, overflow = b.num_intersections, b.overflow
    if implementation != "reference":
        image, t, tile_overflow = rasterize_binned(
            means2d,
            conics,
            colors,
            opacities,
            b,
            width=width,
            height=height,
            max_per_tile=max_per_tile,
            tile=tile,
            implementation=implementation,
            interpret=interpret,
        )
        overflow = overflow | tile_overflow
    image = image + t[..., None] * background[None, None, :]
    return RasterOutput(image, 1.0 - t, total, overflow)


def rasterize(
    means2d: jax.Array,
    conics: jax.Array,
    colors: jax.Array,
    opacities: jax.Array,
    depths: jax.Array,
    radii: jax.Array,
    *,
    width: int,
    height: int,
    background: jax.Array | None = None,
    capacity: int = 1 << 16,
    max_per_tile: int = 256,
    tile: int = binning_lib.TILE,
    implementation: Implementation | None = None,
    interpret: bool | None = None,
    binning: str = "two_keys",
) -> RasterOutput:
    """Front-to-back tile rasterisation of projected Gaussians.

    Args:
      means2d: ``(N, 2)`` pixel coordinates (pixel ``(i, j)`` centred at
        ``(j + 0.5, i + 0.5)``).
      conics: ``(N, 3)`` inverse 2D covariances ``(a, b, c)``.
      colors: ``(N, C)``.
      opacities: ``(N,)`` in ``[0, 1]``.
      depths: ``(N,)`` view depths (blending order).
      radii: ``(N,)`` int pixel radii, 0 for culled Gaussians.
      width: image width ``W``.
      height: image height ``H``.
      background: ``(C,)`` colour behind the Gaussians (default black).
      capacity: tile-intersection workspace slots (static).
      max_per_tile: list length per tile of the 'xla' rasteriser (static);
        a fuller tile sets ``overflow``.
      tile: tile side in pixels; 16 (the original) for 'pallas', any for
        'reference' and 'xla' (smaller tiles shorten the 'xla' lists).
      implementation: 'reference' (dense jnp, the truth), 'pallas' (the
        kernel), 'xla' (tiled jnp) or None (see module docstring).
      interpret: Pallas interpreter; None means on CPU.
      binning: how the 'xla' and 'pallas' paths sort intersections,
        ``binning.BINNING_METHODS`` (same result unless the workspace
        overflows; see ``binning.bin_gaussians``).

    Returns:
      :class:`RasterOutput`.
    """
    if implementation is None:
        implementation = default_implementation()
    if interpret is None:
        interpret = jax.default_backend() == "cpu"
    if background is None:
        background = jnp.zeros((colors.shape[-1],), jnp.float32)
    return _rasterize(
        means2d,
        conics,
        colors,
        opacities,
        depths,
        radii,
        jnp.asarray(background, jnp.float32),
        width=width,
        height=height,
        capacity=capacity,
        max_per_tile=max_per_tile,
        tile=tile,
        implementation=implementation,
        interpret=bool(interpret),
        binning=binning,
    )
