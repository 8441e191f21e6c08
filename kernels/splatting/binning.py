"""Tile binning of screen-space Gaussians into a fixed-capacity workspace.

As in diff-gaussian-rasterization, the image is cut into ``16 x 16`` tiles and
each Gaussian is duplicated once per tile of the rectangle its 3-sigma radius
covers (``getRect``). Each duplicate, an *intersection*, is keyed by
``(tile, depth)`` and the keys are sorted, so every tile owns a contiguous,
front-to-back range ``[start, end)`` of the sorted list.

Shapes are static: the sorted list has ``capacity`` slots. The number of
intersections the frame needs is always computed, and ``overflow`` is set when
it exceeds ``capacity``; a renderer given an overflowing binning drops the
excess intersections, so callers must check ``overflow`` (see
:func:`check_overflow`) and raise the capacity. Sorting uses ``lax.sort`` on
two uint32 keys (tile id, float bits of the positive depth), which orders like
the original's 64-bit ``tile << 32 | depth`` key without enabling x64, and is
stable, so equal depths keep Gaussian order (as CUB's radix sort does).

:func:`bin_gaussians` is three public steps, each usable (and timeable) alone:
:func:`expand_intersections` (one slot per (Gaussian, tile) pair, with its
tile key and depth bits), :func:`sort_intersections` (the stable key sort) and
:func:`tile_ranges` (each tile's range by ``searchsorted``).

Counts cannot wrap: the running total of intersections is a saturating int32
sum that stops at :data:`MAX_COUNT` (``2**30 - 1``), so a frame that needs
billions of intersections (600 Gaussians over a 2048 x 2048 image of 1-pixel
tiles need 2.5e9, past int32's 2**31 - 1) reports ``MAX_COUNT`` intersections
and ``overflow=True``, never a negative count with ``overflow=False``. The
capacity must stay below ``MAX_COUNT``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

TILE = 16
# Intersection counts saturate here (any capacity must be below it).
MAX_COUNT = (1 << 30) - 1


class Binning(NamedTuple):
    """Sorted intersections of one frame.

    Attributes:
      gaussian_ids: ``(capacity,)`` int32, the Gaussian of each sorted slot
        (``N`` for unused slots).
      tile_starts: ``(ny, nx)`` int32, first slot of each tile.
      tile_ends: ``(ny, nx)`` int32, one past the last slot of each tile.
      num_intersections: ``()`` int32, intersections the frame needs
        (saturated at :data:`MAX_COUNT`).
      overflow: ``()`` bool, ``num_intersections > capacity``.
    """

    gaussian_ids: jax.Array
    tile_starts: jax.Array
    tile_ends: jax.Array
    num_intersections: jax.Array
    overflow: jax.Array


def tile_grid(width: int, height: int, tile: int = TILE) -> tuple[int, int]:
    """``(ny, nx)`` tiles of side ``tile`` covering a ``height x width`` image."""
    return (height + tile - 1) // tile, (width + tile - 1) // tile


def tile_rects(
    means2d: jax.Array, radii: jax.Array, width: int, height: int, tile: int = TILE
) -> tuple[jax.Array, jax.Array]:
    """Tile rectangle ``[min, max)`` of each Gaussian (``getRect``).

    Args:
      means2d: ``(N, 2)`` pixel coordinates with pixel centres at ``j + 0.5``.
      radii: ``(N,)`` int pixel radii; 0 means culled (empty rectangle).
      width: image width.
      height: image height.
      tile: tile side in pixels (16 in the original and the Pallas kernel).

    Returns:
      ``(rect_min, rect_max)``, each ``(N, 2)`` int32 as ``(tile_x, tile_y)``.
    """
    ny, nx = tile_grid(width, height, tile)
    p = means2d - 0.5
    r = radii.astype(jnp.float32)[:, None]
    lo = jnp.floor((p - r) / tile)
    hi = jnp.floor((p + r + tile - 1) / tile)
    grid = jnp.broadcast_to(jnp.array([nx, ny], jnp.float32), lo.shape)
    lo = jnp.clip(lo, 0, grid).astype(jnp.int32)
    hi = jnp.clip(hi, 0, grid).astype(jnp.int32)
    culled = (radii <= 0)[:, None]
    return jnp.where(culled, 0, lo), jnp.where(culled, 0, hi)


def _check_sizes(width: int, height: int, tile: int, capacity: int | None) -> None:
    ny, nx = tile_grid(width, height, tile)
    if ny * nx > MAX_COUNT:
        raise ValueError(
            f"{width} x {height} pixels in {tile}-pixel tiles make {ny * nx} tiles; "
            f"at most {MAX_COUNT} are supported (use larger tiles)."
        )
    if capacity is not None and not 0 < capacity < MAX_COUNT:
        raise ValueError(f"capacity={capacity}: expected 0 < capacity < {MAX_COUNT}.")


def count_intersections(
    means2d: jax.Array, radii: jax.Array, width: int, height: int, tile: int = TILE
) -> jax.Array:
    """Tiles touched by each Gaussian, ``(N,)`` int32 (at most the tile count)."""
    _check_sizes(width, height, tile, None)
    lo, hi = tile_rects(means2d, radii, width, height, tile)
    ext = hi - lo
    return ext[:, 0] * ext[:, 1]


def _saturating_add(a: jax.Array, b: jax.Array) -> jax.Array:
    # a, b <= MAX_COUNT < 2**30, so a + b < 2**31 fits in int32.
    return jnp.minimum(a + b, MAX_COUNT)


def running_total(counts: jax.Array) -> jax.Array:
    """Inclusive prefix sums of ``(N,)`` non-negative int32 ``counts``, saturated.

    Exact while below :data:`MAX_COUNT`, then equal to it: the sum cannot wrap
    around to a negative number however many intersections a frame needs.
    """
    counts = jnp.minimum(counts.astype(jnp.int32), MAX_COUNT)
    if counts.shape[0] == 0:
        return counts
    return jax.lax.associative_scan(_saturating_add, counts)


def total_intersections(counts: jax.Array) -> jax.Array:
    """``()`` int32 sum of ``counts``, saturated at :data:`MAX_COUNT`."""
    ends = running_total(counts)
    return ends[-1] if ends.shape[0] else jnp.int32(0)


class Intersections(NamedTuple):
    """Unsorted tile intersections of one frame, ``capacity`` slots.

    Attributes:
      tile_keys: ``(capacity,)`` uint32 tile id ``ty * nx + tx`` of each slot
        (``ny * nx`` for unused slots, so they sort last).
      depth_bits: ``(capacity,)`` uint32 float bits of the Gaussian's positive
        depth (0 for unused slots); they order like the depths.
      gaussian_ids: ``(capacity,)`` int32 Gaussian of each slot (``N`` for
        unused slots).
      num_intersections: ``()`` int32, intersections the frame needs
        (saturated at :data:`MAX_COUNT`).
    """

    tile_keys: jax.Array
    depth_bits: jax.Array
    gaussian_ids: jax.Array
    num_intersections: jax.Array


def expand_intersections(
    means2d: jax.Array,
    depths: jax.Array,
    radii: jax.Array,
    width: int,
    height: int,
    capacity: int,
    tile: int = TILE,
) -> Intersections:
    """Duplicates each Gaussian once per covered tile, in Gaussian order.

    Slot ``s`` belongs to the Gaussian whose running intersection total first
    exceeds ``s`` (a ``searchsorted``); its tiles are enumerated row by row
    over the Gaussian's tile rectangle. Slots past the frame's need are unused;
    intersections past ``capacity`` are dropped.

    Args:
      means2d: ``(N, 2)``.
      depths: ``(N,)`` positive view depths of visible Gaussians.
      radii: ``(N,)`` int radii, 0 for culled Gaussians.
      width: image width.
      height: image height.
      capacity: static number of workspace slots.
      tile: tile side in pixels.

    Returns:
      :class:`Intersections`.
    """
    n = means2d.shape[0]
    _check_sizes(width, height, tile, capacity)
    ny, nx = tile_grid(width, height, tile)
    lo, hi = tile_rects(means2d, radii, width, height, tile)
    ext = hi - lo
    counts = ext[:, 0] * ext[:, 1]
    # Saturated prefix sums are exact below MAX_COUNT > capacity, which is all
    # the slots below need; the total saturates instead of wrapping.
    ends = running_total(counts)
    starts = jnp.concatenate([jnp.zeros((1,), jnp.int32), ends[:-1]])
    total = ends[-1] if n else jnp.int32(0)
    slots = jnp.arange(capacity, dtype=jnp.int32)
    gid = jnp.searchsorted(ends, slots, side="right").astype(jnp.int32)
    valid = slots < total
    g = jnp.minimum(gid, n - 1)
    local = slots - starts[g]
    w = jnp.maximum(ext[g, 0], 1)
    tx = lo[g, 0] + local % w
    ty = lo[g, 1] + local // w
    tile_keys = jnp.where(valid, ty * nx + tx, ny * nx).astype(jnp.uint32)
    depth_bits = jax.lax.bitcast_convert_type(
        jnp.maximum(depths[g], 0.0).astype(jnp.float32), jnp.uint32
    )
    depth_bits = jnp.where(valid, depth_bits, np.uint32(0))
    gid = jnp.where(valid, gid, n)
    return Intersections(tile_keys, depth_bits, gid, total.astype(jnp.int32))


def sort_intersections(
    tile_keys: jax.Array, depth_bits: jax.Array, gaussian_ids: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Stable sort of the slots by ``(tile, depth)``.

    Args:
      tile_keys: ``(capacity,)`` uint32.
      depth_bits: ``(capacity,)`` uint32.
      gaussian_ids: ``(capacity,)`` int32, carried along.

    Returns:
      ``(sorted tile_keys, sorted gaussian_ids)``, each ``(capacity,)``; equal
      keys keep their slot order (Gaussian order).
    """
    keys, _, ids = jax.lax.sort(
        (tile_keys, depth_bits, gaussian_ids), num_keys=2, is_stable=True
    )
    return keys, ids


