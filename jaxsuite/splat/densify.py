"""3DGS adaptive density control on a fixed-capacity buffer.

The Gaussians live in arrays of a fixed capacity ``N`` with an ``active``
mask ``(N,)``, so shapes never change and nothing recompiles; inactive slots
are not rendered (radius and opacity 0, see ``render.render``) and receive
no gradient. As in 3DGS (``densify_and_prune`` of ``gaussian_model.py``):

* **statistics**: every step adds, for each Gaussian visible in the view
  (radius > 0), the norm of its view-space positional gradient to an
  accumulator and 1 to a counter, and keeps its largest screen radius. The
  gradient is taken with respect to the projected 2D means in NDC units
  (pixel gradient times ``(W/2, H/2)``, as diff-gaussian-rasterization
  reports it), so the thresholds (``2e-4``) carry over.
* **clone / split**: a Gaussian whose mean gradient reaches
  ``grad_threshold`` is cloned (an identical copy) if its largest scale is at
  most ``percent_dense * extent``, else split: it and a new copy are each
  moved to a sample of the original Gaussian and their scales divided by 1.6
  (3DGS's ``N = 2`` split, whose original is removed). New Gaussians take
  free slots in index order; when the buffer is full the remaining
  candidates are left as they are. Adam moments of every new or moved
  Gaussian restart at zero (3DGS builds new optimiser entries for them).
* **prune**: Gaussians with opacity below ``prune_opacity`` (a scalar or a
  per-Gaussian threshold such as Deblurring-3DGS's depth-based one) are
  deactivated, and, when ``max_screen_size > 0``, those whose screen radius
  exceeded it or (``world_size > 0``) whose largest world scale exceeds
  ``world_size * extent``.
  (The 3DGS code zeroes the radii before this test, so its screen-size test
  never fires; this one uses the radii of the interval.)
* **opacity reset**: opacities are clamped to at most 0.01 and their Adam
  moments zeroed.

Statistics restart at zero after every densification.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsuite.splat import gaussians as gl

Params = dict[str, Any]
GAUSSIAN_KEYS = ("means", "log_scales", "quats", "opacity_logits", "sh_dc", "sh_rest")


class Stats(NamedTuple):
    """Densification state: ``active`` ``(N,)`` bool and per-Gaussian statistics.

    ``grad_accum`` ``(N,)`` sums view-space gradient norms, ``denom`` ``(N,)``
    counts the views a Gaussian was visible in, ``max_radii`` ``(N,)`` its
    largest screen radius (pixels) since the last densification.
    """

    active: jax.Array
    grad_accum: jax.Array
    denom: jax.Array
    max_radii: jax.Array


def pad_params(params: Params, capacity: int) -> tuple[Params, Stats]:
    """Pads the Gaussian arrays of ``params`` to ``capacity`` inactive slots.

    Args:
      params: training parameters with ``n <= capacity`` Gaussians (other
        entries such as ``mlp`` are kept as they are).
      capacity: the buffer size ``N``.

    Returns:
      ``(params, stats)`` with ``N`` slots, the first ``n`` active.
    """
    n = params["means"].shape[0]
    if n > capacity:
        raise ValueError(f"{n} Gaussians exceed the capacity {capacity}.")
    fill = {
        "means": 0.0,
        "log_scales": -10.0,
        "quats": 0.0,
        "opacity_logits": -10.0,
        "sh_dc": 0.0,
        "sh_rest": 0.0,
    }
    out = dict(params)
    for k, v in fill.items():
        pad = jnp.full((capacity - n,) + params[k].shape[1:], v, params[k].dtype)
        if k == "quats":
            pad = pad.at[:, 0].set(1.0)
        out[k] = jnp.concatenate([params[k], pad])
    active = jnp.arange(capacity) < n
    zeros = jnp.zeros((capacity,), jnp.float32)
    return out, Stats(active, zeros, zeros, zeros)


def accumulate(
    stats: Stats, grad2d: jax.Array, radii: jax.Array, width: int, height: int
) -> Stats:
    """Adds one view's view-space gradients to the statistics.

    Args:
      stats: current :class:`Stats`.
      grad2d: ``(N, 2)`` loss gradient with respect to the pixel means.
      radii: ``(N,)`` screen radii in the view (0: not visible).
      width, height: image size (NDC scaling of the gradient).
    """
    visible = stats.active & (radii > 0)
    scale = jnp.asarray([0.5 * width, 0.5 * height], jnp.float32)
    norm = jnp.linalg.norm(grad2d * scale[None, :], axis=-1)
    return stats._replace(
        grad_accum=stats.grad_accum + jnp.where(visible, norm, 0.0),
        denom=stats.denom + visible.astype(jnp.float32),
        max_radii=jnp.where(
            visible,
            jnp.maximum(stats.max_radii, radii.astype(jnp.float32)),
            stats.max_radii,
        ),
    )


def densify_and_prune(
    params: Params,
    opt_state: Any,
    stats: Stats,
    key: jax.Array,
    *,
    grad_threshold: float,
    prune_opacity: float | jax.Array,
    extent: float,
    percent_dense: float = 0.01,
    max_screen_size: float = 0.0,
    world_size: float = 0.1,
) -> tuple[Params, Any, Stats, dict[str, jax.Array]]:
    """One 3DGS densification: clone, split, prune (see module docstring).

    Args:
      params: training parameters, ``N`` slots.
      opt_state: the ``train.make_optimizer`` state of ``params``.
      stats: :class:`Stats` gathered since the last call.
      key: PRNG key (split samples).
      grad_threshold: mean view-space gradient norm that triggers densification.
      prune_opacity: scalar or ``(N,)`` opacity threshold.
      extent: scene extent (camera radius times 1.1 in 3DGS).
      percent_dense: clone below, split above ``percent_dense * extent``.
      max_screen_size: screen radius (pixels) above which a Gaussian is
        pruned, with the world-size test; 0 turns both off.
      world_size: world-scale pruning bound as a fraction of ``extent`` (0:
        off; 3DGS: 0.1).

    Returns:
      ``(params, opt_state, stats, counts)`` with ``counts`` the numbers of
      ``cloned``, ``split`` and ``pruned`` Gaussians and ``active`` after.
    """
    from jaxsuite.splat import train as splat_train  # avoids an import cycle

    n = stats.active.shape[0]
    avg = stats.grad_accum / jnp.maximum(stats.denom, 1.0)
    cand = stats.active & (stats.denom > 0) & (avg >= grad_threshold)
    max_scale = jnp.max(jnp.exp(params["log_scales"]), axis=-1)
    big = max_scale > percent_dense * extent
    rank = jnp.cumsum(cand) - 1
    free = jnp.nonzero(~stats.active, size=n, fill_value=n)[0]
    num_free = jnp.sum(~stats.active)
    cand = cand & (rank < num_free)
    target = jnp.where(cand, free[jnp.clip(rank, 0, n - 1)], n)
    # src[slot]: the Gaussian each slot copies (itself unless it is new).
    src = jnp.arange(n).at[target].set(jnp.arange(n), mode="drop")
    new = jnp.zeros((n,), bool).at[target].set(True, mode="drop")
    split_src = cand & big
    moved = split_src | (new & split_src[src])  # both halves of a split
    out = {k: (v[src] if k in GAUSSIAN_KEYS else v) for k, v in params.items()}
    scales = jnp.exp(out["log_scales"])
    rot = gl.quat_to_matrix(gl.normalize_quats(out["quats"]))
    offset = jnp.einsum(
        "nij,nj->ni", rot, scales * jax.random.normal(key, scales.shape)
    )
    out["means"] = jnp.where(moved[:, None], out["means"] + offset, out["means"])
    out["log_scales"] = jnp.where(
        moved[:, None], out["log_scales"] - np.log(1.6), out["log_scales"]
    )
    active = stats.active | new
    opacity = jax.nn.sigmoid(out["opacity_logits"])
    prune = opacity < prune_opacity
    if max_screen_size > 0:
        radii = jnp.where(new, 0.0, stats.max_radii)
        prune = prune | (radii > max_screen_size)
        if world_size > 0:
            world = jnp.max(jnp.exp(out["log_scales"]), axis=-1)
            prune = prune | (world > world_size * extent)
    prune = active & prune
    active = active & ~prune
    opt_state = splat_train.reset_moments(opt_state, new | moved)
    zeros = jnp.zeros((n,), jnp.float32)
    counts = {
        "cloned": jnp.sum(cand & ~big),
        "split": jnp.sum(split_src),
        "pruned": jnp.sum(prune),
        "active": jnp.sum(active),
    }
    return out, opt_state, Stats(active, zeros, zeros, zeros), counts


def reset_opacity(
    params: Params, opt_state: Any, value: float = 0.01
) -> tuple[Params, Any]:
    """3DGS opacity reset: opacities clamped to ``<= value``, their moments zeroed."""
    logit = float(np.log(value / (1.0 - value)))
    out = dict(params, opacity_logits=jnp.minimum(params["opacity_logits"], logit))
    inner = dict(opt_state.inner_states)
    inner["opacity_logits"] = jax.tree.map(
        lambda x: jnp.zeros_like(x) if x.ndim >= 1 else x, inner["opacity_logits"]
    )
    return out, opt_state._replace(inner_states=inner)


def compact(params: Params, active: Any) -> Params:
    """The active Gaussians of ``params`` only (host-side; shapes change)."""
    mask = np.asarray(jax.device_get(active))
    return {
        k: (jnp.asarray(np.asarray(v)[mask]) if k in GAUSSIAN_KEYS else v)
        for k, v in params.items()
    }
