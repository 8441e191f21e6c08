"""The Pallas kernels of the hash encoding and their launches.

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

The backward kernel runs over a run of consecutive levels ``[start, stop)``
(all levels unless a split table gradient asks for fewer) in one of two modes:
corner mode writes the ``d/dx`` partials and the rows and weights of the 8
corners (``corner_kernel``); atomic mode writes the ``d/dx`` partials and adds
``w * g`` into the table gradient with ``jax.ref.addupdate``, which the Triton
lowering emits as an atomic add (``atomic_kernel``).

GPU lowering is Triton (``compiler_params=pltriton.CompilerParams(...)``):
Mosaic GPU has no integer-array gather from global memory. On CPU the kernels
run only with ``interpret=True``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl

from .reference import NUM_CORNERS, PRIMES, HashEncodingConfig

try:  # Triton compiler params; absent from some CPU-only builds.
    from jax.experimental.pallas import triton as pltriton
except ImportError:  # pragma: no cover
    pltriton = None

Backward = Literal["sort", "atomic", "split_sort", "split_atomic"]
BACKWARDS: tuple[str, ...] = ("sort", "atomic", "split_sort", "split_atomic")

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
        atomic adds in the kernel (False); used when ``backward`` is None.
      num_warps: Triton warps per program.
      levels_per_program: consecutive levels one program handles for its
        block of points, ``P`` (must divide ``L``; a power of 2 on GPU).
      backward: table-gradient method (one of ``BACKWARDS``) or None.
    """

    block_size: int = 256
    interpret: bool = False
    deterministic: bool = True
    num_warps: int = 4
    levels_per_program: int = 1
    backward: Backward | None = None

    @property
    def method(self) -> Backward:
        """The table-gradient method: ``backward``, else from ``deterministic``."""
        if self.backward is not None:
            return self.backward
        return "sort" if self.deterministic else "atomic"


