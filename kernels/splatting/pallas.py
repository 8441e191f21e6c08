"""Pallas tile rasteriser: one program per 16x16 tile, custom VJP, no atomics.

Forward. The grid is ``(ny, nx)``; program ``(ty, tx)`` owns one tile and walks
its sorted intersection range ``[start, end)`` front to back with a
``while_loop`` that ends when every pixel of the tile has stopped (``T (1 -
alpha) < 1e-4``) or the range is exhausted (the original's
``__syncthreads_count(done) == 256`` exit). Intersections travel as a
``(F, capacity)`` workspace gathered by XLA in sorted order (rows: mean x,
mean y, conic a, b, c, opacity, colour channels), read one scalar column at a
time; the 16x16 pixel values are vectors. Per pixel the kernel writes its
colour (no background), final transmittance and ``last``, one past the index of
the last Gaussian it blended.

Backward (custom VJP). The same grid walks each tile back to front from the
largest ``last`` of the tile, recovering ``T_i = T_{i+1} / (1 - alpha_i)`` and
the colour behind each Gaussian, like ``renderCUDA``'s backward. Instead of
``atomicAdd`` it sums each intersection's gradient over the tile's pixels and
writes it once into its own slot of a ``(G, capacity)`` array (each slot
belongs to exactly one tile); XLA then adds the slots of each Gaussian with a
``segment_sum``. The result is deterministic. Gradients are exact for the
forward above: ``d min(0.99, o G) = 0`` where the cap is active (the CUDA
backward ignores the cap).

On GPU the kernel lowers with Triton (``compiler_params``); on CPU only
``interpret=True`` runs.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

try:
    from jax.experimental.pallas import triton as pltriton
except ImportError:  # pragma: no cover
    pltriton = None

TILE = 16
ALPHA_MAX = 0.99
ALPHA_MIN = 1.0 / 255.0
T_MIN = 1e-4
_ROWS = 6  # mean x, mean y, conic a, b, c, opacity; colours follow.


def _compiler_kwargs(interpret: bool) -> dict:
    if interpret or pltriton is None:
        return {}
    return {"compiler_params": pltriton.CompilerParams(num_warps=4, num_stages=1)}


def _pixel_centres() -> tuple[jax.Array, jax.Array]:
    ty, tx = pl.program_id(0), pl.program_id(1)
    iy = jax.lax.broadcasted_iota(jnp.int32, (TILE, TILE), 0)
    ix = jax.lax.broadcasted_iota(jnp.int32, (TILE, TILE), 1)
    px = (tx * TILE + ix).astype(jnp.float32) + 0.5
    py = (ty * TILE + iy).astype(jnp.float32) + 0.5
    return px, py


def _splat(ws_ref, i, px, py):
    """Power, alpha and geometry of intersection ``i`` at the tile's pixels."""
    mx, my = ws_ref[0, i], ws_ref[1, i]
    a, b, c, o = ws_ref[2, i], ws_ref[3, i], ws_ref[4, i], ws_ref[5, i]
    dx, dy = px - mx, py - my
    power = -0.5 * (a * dx * dx + c * dy * dy) - b * dx * dy
    g = jnp.exp(jnp.minimum(power, 0.0))
    alpha = jnp.minimum(ALPHA_MAX, o * g)
    use = (power <= 0.0) & (alpha >= ALPHA_MIN)
    return dx, dy, a, b, c, o, g, alpha, use


