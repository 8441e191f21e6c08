"""XLA stages of the hash encoding's table gradient, one function per stage.

The Pallas corner kernel (``pallas.corner_kernel``) writes, for a run of
``L_r`` levels and ``N_p`` (padded) points, the row ``rows[l, k, n]`` and the
trilinear weight ``weights[l, k, n]`` of each of the 8 corners. The functions
here turn them into the table gradient ``dtable[l, row] += w * g[n, l, :]``
without atomics, so the result is bitwise reproducible on any backend. They
are the code path of the custom VJP (``pallas._backward`` calls exactly these),
so a benchmark can time each stage on materialised inputs.

Sort path (every level, ``M = L_r * 8 * N_p`` entries):

1. ``table_contributions``: keys ``l * T + row`` ``(M,)`` and contributions
   ``w * g`` ``(M, F)``.
2. ``sort_pairs``: stable sort of the keys, contributions permuted alike.
3. ``segmented_scan``: inclusive sums within runs of equal keys (a fixed
   association tree), and a flag on each run's last entry.
4. ``scatter_segments``: each run's total written once into ``(L_r * T, F)``.

Dense path (levels whose grid fits the table without hashing, ``M = L_r *
N_p`` entries). On a dense level corner ``k``'s row is ``(row_0 + o_k) mod
P_l`` with ``o_k = b_0 + b_1 res_l + b_2 res_l^2`` (``b`` the bits of ``k``)
whenever the uint32 index of the base corner does not wrap when ``o_k`` is
added, which holds for every point in ``[0, 1]^3`` (the base index is then
below ``res_l^3 <= P_l``). Then all 8 corner streams share one order:

1. ``dense_regular``: checks that identity for every point and corner (a point
   far outside the unit cube can break it; the level run then takes the sort
   path, decided at run time by ``lax.cond``).
2. ``dense_keys`` and ``dense_contributions``: keys ``l * T + row_0``
   ``(M,)``, contributions of the 8 corners side by side ``(M, 8 * F)``.
3. ``sort_pairs`` and ``segmented_scan`` as above, on 8x fewer keys.
4. ``scatter_dense_corners``: per corner ``k = 0..7`` in turn, one scatter-add
   of the run totals to rows ``(row_0 + o_k) mod P_l``. The map
   ``row_0 -> (row_0 + o_k) mod P_l`` is injective, so each scatter has unique
   targets (no contention) and every table row receives its 8 corner sums in
   the fixed order ``k = 0..7``: deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .reference import NUM_CORNERS

_BITS = np.array([[(k >> d) & 1 for d in range(3)] for k in range(NUM_CORNERS)])


def table_contributions(
    rows: jax.Array, weights: jax.Array, g: jax.Array, table_size: int
) -> tuple[jax.Array, jax.Array]:
    """Keys and contributions of every (level, corner, point).

    Args:
      rows: int32 ``(L_r, 8, N_p)`` corner rows in ``[0, T)``.
      weights: float32 ``(L_r, 8, N_p)`` trilinear weights.
      g: float32 ``(N_p, L_r * F)`` output cotangent of the run's levels.
      table_size: ``T``.

    Returns:
      ``(keys, values)``: int32 ``(M,)`` keys ``l * T + row`` and float32
      ``(M, F)`` contributions ``w * g``, ``M = L_r * 8 * N_p``, ordered
      (level, corner, point).
    """
    num_levels, _, n_pad = rows.shape
    num_features = g.shape[1] // num_levels
    g_lfn = jnp.transpose(g.reshape(n_pad, num_levels, num_features), (1, 2, 0))
    contrib = weights[:, :, None, :] * g_lfn[:, None, :, :]  # (L, 8, F, N)
    contrib = jnp.transpose(contrib, (0, 1, 3, 2)).reshape(-1, num_features)
    level = jnp.arange(num_levels, dtype=jnp.int32)[:, None, None]
    keys = (rows + level * table_size).reshape(-1)
    return keys, contrib


def sort_pairs(keys: jax.Array, values: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Stable sort by key, the values permuted alike.

    Args:
      keys: int32 ``(M,)``.
      values: float32 ``(M, C)``.

    Returns:
      ``(sorted_keys (M,), sorted_values (M, C))``; equal keys keep their
      input order.
    """
    order = jnp.arange(keys.shape[0], dtype=jnp.int32)
    sorted_keys, order = jax.lax.sort((keys, order), num_keys=1, is_stable=True)
    return sorted_keys, values[order]


