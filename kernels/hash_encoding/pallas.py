"""Hash encoding with Pallas kernels and a custom VJP; the table-gradient variants.

Forward: one Pallas kernel (``kernel.py``: layout, hashing, launch options).

Backward (custom VJP): ``d/dx`` comes from the backward kernel as ``(L, 3, N)``
per-level partials that XLA sums over levels (no atomics, deterministic). The
table gradient ``dtable[l, row_k] += w_k * g[n, l]`` over ``L * 8 * N``
(level, corner, point) terms has four methods (``backward=``); ``level_runs``
says which levels each uses, ``backward.py`` holds the XLA stages.

* ``'sort'`` (``deterministic=True``, the default): the corner kernel writes
  rows and weights; XLA stably sorts the ``L*8*N`` (level, row) keys with their
  contributions, adds equal keys with a segmented associative scan (a fixed
  summation tree) and writes each total once. Bitwise reproducible on any
  backend. Cost: a radix sort of ``8*L*N`` int32 keys with int32 payloads (on
  GPU several passes over ``8*L*N*8`` bytes), a gather of ``8*L*N*F`` floats, a
  scan and a scatter; about 1.5x XLA's scatter-add on an H200.
* ``'atomic'`` (``deterministic=False``): the kernel adds ``w * g`` with atomic
  adds (tcnn's approach). One pass, no sort; but the coarse levels have few
  rows and many points per row, so their atomics contend, and the summation
  order (hence the last bits) varies between GPU runs.
* ``'split_sort'``: dense (coarse) levels, where ``res_l^3 <= T`` and a
  corner's row is ``(row_0 + o_k) mod P_l``, take the dense path of
  ``backward.py``: one stable sort of the ``N`` base-corner keys per level
  (``L_d*N`` keys instead of ``8*L_d*N``), one segmented scan of the 8 corner
  streams side by side, then 8 contention-free scatter-adds (unique targets
  per corner, corners added in the fixed order 0..7). The hashed levels take
  the ``'sort'`` path. Bitwise reproducible. If some point breaks the dense
  identity (possible only for points well outside ``[0, 1]^3``), that run of
  dense levels falls back to the sort path, chosen at run time by
  ``lax.cond`` (on a GPU the branch predicate is read by the host).
* ``'split_atomic'``: dense levels as in ``'split_sort'`` (deterministic, no
  contention); hashed levels by atomic adds, where rows are spread over ``T``
  entries and contention is low. Not bitwise reproducible (the hashed levels'
  atomics), expected to be the fastest.

The split variants launch the backward kernel once per run of levels (dense,
then hashed); ``levels_per_program`` applies to a run only up to the largest
common divisor of its start and length (1 for 5 dense of 16 levels).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from .backward import (
    dense_contributions,
    dense_keys,
    dense_regular,
    dense_table_gradient,
    scatter_dense_corners,
    scatter_segments,
    segmented_scan,
    sort_pairs,
    sorted_segment_sum,
    table_contributions,
)
from .kernel import (
    BACKWARDS,
    Backward,
    PallasOptions,
    atomic_kernel,
    corner_kernel,
    forward_kernel,
    pad_cotangent,
    pad_points,
)
from .reference import NUM_CORNERS, HashEncodingConfig

__all__ = [
    "BACKWARDS",
    "Backward",
    "PallasOptions",
    "atomic_kernel",
    "corner_kernel",
    "dense_contributions",
    "dense_keys",
    "dense_regular",
    "dense_table_gradient",
    "forward_kernel",
    "hash_encode_pallas",
    "level_runs",
    "pad_cotangent",
    "pad_points",
    "scatter_dense_corners",
    "scatter_segments",
    "segmented_scan",
    "sort_pairs",
    "sorted_segment_sum",
    "table_contributions",
]


def _check(x: jax.Array, table: jax.Array, config: HashEncodingConfig) -> None:
    want = (config.num_levels, config.hashmap_size, config.features_per_level)
    if table.shape != want:
        raise ValueError(f"table shape {table.shape} != config's {want}")
    if x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(f"x must be (N, 3), got {x.shape}")


def level_runs(
    config: HashEncodingConfig, backward: Backward
) -> tuple[tuple[int, int, str], ...]:
    """Maximal runs of levels that share a table-gradient method.

    Returns ``(start, stop, method)`` triples covering ``[0, L)`` in order,
    ``method`` one of ``'sort'``, ``'atomic'``, ``'dense'``. ``'sort'`` and
    ``'atomic'`` give one run; the split variants give ``'dense'`` to the
    dense levels and ``'sort'``/``'atomic'`` to the hashed ones.
    """
    if backward in ("sort", "atomic"):
        return ((0, config.num_levels, backward),)
    hashed = backward.removeprefix("split_")
    runs: list[tuple[int, int, str]] = []
    for level, dense in enumerate(config.levels().dense):
        method = "dense" if dense else hashed
        if runs and runs[-1][2] == method:
            runs[-1] = (runs[-1][0], level + 1, method)
        else:
            runs.append((level, level + 1, method))
    return tuple(runs)


def _run_table_gradient(xt, table, g, config, opts, start, stop, method):
    """``(dx (L_r, 3, N_p), dtable (L_r, T, F))`` of one level run."""
    t, num_features = config.hashmap_size, config.features_per_level
    count = stop - start
    if method == "atomic":
        dx, dtable = atomic_kernel(xt, table, g, config, opts, (start, stop))
        return dx, dtable.reshape(count, t, num_features)
    dx, rows, weights = corner_kernel(xt, table, g, config, opts, (start, stop))
    if count != config.num_levels:
        g = g[:, start * num_features : stop * num_features]
    if method == "sort":
        keys, contrib = table_contributions(rows, weights, g, t)
        dtable = sorted_segment_sum(keys, contrib, count * t)
    else:
        lp = config.levels()
        dtable = dense_table_gradient(
            rows, weights, g, t, lp.resolution[start:stop], lp.size[start:stop]
        )
    return dx, dtable.reshape(count, t, num_features)


def _backward(
    x: jax.Array,
    table: jax.Array,
    g: jax.Array,
    config: HashEncodingConfig,
    opts: PallasOptions,
) -> tuple[jax.Array, jax.Array]:
    """``(dx (N, 3), dtable (L, T, F))``, float32, level run by level run."""
    xt = pad_points(x, opts.block_size)
    g = pad_cotangent(g, opts.block_size)
    parts = [
        _run_table_gradient(xt, table, g, config, opts, *run)
        for run in level_runs(config, opts.method)
    ]
    join = lambda arrays: arrays[0] if len(arrays) == 1 else jnp.concatenate(arrays)
    dx = join([p[0] for p in parts])
    dtable = join([p[1] for p in parts])
    return jnp.sum(dx, axis=0).T[: x.shape[0]], dtable


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _encode(x, table, config, opts):
    return forward_kernel(x, table, config, opts)


def _encode_fwd(x, table, config, opts):
    return forward_kernel(x, table, config, opts), (x, table)


def _encode_bwd(config, opts, residuals, g):
    x, table = residuals
    dx, dtable = _backward(x, table, g, config, opts)
    return dx.astype(x.dtype), dtable.astype(table.dtype)


_encode.defvjp(_encode_fwd, _encode_bwd)


def hash_encode_pallas(
    x: jax.Array,
    table: jax.Array,
    config: HashEncodingConfig,
    *,
    block_size: int = 256,
    interpret: bool = False,
    deterministic: bool = True,
    num_warps: int = 4,
    levels_per_program: int = 1,
    backward: Backward | None = None,
) -> jax.Array:
    """Hash encoding with the Pallas kernels (differentiable wrt x and table).

    Args:
      x: ``(N, 3)`` points, nominally in ``[0, 1]``; any N (padded internally).
      table: ``(L, T, F)`` parameters.
      config: the grid; must agree with ``table``'s shape.
      block_size: points per program (a power of 2 on GPU).
      interpret: run in the Pallas interpreter (required on CPU).
      deterministic: sort-based (True) or atomic (False) table gradient; used
        only when ``backward`` is None.
      num_warps: Triton warps per program.
      levels_per_program: consecutive levels one program handles for its block
        of points (grid ``(N/B, L/P)``); must divide ``L``.
      backward: table-gradient method, ``'sort'``, ``'atomic'``,
        ``'split_sort'`` or ``'split_atomic'`` (module docstring); None means
        ``'sort'`` if ``deterministic`` else ``'atomic'``.

    Returns:
      ``(N, L * F)`` features in ``table.dtype``, level-major.
    """
    _check(x, table, config)
    if backward is not None and backward not in BACKWARDS:
        raise ValueError(f"backward must be one of {BACKWARDS}, got {backward!r}")
    if levels_per_program < 1 or config.num_levels % levels_per_program:
        raise ValueError(
            f"levels_per_program={levels_per_program} must divide "
            f"num_levels={config.num_levels}"
        )
    opts = PallasOptions(
        block_size, interpret, deterministic, num_warps, levels_per_program, backward
    )
    if config.num_levels * config.hashmap_size >= 2**31:
        raise ValueError("L * T must be < 2^31 (int32 sort keys)")
    if (
        opts.method != "atomic"
        and config.num_levels * NUM_CORNERS * x.shape[0] >= 2**31
    ):
        raise ValueError(
            f"backward={opts.method!r} needs L * 8 * N < 2^31 (int32 sort)"
        )
    return _encode(x, table, config, opts)
