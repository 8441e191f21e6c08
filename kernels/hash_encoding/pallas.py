"""Pallas kernels for the multiresolution hash encoding, with a custom VJP.

Layout. The grid is ``(point_blocks, levels)``: Pallas axis 0 becomes CUDA's
``blockIdx.x``, which the GPU schedules fastest, so all point blocks of one level
run before the next level starts and only that level's table has to sit in L2
(tcnn's "one level per ``blockIdx.y``"). Each program hashes ``B`` points at one
level, gathers their 8 corners from the level's table and writes a ``(B, F)``
block of the ``(N, L*F)`` output. Points travel transposed, ``(3, N)``, so that
every load and store is a power-of-2 vector of ``B`` values, as Triton requires;
the table travels flattened, ``(L, T*F)``, and is read with integer-array
gathers ``t_ref[row * F + f]``.

``levels_per_program = P`` (default 1) lets one program handle ``P``
consecutive levels for its block of points: the grid becomes ``(N/B, L/P)``,
the level constants arrive as ``(P,)`` blocks, the table as a ``(P, T*F)``
block and the output as a ``(B, P*F)`` block. Each point's position is then
loaded once per ``P`` levels and a program does ``P`` times the work, at the
cost of ``P`` tables competing for L2 at a time.

Hashing uses int32 arithmetic (the prime 2654435761 as its int32 bit pattern),
which wraps exactly like tcnn's uint32 arithmetic; the row is taken as uint32
``mod P_l`` and returned to int32. Values match ``reference.py`` bit for bit up
to the compiler's choice of fused multiply-adds.

Backward (custom VJP), one kernel over the same grid:

* ``d/dx``: per level and point, ``scale * sum_k dw_k/dfrac * <g, t[row_k]>``,
  written as ``(L, 3, N)`` partials that XLA sums over levels (no atomics).
* ``d/dtable``, ``deterministic=True`` (default): the kernel writes the rows and
  weights of the 8 corners; XLA stably sorts the ``L*8*N`` (level, row) keys,
  adds the contributions of equal keys with a segmented associative scan (a
  fixed summation tree) and writes each total once. The result is bitwise
  reproducible run to run on any backend.
* ``deterministic=False``: the kernel adds ``w * g`` into the table gradient
  with ``jax.ref.addupdate``, which the Triton lowering emits as an atomic add
  (tcnn's approach): faster, but the summation order, hence the last bits,
  varies between runs on a GPU.

GPU lowering is Triton (``compiler_params=pltriton.CompilerParams(...)``):
Mosaic GPU has no integer-array gather from global memory. On CPU the kernels
run only with ``interpret=True``.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl

from .reference import NUM_CORNERS, PRIMES, HashEncodingConfig

try:  # Triton compiler params; absent from some CPU-only builds.
    from jax.experimental.pallas import triton as pltriton
except ImportError:  # pragma: no cover
    pltriton = None

# tcnn's primes as int32 bit patterns: int32 products wrap like uint32 ones.
_PRIME1 = int(np.array(PRIMES[1], np.uint32).view(np.int32))
_PRIME2 = int(np.array(PRIMES[2], np.uint32).view(np.int32))


@dataclasses.dataclass(frozen=True)
class PallasOptions:
    """Static launch options.

    Attributes:
      block_size: points per program, ``B`` (a power of 2 for Triton).
      interpret: run the kernels in the Pallas interpreter (any backend).
      deterministic: table gradient by sort + segmented scan (True) or by
        atomic adds in the kernel (False).
      num_warps: Triton warps per program.
      levels_per_program: consecutive levels one program handles for its
        block of points, ``P`` (must divide ``L``; a power of 2 on GPU).
    """

    block_size: int = 256
    interpret: bool = False
    deterministic: bool = True
    num_warps: int = 4
    levels_per_program: int = 1


def _level_constants(config: HashEncodingConfig) -> tuple[jax.Array, ...]:
    """Per-level scale (f32), resolution, size and dense flag (int32), each (L,)."""
    lp = config.levels()
    return (
        jnp.asarray(lp.scale, jnp.float32),
        jnp.asarray(lp.resolution, jnp.int32),
        jnp.asarray(lp.size, jnp.int32),
        jnp.asarray(lp.dense, jnp.int32),
    )


def _level_values(level_refs, j: int, lpp: int) -> tuple[jax.Array, ...]:
    """Scalar constants of the program's ``j``-th level (blocks of ``lpp``)."""
    if lpp == 1:
        return tuple(ref[...] for ref in level_refs)
    return tuple(ref[j] for ref in level_refs)


