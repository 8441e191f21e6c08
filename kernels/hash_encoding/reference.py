"""Multiresolution hash encoding (Instant-NGP), pure jnp: the truth for the kernel.

Conventions (those of tiny-cuda-nn's ``GridEncodingTemplated``, ``grid.h``):

* **Levels.** ``L`` levels, growth factor ``b`` = ``per_level_scale``, either
  given or computed as in Instant-NGP, ``b = exp((ln N_max - ln N_min)/(L-1))``.
  Level ``l`` has ``scale_l = 2^(l * log2 b) * N_min - 1`` and resolution
  ``res_l = ceil(scale_l) + 1`` (``N_min`` counts grid vertices, not cells). The
  scales are computed on the host in float32, as tcnn does (``exp2f``, ``log2f``).
* **Position.** ``pos = x * scale_l + 0.5``; the corner is ``floor(pos)`` (cast
  through int32 to uint32) and the interpolation weight is ``pos - floor(pos)``.
  The 0.5 offset staggers the levels. For ``x`` in ``[0, 1]`` the upper corner
  can reach ``res_l`` (one past the grid) at integer scales; tcnn lets that index
  wrap, and so does this code.
* **Index.** Level ``l`` owns ``P_l = min(next_multiple(res_l^3, 8), T)`` table
  rows. If ``res_l^3 <= P_l`` (equivalently ``res_l^3 <= T``) the level is dense:
  ``i = c_0 + c_1 res_l + c_2 res_l^2`` (x fastest); otherwise it is hashed:
  ``i = c_0 * 1 XOR c_1 * 2654435761 XOR c_2 * 805459861``, all in uint32 with
  wrap-around. The row is ``i mod P_l``.
* **Interpolation.** Trilinear over the 8 corners, corner ``k`` taking the upper
  vertex along dim ``d`` when bit ``d`` of ``k`` is set; its weight is the product
  over dims of ``frac`` or ``1 - frac`` (multiplied in dim order 0, 1, 2), and the
  corners are summed in order ``k = 0..7``, all in float32.
* **Output.** ``(N, L * F)``, level-major: column ``l * F + f`` is feature ``f`` of
  level ``l``. The gradient wrt ``x`` is that of the piecewise-trilinear
  function (``floor`` has zero derivative), as tcnn's ``dy_dx``.

Deviations from tcnn, none of which changes a value for the same parameters:

* The table is a rectangular ``(L, T, F)`` array, not tcnn's packed 1-D buffer
  with per-level offsets; a dense level uses only its first ``P_l`` rows and the
  rest get zero gradient. Copying tcnn parameters in means slicing its buffer
  by its offset table into these rows.
* ``T`` may be any positive integer (tcnn takes ``2^log2_hashmap_size``).
* tcnn computes ``pos`` with a fused multiply-add (``fmaf``); here XLA decides
  whether ``x * scale + 0.5`` is fused, which can move a point lying within one
  ulp of a cell boundary to the neighbouring cell. ``exp2f`` on the host may
  differ from CUDA's by an ulp, which only matters if ``scale_l`` is within an
  ulp of an integer.
* Only linear interpolation (tcnn's default); no smoothstep or nearest, no
  ``max_level`` masking, no quantisation threshold.
* Inputs outside ``[0, 1]`` are not clamped (tcnn does not clamp either); their
  corners wrap through uint32 exactly as tcnn's do.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

# tiny-cuda-nn's first three hashing primes (the first is 1 "for memory coherence").
PRIMES: tuple[int, int, int] = (1, 2654435761, 805459861)
NUM_CORNERS = 8


class LevelParams(NamedTuple):
    """Static per-level constants, each a tuple of length ``L``."""

    scale: tuple[float, ...]  # float32 values: pos = x * scale + 0.5
    resolution: tuple[int, ...]  # res_l = ceil(scale) + 1
    size: tuple[int, ...]  # P_l: rows the level indexes into (mod P_l)
    dense: tuple[bool, ...]  # res_l^3 <= T: stride indexing instead of hashing


@dataclasses.dataclass(frozen=True)
class HashEncodingConfig:
    """Hyper-parameters of the hash grid (hashable, so usable as a static arg).

    Attributes:
      num_levels: ``L``.
      features_per_level: ``F``.
      log2_table_size: ``log2 T`` (tcnn's ``log2_hashmap_size``); ignored when
        ``table_size`` is given.
      table_size: ``T`` rows per level; any positive integer.
      base_resolution: ``N_min``.
      per_level_scale: growth factor ``b``; if ``None`` it comes from
        ``max_resolution``, and if both are ``None`` it is 2.0 (tcnn's default).
      max_resolution: ``N_max``, giving ``b = exp((ln N_max - ln N_min)/(L-1))``.
    """

    num_levels: int = 16
    features_per_level: int = 2
    log2_table_size: int = 19
    table_size: int | None = None
    base_resolution: int = 16
    per_level_scale: float | None = None
    max_resolution: float | None = None

    def __post_init__(self):
        if self.num_levels < 1 or self.features_per_level < 1:
            raise ValueError("num_levels and features_per_level must be >= 1")
        if self.hashmap_size < 1 or self.hashmap_size >= 2**31:
            raise ValueError(
                f"table size must be in [1, 2^31), got {self.hashmap_size}"
            )
        if self.per_level_scale is not None and self.max_resolution is not None:
            raise ValueError("give per_level_scale or max_resolution, not both")

    @property
    def hashmap_size(self) -> int:
        """``T``, the number of rows per level."""
        if self.table_size is not None:
            return int(self.table_size)
        return 2 ** int(self.log2_table_size)

    @property
    def output_dim(self) -> int:
        """``L * F``."""
        return self.num_levels * self.features_per_level

    @property
    def growth_factor(self) -> float:
        """``b`` as the float32 value tcnn receives."""
        if self.per_level_scale is not None:
            b = float(self.per_level_scale)
        elif self.max_resolution is not None:
            if self.num_levels == 1:
                b = 1.0
            else:
                b = math.exp(
                    (math.log(self.max_resolution) - math.log(self.base_resolution))
                    / (self.num_levels - 1)
                )
        else:
            b = 2.0
        return float(np.float32(b))

    def levels(self) -> LevelParams:
        """Per-level scale, resolution, row count and dense flag (host values)."""
        log2_b = np.log2(np.float32(self.growth_factor))  # float32, as std::log2f
        n_min = np.float32(self.base_resolution)
        t = self.hashmap_size
        scales, resolutions, sizes, dense = [], [], [], []
        for level in range(self.num_levels):
            scale = np.exp2(np.float32(level) * log2_b) * n_min - np.float32(1.0)
            scale = np.float32(scale)
            res = int(np.ceil(scale)) + 1
            dense_params = res**3
            size = min(-(-dense_params // 8) * 8, t)
            scales.append(float(scale))
            resolutions.append(res)
            sizes.append(size)
            dense.append(dense_params <= size)
        return LevelParams(
            tuple(scales), tuple(resolutions), tuple(sizes), tuple(dense)
        )


def init_table(
    key: jax.Array, config: HashEncodingConfig, dtype: jnp.dtype = jnp.float32
) -> jax.Array:
    """tcnn's initialisation, U(-1e-4, 1e-4). Returns ``(L, T, F)``."""
    shape = (config.num_levels, config.hashmap_size, config.features_per_level)
    return jax.random.uniform(key, shape, dtype, minval=-1e-4, maxval=1e-4)


def fast_hash(corner: jax.Array) -> jax.Array:
    """tcnn's ``fast_hash`` for 3-D: uint32 ``(..., 3)`` -> uint32 ``(...)``.

    Products and XOR wrap modulo 2^32 (uint32 arithmetic).
    """
    corner = corner.astype(jnp.uint32)
    out = corner[..., 0] * jnp.uint32(PRIMES[0])
    out = out ^ (corner[..., 1] * jnp.uint32(PRIMES[1]))
    return out ^ (corner[..., 2] * jnp.uint32(PRIMES[2]))


def grid_index(corner: jax.Array, resolution: int, size: int, dense: bool) -> jax.Array:
    """Row of each corner at one level: uint32 ``(..., 3)`` -> int32 ``(...)``.

    Dense levels use the stride index ``c_0 + c_1 res + c_2 res^2``, hashed ones
    ``fast_hash``; both in uint32, then ``mod size`` (``P_l``).
    """
    corner = corner.astype(jnp.uint32)
    if dense:
        res = jnp.uint32(resolution)
        index = corner[..., 0] + corner[..., 1] * res + corner[..., 2] * (res * res)
    else:
        index = fast_hash(corner)
    return (index % jnp.uint32(size)).astype(jnp.int32)


def level_corners(
    x: jax.Array, scale: float, resolution: int, size: int, dense: bool
) -> tuple[jax.Array, jax.Array]:
    """Table rows and trilinear weights of the 8 corners of every point.

    Args:
      x: ``(N, 3)`` points, nominally in ``[0, 1]``.
      scale, resolution, size, dense: one level's entries of ``config.levels()``.

    Returns:
      ``(rows, weights)``: int32 ``(N, 8)`` and float32 ``(N, 8)``.
    """
    pos = x.astype(jnp.float32) * jnp.float32(scale) + jnp.float32(0.5)  # (N, 3)
    floor = jnp.floor(pos)
    frac = pos - floor
    base = jax.lax.bitcast_convert_type(floor.astype(jnp.int32), jnp.uint32)
    bits = np.array([[(k >> d) & 1 for d in range(3)] for k in range(NUM_CORNERS)])
    bits = bits.reshape(1, NUM_CORNERS, 3)
    corner = base[:, None, :] + jnp.asarray(bits, jnp.uint32)  # (N, 8, 3)
    per_dim = jnp.where(bits == 1, frac[:, None, :], 1.0 - frac[:, None, :])
    weights = per_dim[..., 0] * per_dim[..., 1] * per_dim[..., 2]
    return grid_index(corner, resolution, size, dense), weights


def hash_encode_reference(
    x: jax.Array, table: jax.Array, config: HashEncodingConfig
) -> jax.Array:
    """Multiresolution hash encoding in plain jnp (differentiable by autodiff).

    One block of XLA ops per level, with that level's constants baked in.

    Args:
      x: ``(N, 3)`` points, nominally in ``[0, 1]``.
      table: ``(L, T, F)`` parameters.
      config: the grid; must agree with ``table``'s shape.

    Returns:
      ``(N, L * F)`` features in ``table.dtype``, level-major.
    """
    lp = config.levels()
    outs = []
    for level in range(table.shape[0]):
        rows, weights = level_corners(
            x, lp.scale[level], lp.resolution[level], lp.size[level], lp.dense[level]
        )
        values = table[level].astype(jnp.float32)[rows]  # (N, 8, F)
        out = weights[:, 0, None] * values[:, 0]
        for k in range(1, NUM_CORNERS):
            out = out + weights[:, k, None] * values[:, k]
        outs.append(out)
    return jnp.concatenate(outs, axis=1).astype(table.dtype)