def segmented_scan(
    sorted_keys: jax.Array, sorted_values: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Inclusive sums within runs of equal keys, by a fixed association tree.

    Args:
      sorted_keys: int32 ``(M,)``, equal keys adjacent.
      sorted_values: float32 ``(M, C)``.

    Returns:
      ``(sums, last)``: float32 ``(M, C)`` running sums that restart at each
      new key, and bool ``(M,)`` marking the last entry of each run (whose
      sum is the run's total).
    """
    change = sorted_keys[1:] != sorted_keys[:-1]
    start = jnp.concatenate([jnp.ones((1,), bool), change])
    last = jnp.concatenate([change, jnp.ones((1,), bool)])

    def combine(a, b):
        a_start, a_val = a
        b_start, b_val = b
        return a_start | b_start, jnp.where(b_start[..., None], b_val, a_val + b_val)

    _, sums = jax.lax.associative_scan(combine, (start, sorted_values))
    return sums, last


def scatter_segments(
    sorted_keys: jax.Array, last: jax.Array, sums: jax.Array, size: int
) -> jax.Array:
    """Writes each run's total to row ``key`` of a zero ``(size, C)`` array.

    Args:
      sorted_keys: int32 ``(M,)`` in ``[0, size)``.
      last: bool ``(M,)`` from ``segmented_scan``.
      sums: float32 ``(M, C)`` from ``segmented_scan``.
      size: number of output rows.

    Returns:
      float32 ``(size, C)``; rows without a key are zero.
    """
    target = jnp.where(last, sorted_keys, size)  # non-final entries are dropped
    out = jnp.zeros((size, sums.shape[1]), jnp.float32)
    return out.at[target].set(sums, mode="drop")


def sorted_segment_sum(keys: jax.Array, values: jax.Array, size: int) -> jax.Array:
    """Deterministic ``zeros((size, C)).at[keys].add(values)``.

    Args:
      keys: int32 ``(M,)`` in ``[0, size)``.
      values: float32 ``(M, C)``.
      size: number of output rows.

    Returns:
      ``(size, C)`` float32 sums: ``sort_pairs``, ``segmented_scan``,
      ``scatter_segments``.
    """
    sorted_keys, sorted_values = sort_pairs(keys, values)
    sums, last = segmented_scan(sorted_keys, sorted_values)
    return scatter_segments(sorted_keys, last, sums, size)


def _corner_offsets(resolutions: Sequence[int]) -> np.ndarray:
    """int32 ``(L_r, 8)``: ``o_k = b_0 + b_1 res + b_2 res^2`` per level."""
    res = np.asarray(resolutions, np.int64)[:, None]
    offsets = _BITS[None, :, 0] + _BITS[None, :, 1] * res + _BITS[None, :, 2] * res**2
    return offsets.astype(np.int32)


def dense_regular(
    rows: jax.Array, resolutions: Sequence[int], sizes: Sequence[int]
) -> jax.Array:
    """Whether every corner row is ``(row_0 + o_k) mod P_l`` (dense levels).

    Args:
      rows: int32 ``(L_r, 8, N_p)`` corner rows of dense levels.
      resolutions: ``res_l`` of those levels (host ints).
      sizes: ``P_l`` of those levels (host ints).

    Returns:
      bool scalar; always true for points in ``[0, 1]^3``.
    """
    offsets = jnp.asarray(_corner_offsets(resolutions))[:, :, None]
    size = jnp.asarray(np.asarray(sizes, np.int32))[:, None, None]
    return jnp.all(rows == (rows[:, :1, :] + offsets) % size)


def dense_keys(rows: jax.Array, table_size: int) -> jax.Array:
    """int32 ``(L_r * N_p,)`` keys ``l * T + row_0`` from ``(L_r, 8, N_p)`` rows."""
    level = jnp.arange(rows.shape[0], dtype=jnp.int32)[:, None]
    return (rows[:, 0, :] + level * table_size).reshape(-1)


def dense_contributions(weights: jax.Array, g: jax.Array) -> jax.Array:
    """Contributions of the 8 corners of each (level, point), side by side.

    Args:
      weights: float32 ``(L_r, 8, N_p)``.
      g: float32 ``(N_p, L_r * F)`` output cotangent of the run's levels.

    Returns:
      float32 ``(L_r * N_p, 8 * F)``; column ``k * F + f`` is ``w_k * g_f``.
    """
    num_levels, _, n_pad = weights.shape
    g_lnf = jnp.transpose(g.reshape(n_pad, num_levels, -1), (1, 0, 2))
    contrib = jnp.transpose(weights, (0, 2, 1))[..., None] * g_lnf[:, :, None, :]
    return contrib.reshape(num_levels * n_pad, -1)


def scatter_dense_corners(
    sorted_keys: jax.Array,
    last: jax.Array,
    sums: jax.Array,
    table_size: int,
    resolutions: Sequence[int],
    sizes: Sequence[int],
) -> jax.Array:
    """Adds each run's 8 corner totals to their rows, corner by corner.

    Args:
      sorted_keys: int32 ``(M,)`` keys ``l * T + row_0``, sorted.
      last: bool ``(M,)`` from ``segmented_scan``.
      sums: float32 ``(M, 8 * F)`` from ``segmented_scan``.
      table_size: ``T``.
      resolutions, sizes: ``res_l`` and ``P_l`` of the run's levels.

    Returns:
      float32 ``(L_r * T, F)`` table gradient of the run's levels.
    """
    num_levels = len(sizes)
    num_features = sums.shape[1] // NUM_CORNERS
    out_rows = num_levels * table_size
    level = sorted_keys // table_size
    row0 = sorted_keys - level * table_size
    offsets = jnp.asarray(_corner_offsets(resolutions))[level]  # (M, 8)
    size = jnp.asarray(np.asarray(sizes, np.int32))[level]
    out = jnp.zeros((out_rows, num_features), jnp.float32)
    for k in range(NUM_CORNERS):
        target = level * table_size + (row0 + offsets[:, k]) % size
        target = jnp.where(last, target, out_rows)  # non-final entries dropped
        cols = sums[:, k * num_features : (k + 1) * num_features]
        out = out.at[target].add(cols, mode="drop")
    return out


def dense_table_gradient(
    rows: jax.Array,
    weights: jax.Array,
    g: jax.Array,
    table_size: int,
    resolutions: Sequence[int],
    sizes: Sequence[int],
) -> jax.Array:
    """Deterministic table gradient of a run of dense levels.

    One sort of ``L_r * N_p`` keys when ``dense_regular`` holds, else the sort
    path over all ``L_r * 8 * N_p`` corners (chosen at run time).

    Args:
      rows, weights: ``(L_r, 8, N_p)`` from the corner kernel.
      g: float32 ``(N_p, L_r * F)`` output cotangent of the run's levels.
      table_size: ``T``.
      resolutions, sizes: ``res_l`` and ``P_l`` of the run's levels.

    Returns:
      float32 ``(L_r * T, F)``.
    """
    out_rows = rows.shape[0] * table_size

    def split(rows, weights, g):
        keys = dense_keys(rows, table_size)
        values = dense_contributions(weights, g)
        sorted_keys, sorted_values = sort_pairs(keys, values)
        sums, last = segmented_scan(sorted_keys, sorted_values)
        return scatter_dense_corners(
            sorted_keys, last, sums, table_size, resolutions, sizes
        )

    def general(rows, weights, g):
        keys, values = table_contributions(rows, weights, g, table_size)
        return sorted_segment_sum(keys, values, out_rows)

    regular = dense_regular(rows, resolutions, sizes)
    return jax.lax.cond(regular, split, general, rows, weights, g)