def _level_constants(
    config: HashEncodingConfig, start: int = 0, stop: int | None = None
) -> tuple[jax.Array, ...]:
    """Scale (f32), resolution, size and dense flag (int32) of levels [start, stop).

    Each is an array of shape ``(stop - start,)``.
    """
    lp = config.levels()
    run = slice(start, stop)
    return (
        jnp.asarray(lp.scale[run], jnp.float32),
        jnp.asarray(lp.resolution[run], jnp.int32),
        jnp.asarray(lp.size[run], jnp.int32),
        jnp.asarray(lp.dense[run], jnp.int32),
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


def _bwd_kernel(*refs, num_features: int, atomic: bool, lpp: int):
    """refs: 4 level constants (P,), x (3, B), table (P, T*F), g (B, P*F), outputs.

    Outputs: ``dx`` (P, 3, B) and either rows (P, 8, B) + weights (P, 8, B)
    (corner mode) or the aliased table gradient (P, T*F) (atomic). With
    ``lpp == 1`` the level axis ``P`` is squeezed away.
    """
    if atomic:
        *level_refs, x_ref, t_ref, g_ref, _, dx_ref, dt_ref = refs
    else:
        *level_refs, x_ref, t_ref, g_ref, dx_ref, rows_ref, w_ref = refs
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
            if atomic:
                for f in range(num_features):
                    jax.ref.addupdate(dt_ref, _at(j, lpp, offset + f), w * g[f])
            else:
                rows_ref[_at(j, lpp, (k, slice(None)))] = rows[k]
                w_ref[_at(j, lpp, (k, slice(None)))] = w
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


def _shifted(first: int):
    """Index map of a level block ``first`` blocks into the full level axis."""
    if first == 0:
        return lambda lvl: lvl
    return lambda lvl: lvl + first


def _common_specs(
    config: HashEncodingConfig, block: int, lpp: int, first: int = 0
) -> list[pl.BlockSpec]:
    """Specs of the 4 level constants, x (3, N) and the table (L, T*F).

    The level constants are the run's own (sliced on the host); the table is
    the full one, its level blocks shifted by ``first``.
    """
    t_flat = config.hashmap_size * config.features_per_level
    level = pl.BlockSpec((_lead(lpp),), lambda i, lvl: (lvl,))
    shift = _shifted(first)
    return [
        level,
        level,
        level,
        level,
        pl.BlockSpec((3, block), lambda i, lvl: (0, i)),
        pl.BlockSpec((_lead(lpp), t_flat), lambda i, lvl: (shift(lvl), 0)),
    ]


def pad_points(x: jax.Array, block: int) -> jax.Array:
    """``(N, 3)`` -> ``(3, N_p)`` float32, zero-padded to a multiple of block."""
    n = x.shape[0]
    n_pad = -(-n // block) * block
    return jnp.pad(x.astype(jnp.float32), ((0, n_pad - n), (0, 0))).T


def pad_cotangent(g: jax.Array, block: int) -> jax.Array:
    """``(N, L*F)`` -> ``(N_p, L*F)`` float32, zero-padded like ``pad_points``."""
    n = g.shape[0]
    n_pad = -(-n // block) * block
    return jnp.pad(g.astype(jnp.float32), ((0, n_pad - n), (0, 0)))


def forward_kernel(
    x: jax.Array, table: jax.Array, config: HashEncodingConfig, opts: PallasOptions
) -> jax.Array:
    """The forward kernel (no VJP): ``(N, 3)`` points -> ``(N, L*F)`` features."""
    num_levels, t, num_features = table.shape
    block, lpp = opts.block_size, opts.levels_per_program
    xt = pad_points(x, block)
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


def _backward_call(xt, table, g, config, opts, levels, atomic: bool):
    """The backward kernel over levels ``[start, stop)``; see ``corner_kernel``."""
    num_levels, t, num_features = table.shape
    start, stop = (0, num_levels) if levels is None else levels
    count, block, n_pad = stop - start, opts.block_size, xt.shape[1]
    lpp = math.gcd(opts.levels_per_program, start, count)
    shift = _shifted(start // lpp)
    args = [
        *_level_constants(config, start, stop),
        xt,
        table.reshape(num_levels, t * num_features),
        g,
    ]
    in_specs = [
        *_common_specs(config, block, lpp, start // lpp),
        pl.BlockSpec((block, lpp * num_features), lambda i, lvl: (i, shift(lvl))),
    ]
    per_level = lambda rows: pl.BlockSpec(
        (_lead(lpp), rows, block), lambda i, lvl: (lvl, 0, i)
    )
    out_specs = [per_level(3)]
    out_shape = [jax.ShapeDtypeStruct((count, 3, n_pad), jnp.float32)]
    aliases = {}
    if atomic:
        table_block = pl.BlockSpec(
            (_lead(lpp), t * num_features), lambda i, lvl: (lvl, 0)
        )
        args.append(jnp.zeros((count, t * num_features), jnp.float32))
        in_specs.append(table_block)
        out_specs.append(table_block)
        out_shape.append(jax.ShapeDtypeStruct((count, t * num_features), jnp.float32))
        aliases = {len(args) - 1: 1}
    else:
        corner_shape = jax.ShapeDtypeStruct((count, NUM_CORNERS, n_pad), jnp.int32)
        out_specs += [per_level(NUM_CORNERS), per_level(NUM_CORNERS)]
        out_shape += [corner_shape, corner_shape.update(dtype=jnp.float32)]
    kernel = functools.partial(
        _bwd_kernel, num_features=num_features, atomic=atomic, lpp=lpp
    )
    return pl.pallas_call(
        kernel,
        grid=(n_pad // block, count // lpp),
        in_specs=in_specs,
        out_specs=out_specs,
        out_shape=out_shape,
        input_output_aliases=aliases,
        interpret=opts.interpret,
        **_compiler_kwargs(opts),
    )(*args)


def corner_kernel(
    xt: jax.Array,
    table: jax.Array,
    g: jax.Array,
    config: HashEncodingConfig,
    opts: PallasOptions,
    levels: tuple[int, int] | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Backward kernel, corner mode: dx partials, corner rows and weights.

    Args:
      xt: ``(3, N_p)`` points from ``pad_points``.
      table: ``(L, T, F)`` parameters.
      g: ``(N_p, L*F)`` float32 output cotangent from ``pad_cotangent``.
      config: the grid.
      opts: launch options (block size, warps, levels per program; a run
        whose start or length ``P`` does not divide uses the largest common
        divisor).
      levels: ``(start, stop)``, the run of levels to process; all if None.

    Returns:
      ``(dx, rows, weights)``: float32 ``(L_r, 3, N_p)`` per-level partials of
      ``d/dx`` (sum over levels, then transpose), int32 ``(L_r, 8, N_p)``
      corner rows and float32 ``(L_r, 8, N_p)`` trilinear weights, ``L_r =
      stop - start``.
    """
    return tuple(_backward_call(xt, table, g, config, opts, levels, atomic=False))


def atomic_kernel(
    xt: jax.Array,
    table: jax.Array,
    g: jax.Array,
    config: HashEncodingConfig,
    opts: PallasOptions,
    levels: tuple[int, int] | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Backward kernel, atomic mode: dx partials and the table gradient.

    Arguments as ``corner_kernel``. Returns ``(dx, dtable)``: float32
    ``(L_r, 3, N_p)`` partials and float32 ``(L_r, T*F)`` table gradient,
    accumulated with atomic adds (last bits vary between GPU runs).
    """
    return tuple(_backward_call(xt, table, g, config, opts, levels, atomic=True))