def tile_ranges(
    sorted_tile_keys: jax.Array, width: int, height: int, tile: int = TILE
) -> tuple[jax.Array, jax.Array]:
    """Each tile's slot range ``[start, end)`` in the sorted list.

    Args:
      sorted_tile_keys: ``(capacity,)`` uint32, ascending.
      width: image width.
      height: image height.
      tile: tile side in pixels.

    Returns:
      ``(tile_starts, tile_ends)``, each ``(ny, nx)`` int32.
    """
    ny, nx = tile_grid(width, height, tile)
    ids = jnp.arange(ny * nx, dtype=jnp.uint32)
    starts = jnp.searchsorted(sorted_tile_keys, ids, side="left").astype(jnp.int32)
    stops = jnp.searchsorted(sorted_tile_keys, ids, side="right").astype(jnp.int32)
    return starts.reshape(ny, nx), stops.reshape(ny, nx)


def depth_order(depths: jax.Array) -> jax.Array:
    """``(N,)`` int32 permutation putting Gaussians nearest first.

    A stable sort of the float bits of ``max(depth, 0)`` (the binning's depth
    key), so equal depths keep Gaussian order.
    """
    bits = jax.lax.bitcast_convert_type(
        jnp.maximum(depths, 0.0).astype(jnp.float32), jnp.uint32
    )
    iota = jnp.arange(depths.shape[0], dtype=jnp.int32)
    _, order = jax.lax.sort((bits, iota), num_keys=1, is_stable=True)
    return order