def _at(j: int, lpp: int, index):
    """Index of a per-level block: ``index`` alone when squeezed (``lpp == 1``)."""
    if lpp == 1:
        return index
    return (j, *index) if isinstance(index, tuple) else (j, index)


def _corners(level_values, x_ref):
    """Rows (int32 (B,)) and per-dim weight factors of the 8 corners.

    Args:
      level_values: one level's scalar scale, resolution, size and dense flag.
      x_ref: the ``(3, B)`` block of points.

    Returns ``(scale, rows, factors)`` where ``factors[k][d]`` is ``frac_d`` if
    bit ``d`` of ``k`` is set, else ``1 - frac_d``.
    """
    scale, res, size, dense = level_values
    size = size.astype(jnp.uint32)
    dense = dense != 0
    base, lo, hi = [], [], []
    for d in range(3):
        pos = x_ref[d, :] * scale + jnp.float32(0.5)
        floor = jnp.floor(pos)
        frac = pos - floor
        base.append(floor.astype(jnp.int32))
        lo.append(jnp.float32(1.0) - frac)
        hi.append(frac)
    rows, factors = [], []
    for k in range(NUM_CORNERS):
        bit = [(k >> d) & 1 for d in range(3)]
        c = [base[d] + bit[d] if bit[d] else base[d] for d in range(3)]
        dense_index = c[0] + c[1] * res + c[2] * (res * res)
        hashed = c[0] ^ (c[1] * _PRIME1) ^ (c[2] * _PRIME2)
        index = jnp.where(dense, dense_index, hashed).astype(jnp.uint32)
        rows.append((index % size).astype(jnp.int32))
        factors.append([hi[d] if bit[d] else lo[d] for d in range(3)])
    return scale, rows, factors


def _fwd_kernel(*refs, num_features: int, lpp: int):
    """refs: 4 level constants (P,), x (3, B), table (P, T*F) -> out (B, P*F).

    With ``lpp == 1`` (``P = 1``) the level axis of the constants and the
    table is squeezed away.
    """
    *level_refs, x_ref, t_ref, o_ref = refs
    for j in range(lpp):
        _, rows, factors = _corners(_level_values(level_refs, j, lpp), x_ref)
        acc = [None] * num_features
        for k in range(NUM_CORNERS):
            a = factors[k]
            w = a[0] * a[1] * a[2]
            offset = rows[k] * num_features
            for f in range(num_features):
                term = w * t_ref[_at(j, lpp, offset + f)].astype(jnp.float32)
                acc[f] = term if k == 0 else acc[f] + term
        for f in range(num_features):
            o_ref[:, j * num_features + f] = acc[f].astype(o_ref.dtype)


def _bwd_kernel(*refs, num_features: int, deterministic: bool, lpp: int):
    """refs: 4 level constants (P,), x (3, B), table (P, T*F), g (B, P*F), outputs.

    Outputs: ``dx`` (P, 3, B) and either rows (P, 8, B) + weights (P, 8, B)
    (deterministic) or the aliased table gradient (P, T*F) (atomic). With
    ``lpp == 1`` the level axis ``P`` is squeezed away.
    """
    if deterministic:
        *level_refs, x_ref, t_ref, g_ref, dx_ref, rows_ref, w_ref = refs
    else:
        *level_refs, x_ref, t_ref, g_ref, _, dx_ref, dt_ref = refs
    for j in range(lpp):
        scale, rows, factors = _corners(_level_values(level_refs, j, lpp), x_ref)
        cols = [j * num_features + f for f in range(num_features)]
        g = [g_ref[:, c].astype(jnp.float32) for c in cols]
        dx = [None, None, None]
        for k in range(NUM_CORNERS):
            a = factors[k]
            w = a[0] * a[1] * a[2]
            offset = rows[k] * num_features
            gt = None
            for f in range(num_features):
                term = g[f] * t_ref[_at(j, lpp, offset + f)].astype(jnp.float32)
                gt = term if gt is None else gt + term
            others = (a[1] * a[2], a[0] * a[2], a[0] * a[1])
            for d in range(3):
                term = others[d] * gt
                if not (k >> d) & 1:
                    term = -term
                dx[d] = term if dx[d] is None else dx[d] + term
            if deterministic:
                rows_ref[_at(j, lpp, (k, slice(None)))] = rows[k]
                w_ref[_at(j, lpp, (k, slice(None)))] = w
            else:
                for f in range(num_features):
                    jax.ref.addupdate(dt_ref, _at(j, lpp, offset + f), w * g[f])
        for d in range(3):
            dx_ref[_at(j, lpp, (d, slice(None)))] = dx[d] * scale