def _forward_kernel(start_ref, end_ref, ws_ref, *out_refs, num_channels):
    color_refs = out_refs[:num_channels]
    t_ref, last_ref = out_refs[num_channels:]
    ty, tx = pl.program_id(0), pl.program_id(1)
    start, end = start_ref[ty, tx], end_ref[ty, tx]
    px, py = _pixel_centres()
    zeros = jnp.zeros((TILE, TILE), jnp.float32)

    def cond(carry):
        i, n_active = carry[0], carry[1]
        return (i < end) & (n_active > 0)

    def body(carry):
        i, _, t, done, last, cols = carry
        *_, alpha, use = _splat(ws_ref, i, px, py)
        use = use & (done == 0)
        test_t = t * (1.0 - alpha)
        stop = use & (test_t < T_MIN)
        blend = use & jnp.logical_not(stop)
        w = jnp.where(blend, alpha * t, 0.0)
        cols = tuple(col + w * ws_ref[_ROWS + k, i] for k, col in enumerate(cols))
        t = jnp.where(blend, test_t, t)
        last = jnp.where(blend, i + 1, last)
        done = jnp.where(stop, 1, done)
        n_active = jnp.sum(1 - done)
        return i + 1, n_active, t, done, last, cols

    init = (
        start,
        jnp.int32(TILE * TILE),
        zeros + 1.0,
        jnp.zeros((TILE, TILE), jnp.int32),
        jnp.zeros((TILE, TILE), jnp.int32) + start,
        (zeros,) * num_channels,
    )
    _, _, t, _, last, cols = jax.lax.while_loop(cond, body, init)
    for ref, col in zip(color_refs, cols):
        ref[...] = col
    t_ref[...] = t
    last_ref[...] = last


def _backward_kernel(
    start_ref, t_final_ref, last_ref, dt_ref, ws_ref, *refs, num_channels
):
    dcol_refs = refs[:num_channels]
    grad_ref = refs[-1]  # aliased to a zero-filled input, shape (G, capacity)
    ty, tx = pl.program_id(0), pl.program_id(1)
    start = start_ref[ty, tx]
    px, py = _pixel_centres()
    t_final = t_final_ref[...]
    last = last_ref[...]
    dt_final = dt_ref[...]
    dcols = tuple(ref[...] for ref in dcol_refs)
    top = jnp.max(last)
    zeros = jnp.zeros((TILE, TILE), jnp.float32)

    def body(k, carry):
        t, accs = carry
        i = top - 1 - k
        dx, dy, a, b, c, o, g, alpha, use = _splat(ws_ref, i, px, py)
        blend = use & (i < last)
        one_minus = 1.0 - alpha
        t = jnp.where(blend, t / one_minus, t)
        cols = [ws_ref[_ROWS + ch, i] for ch in range(num_channels)]
        d_alpha = -dt_final * t_final / one_minus
        new_accs = []
        for ch in range(num_channels):
            d_alpha = d_alpha + t * (cols[ch] - accs[ch]) * dcols[ch]
            grad_ref[_ROWS + ch, i] = jnp.sum(
                jnp.where(blend, alpha * t * dcols[ch], 0)
            )
            new_accs.append(
                jnp.where(blend, alpha * cols[ch] + one_minus * accs[ch], accs[ch])
            )
        live = blend & (o * g < ALPHA_MAX)
        d_power = jnp.where(live, d_alpha * alpha, 0.0)
        grad_ref[0, i] = jnp.sum(d_power * (a * dx + b * dy))
        grad_ref[1, i] = jnp.sum(d_power * (b * dx + c * dy))
        grad_ref[2, i] = jnp.sum(d_power * (-0.5 * dx * dx))
        grad_ref[3, i] = jnp.sum(d_power * (-dx * dy))
        grad_ref[4, i] = jnp.sum(d_power * (-0.5 * dy * dy))
        grad_ref[5, i] = jnp.sum(jnp.where(live, d_alpha * g, 0.0))
        return t, tuple(new_accs)

    jax.lax.fori_loop(0, top - start, body, (t_final, (zeros,) * num_channels))


def _tile_spec():
    return pl.BlockSpec((TILE, TILE), lambda ty, tx: (ty, tx))


def _whole_spec(shape):
    return pl.BlockSpec(shape, lambda ty, tx: (0,) * len(shape))


def _forward(workspace, starts, ends, width, height, interpret):
    ny, nx = starts.shape
    num_channels = workspace.shape[0] - _ROWS
    hp, wp = ny * TILE, nx * TILE
    out_shape = [jax.ShapeDtypeStruct((hp, wp), jnp.float32)] * (num_channels + 1)
    out_shape.append(jax.ShapeDtypeStruct((hp, wp), jnp.int32))
    outs = pl.pallas_call(
        functools.partial(_forward_kernel, num_channels=num_channels),
        grid=(ny, nx),
        in_specs=[
            _whole_spec(starts.shape),
            _whole_spec(ends.shape),
            _whole_spec(workspace.shape),
        ],
        out_specs=[_tile_spec()] * (num_channels + 2),
        out_shape=out_shape,
        interpret=interpret,
        **_compiler_kwargs(interpret),
    )(starts, ends, workspace)
    image = jnp.stack(outs[:num_channels], axis=-1)[:height, :width]
    return image, outs[num_channels], outs[num_channels + 1]