def expand_intersections_depth_first(
    means2d: jax.Array,
    depths: jax.Array,
    radii: jax.Array,
    width: int,
    height: int,
    capacity: int,
    tile: int = TILE,
) -> Intersections:
    """:func:`expand_intersections` over the Gaussians in :func:`depth_order`.

    The slots come out nearest Gaussian first, so a stable sort by tile alone
    (:func:`sort_by_tile`) yields the ``(tile, depth)`` order; ``gaussian_ids``
    are the original indices (``N`` for unused slots). Arguments and result
    as :func:`expand_intersections`.
    """
    n = means2d.shape[0]
    order = depth_order(depths)
    inter = expand_intersections(
        means2d[order], depths[order], radii[order], width, height, capacity, tile
    )
    gid = inter.gaussian_ids
    ids = jnp.where(gid < n, order[jnp.minimum(gid, max(n - 1, 0))], n)
    return inter._replace(gaussian_ids=ids.astype(jnp.int32))


def sort_by_tile(
    tile_keys: jax.Array, gaussian_ids: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Stable sort of the slots by tile alone: one 32-bit key and one payload.

    Args:
      tile_keys: ``(capacity,)`` uint32.
      gaussian_ids: ``(capacity,)`` int32, carried along.

    Returns:
      ``(sorted tile_keys, sorted gaussian_ids)``, each ``(capacity,)``.
    """
    keys, ids = jax.lax.sort((tile_keys, gaussian_ids), num_keys=1, is_stable=True)
    return keys, ids


BINNING_METHODS = ("two_keys", "depth_first")


def bin_gaussians(
    means2d: jax.Array,
    depths: jax.Array,
    radii: jax.Array,
    width: int,
    height: int,
    capacity: int,
    tile: int = TILE,
    method: str = "two_keys",
) -> Binning:
    """Duplicates Gaussians per covered tile and sorts by ``(tile, depth)``.

    ``method='two_keys'`` (default): :func:`expand_intersections`, then
    :func:`sort_intersections` on the ``(tile, depth)`` key pair, then
    :func:`tile_ranges`. ``method='depth_first'``: sort the ``N`` Gaussians
    by depth once (:func:`expand_intersections_depth_first`), then sort the
    intersections by tile alone (:func:`sort_by_tile`): the long sort has one
    32-bit key instead of two, which GPU radix sorts handle best. Both give
    the same binning bit for bit when the workspace holds the frame; when it
    overflows, ``two_keys`` drops the intersections of the highest Gaussian
    indices and ``depth_first`` those of the farthest Gaussians.

    Args:
      means2d: ``(N, 2)``.
      depths: ``(N,)`` positive view depths of visible Gaussians.
      radii: ``(N,)`` int radii, 0 for culled Gaussians.
      width: image width.
      height: image height.
      capacity: static number of workspace slots.
      tile: tile side in pixels.
      method: one of :data:`BINNING_METHODS`.

    Returns:
      :class:`Binning`.
    """
    args = (means2d, depths, radii, width, height, capacity, tile)
    if method == "two_keys":
        inter = expand_intersections(*args)
        keys, gid = sort_intersections(
            inter.tile_keys, inter.depth_bits, inter.gaussian_ids
        )
    elif method == "depth_first":
        inter = expand_intersections_depth_first(*args)
        keys, gid = sort_by_tile(inter.tile_keys, inter.gaussian_ids)
    else:
        raise ValueError(f"method must be one of {BINNING_METHODS}, got {method!r}")
    starts, stops = tile_ranges(keys, width, height, tile)
    total = inter.num_intersections
    return Binning(
        gaussian_ids=gid,
        tile_starts=starts,
        tile_ends=stops,
        num_intersections=total,
        overflow=total > capacity,
    )


class OverflowError(RuntimeError):
    """The intersection workspace was too small for a frame."""


def check_overflow(num_intersections, capacity: int) -> None:
    """Raises :class:`OverflowError` (host side) if a frame overflowed.

    Args:
      num_intersections: the binning's count (any array-like, any shape; the
        maximum is checked).
      capacity: the workspace capacity used.
    """
    needed = int(np.max(np.asarray(jax.device_get(num_intersections))))
    if needed > capacity:
        at_least = "at least " if needed >= MAX_COUNT else ""
        raise OverflowError(
            f"The frame needs {at_least}{needed} tile intersections but the "
            f"workspace holds {capacity}; raise the capacity to at least "
            f"{needed}."
        )