def _compiler_kwargs(opts: PallasOptions) -> dict:
    if opts.interpret or pltriton is None:
        return {}
    params = pltriton.CompilerParams(num_warps=opts.num_warps, num_stages=1)
    return {"compiler_params": params}


def _lead(lpp: int):
    """Leading block dim of a per-level array: squeezed for one level."""
    return pl.squeezed if lpp == 1 else lpp


def _common_specs(
    config: HashEncodingConfig, block: int, lpp: int
) -> list[pl.BlockSpec]:
    """Specs of the 4 level constants, x (3, N) and the table (L, T*F)."""
    t_flat = config.hashmap_size * config.features_per_level
    level = pl.BlockSpec((_lead(lpp),), lambda i, lvl: (lvl,))
    return [
        level,
        level,
        level,
        level,
        pl.BlockSpec((3, block), lambda i, lvl: (0, i)),
        pl.BlockSpec((_lead(lpp), t_flat), lambda i, lvl: (lvl, 0)),
    ]


def _pad_points(x: jax.Array, block: int) -> jax.Array:
    """(N, 3) -> (3, N_pad) float32, padded with zeros to a multiple of block."""
    n = x.shape[0]
    n_pad = -(-n // block) * block
    return jnp.pad(x.astype(jnp.float32), ((0, n_pad - n), (0, 0))).T


def _check(x: jax.Array, table: jax.Array, config: HashEncodingConfig) -> None:
    want = (config.num_levels, config.hashmap_size, config.features_per_level)
    if table.shape != want:
        raise ValueError(f"table shape {table.shape} != config's {want}")
    if x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(f"x must be (N, 3), got {x.shape}")


def _forward(
    x: jax.Array, table: jax.Array, config: HashEncodingConfig, opts: PallasOptions
) -> jax.Array:
    num_levels, t, num_features = table.shape
    block, lpp = opts.block_size, opts.levels_per_program
    xt = _pad_points(x, block)
    n_pad = xt.shape[1]
    out = pl.pallas_call(
        functools.partial(_fwd_kernel, num_features=num_features, lpp=lpp),
        grid=(n_pad // block, num_levels // lpp),
        in_specs=_common_specs(config, block, lpp),
        out_specs=pl.BlockSpec((block, lpp * num_features), lambda i, lvl: (i, lvl)),
        out_shape=jax.ShapeDtypeStruct((n_pad, num_levels * num_features), jnp.float32),
        interpret=opts.interpret,
        **_compiler_kwargs(opts),
    )(*_level_constants(config), xt, table.reshape(num_levels, t * num_features))
    return out[: x.shape[0]].astype(table.dtype)


def _sorted_segment_sum(keys: jax.Array, values: jax.Array, size: int) -> jax.Array:
    """Deterministic ``zeros((size, F)).at[keys].add(values)``.

    Args:
      keys: int32 ``(M,)`` in ``[0, size)``.
      values: float32 ``(M, F)``.
      size: number of output rows.

    Returns:
      ``(size, F)`` float32 sums, built by a stable sort, a segmented inclusive
      scan (fixed association tree) and one write per distinct key.
    """
    order = jnp.arange(keys.shape[0], dtype=jnp.int32)
    sorted_keys, order = jax.lax.sort((keys, order), num_keys=1, is_stable=True)
    vals = values[order]
    change = sorted_keys[1:] != sorted_keys[:-1]
    start = jnp.concatenate([jnp.ones((1,), bool), change])
    last = jnp.concatenate([change, jnp.ones((1,), bool)])

    def combine(a, b):
        a_start, a_val = a
        b_start, b_val = b
        return a_start | b_start, jnp.where(b_start[..., None], b_val, a_val + b_val)

    _, sums = jax.lax.associative_scan(combine, (start, vals))
    target = jnp.where(last, sorted_keys, size)  # non-final entries are dropped
    out = jnp.zeros((size, values.shape[1]), jnp.float32)
    return out.at[target].set(sums, mode="drop")


def _backward(
    x: jax.Array,
    table: jax.Array,
    g: jax.Array,
    config: HashEncodingConfig,
    opts: PallasOptions,
) -> tuple[jax.Array, jax.Array]:
    num_levels, t, num_features = table.shape
    block, lpp = opts.block_size, opts.levels_per_program
    n = x.shape[0]
    xt = _pad_points(x, block)
    n_pad = xt.shape[1]
    g = jnp.pad(g.astype(jnp.float32), ((0, n_pad - n), (0, 0)))
    grid = (n_pad // block, num_levels // lpp)
    in_specs = [
        *_common_specs(config, block, lpp),
        pl.BlockSpec((block, lpp * num_features), lambda i, lvl: (i, lvl)),
    ]
    args = [
        *_level_constants(config),
        xt,
        table.reshape(num_levels, t * num_features),
        g,
    ]
    per_level = lambda rows: pl.BlockSpec(
        (_lead(lpp), rows, block), lambda i, lvl: (lvl, 0, i)
    )
    dx_shape = jax.ShapeDtypeStruct((num_levels, 3, n_pad), jnp.float32)
    kernel = functools.partial(
        _bwd_kernel,
        num_features=num_features,
        deterministic=opts.deterministic,
        lpp=lpp,
    )
    if opts.deterministic:
        corner_shape = (num_levels, NUM_CORNERS, n_pad)
        dx, rows, weights = pl.pallas_call(
            kernel,
            grid=grid,
            in_specs=in_specs,
            out_specs=[per_level(3), per_level(NUM_CORNERS), per_level(NUM_CORNERS)],
            out_shape=[
                dx_shape,
                jax.ShapeDtypeStruct(corner_shape, jnp.int32),
                jax.ShapeDtypeStruct(corner_shape, jnp.float32),
            ],
            interpret=opts.interpret,
            **_compiler_kwargs(opts),
        )(*args)
        # Contribution of (level l, corner k, point n) to feature f: w * g.
        g_lfn = jnp.transpose(g.reshape(n_pad, num_levels, num_features), (1, 2, 0))
        contrib = weights[:, :, None, :] * g_lfn[:, None, :, :]  # (L, 8, F, N)
        contrib = jnp.transpose(contrib, (0, 1, 3, 2)).reshape(-1, num_features)
        level = jnp.arange(num_levels, dtype=jnp.int32)[:, None, None]
        keys = (rows + level * t).reshape(-1)
        dtable = _sorted_segment_sum(keys, contrib, num_levels * t)
    else:
        t_flat = t * num_features
        zeros = jnp.zeros((num_levels, t_flat), jnp.float32)
        dx, dtable = pl.pallas_call(
            kernel,
            grid=grid,
            in_specs=[
                *in_specs,
                pl.BlockSpec((_lead(lpp), t_flat), lambda i, lvl: (lvl, 0)),
            ],
            out_specs=[
                per_level(3),
                pl.BlockSpec((_lead(lpp), t_flat), lambda i, lvl: (lvl, 0)),
            ],
            out_shape=[dx_shape, jax.ShapeDtypeStruct(zeros.shape, jnp.float32)],
            input_output_aliases={len(args): 1},
            interpret=opts.interpret,
            **_compiler_kwargs(opts),
        )(*args, zeros)
    dx = jnp.sum(dx, axis=0).T[:n]
    return dx, dtable.reshape(num_levels, t, num_features)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _encode(x, table, config, opts):
    return _forward(x, table, config, opts)


def _encode_fwd(x, table, config, opts):
    return _forward(x, table, config, opts), (x, table)


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
) -> jax.Array:
    """Hash encoding with the Pallas kernels (differentiable wrt x and table).

    Args:
      x: ``(N, 3)`` points, nominally in ``[0, 1]``; any N (padded internally).
      table: ``(L, T, F)`` parameters.
      config: the grid; must agree with ``table``'s shape.
      block_size: points per program (a power of 2 on GPU).
      interpret: run in the Pallas interpreter (required on CPU).
      deterministic: sort-based (True) or atomic (False) table gradient.
      num_warps: Triton warps per program.
      levels_per_program: consecutive levels one program handles for its block
        of points (grid ``(N/B, L/P)``); must divide ``L``.

    Returns:
      ``(N, L * F)`` features in ``table.dtype``, level-major.
    """
    _check(x, table, config)
    if config.num_levels * config.hashmap_size >= 2**31:
        raise ValueError("L * T must be < 2^31 (int32 sort keys)")
    if deterministic and config.num_levels * NUM_CORNERS * x.shape[0] >= 2**31:
        raise ValueError("deterministic=True needs L * 8 * N < 2^31 (int32 sort)")
    if levels_per_program < 1 or config.num_levels % levels_per_program:
        raise ValueError(
            f"levels_per_program={levels_per_program} must divide "
            f"num_levels={config.num_levels}"
        )
    opts = PallasOptions(
        block_size, interpret, deterministic, num_warps, levels_per_program
    )
    return _encode(x, table, config, opts)