def _backward(workspace, starts, t_full, last, d_image, d_t, interpret):
    ny, nx = starts.shape
    num_channels = workspace.shape[0] - _ROWS
    hp, wp = ny * TILE, nx * TILE
    pad = ((0, hp - d_image.shape[0]), (0, wp - d_image.shape[1]))
    dcols = [jnp.pad(d_image[..., ch], pad) for ch in range(num_channels)]
    d_t = jnp.pad(d_t, pad)
    grads = jnp.zeros_like(workspace)
    n_in = 5 + num_channels
    return pl.pallas_call(
        functools.partial(_backward_kernel, num_channels=num_channels),
        grid=(ny, nx),
        in_specs=[
            _whole_spec(starts.shape),
            _tile_spec(),
            _tile_spec(),
            _tile_spec(),
            _whole_spec(workspace.shape),
        ]
        + [_tile_spec()] * num_channels
        + [_whole_spec(workspace.shape)],
        out_specs=_whole_spec(workspace.shape),
        out_shape=jax.ShapeDtypeStruct(workspace.shape, jnp.float32),
        input_output_aliases={n_in: 0},
        interpret=interpret,
        **_compiler_kwargs(interpret),
    )(starts, t_full, last, d_t, workspace, *dcols, grads)


def _gather(workspace_src, gaussian_ids):
    n = workspace_src.shape[0]
    return workspace_src[jnp.minimum(gaussian_ids, n - 1)].T


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def _rasterize(workspace_src, gaussian_ids, starts, ends, width, height, interpret):
    ws = _gather(workspace_src, gaussian_ids)
    image, t_full, _ = _forward(ws, starts, ends, width, height, interpret)
    return image, t_full[:height, :width]


def _fwd(workspace_src, gaussian_ids, starts, ends, width, height, interpret):
    ws = _gather(workspace_src, gaussian_ids)
    image, t_full, last = _forward(ws, starts, ends, width, height, interpret)
    res = (ws, gaussian_ids, starts, t_full, last, workspace_src[:, :0])
    return (image, t_full[:height, :width]), res


def _bwd(width, height, interpret, res, cotangents):
    del width, height
    ws, gaussian_ids, starts, t_full, last, empty = res
    n = empty.shape[0]
    d_image, d_t = cotangents
    grads = _backward(ws, starts, t_full, last, d_image, d_t, interpret)
    per_gaussian = jax.ops.segment_sum(grads.T, gaussian_ids, num_segments=n + 1)
    return per_gaussian[:n], None, None, None


_rasterize.defvjp(_fwd, _bwd)


def rasterize(
    means2d: jax.Array,
    conics: jax.Array,
    colors: jax.Array,
    opacities: jax.Array,
    gaussian_ids: jax.Array,
    tile_starts: jax.Array,
    tile_ends: jax.Array,
    width: int,
    height: int,
    *,
    interpret: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """Tile rasterisation of a binned frame with the Pallas kernel.

    Args:
      means2d: ``(N, 2)``; conics: ``(N, 3)``; colors: ``(N, C)``;
        opacities: ``(N,)`` (all differentiable).
      gaussian_ids: ``(capacity,)`` sorted intersections (``binning``).
      tile_starts: ``(ny, nx)``; tile_ends: ``(ny, nx)``.
      width: image width; height: image height.
      interpret: run in the Pallas interpreter (required on CPU).

    Returns:
      ``(image, transmittance)``, ``(H, W, C)`` and ``(H, W)``.
    """
    src = jnp.concatenate(
        [means2d, conics, opacities[:, None], colors], axis=-1
    ).astype(jnp.float32)
    return _rasterize(
        src, gaussian_ids, tile_starts, tile_ends, width, height, interpret
    )
