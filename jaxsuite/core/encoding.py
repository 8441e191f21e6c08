"""Frequency (positional) encoding of coordinates, shared by the NeRF fields and
the Deblurring-3DGS blur MLP.

``gamma(x) = [x, sin(2^k x), cos(2^k x)]`` for ``k = 0 .. K-1``, per coordinate
and without the factor ``pi`` (as in nerf-pytorch's ``Embedder`` and
jaxnerf's ``posenc``). The two codebases order the columns differently, and a
network's first layer depends on that order, so both are kept:

* ``"interleaved"`` (nerf-pytorch, the Deblurring-3DGS code):
  ``[x, sin(2^0 x), cos(2^0 x), sin(2^1 x), cos(2^1 x), ...]``;
* ``"grouped"`` (jaxnerf / mip-NeRF): ``[x, sin(2^0 x), ..., sin(2^(K-1) x),
  cos(2^0 x), ..., cos(2^(K-1) x)]``.

Each ``sin``/``cos`` block holds the ``D`` coordinates in order.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

Layout = Literal["interleaved", "grouped"]


def positional_encoding(
    x: jax.Array, num_freqs: int, *, layout: Layout = "interleaved"
) -> jax.Array:
    """Frequency encoding ``[x, sin(2^k x), cos(2^k x)]_k`` of the last axis.

    Args:
      x: ``(..., D)`` coordinates.
      num_freqs: ``K``, the number of octaves (``K = 0`` returns ``x``).
      layout: column order, ``"interleaved"`` or ``"grouped"`` (module
        docstring).

    Returns:
      ``(..., D (1 + 2 K))`` in ``x.dtype``.
    """
    if layout not in ("interleaved", "grouped"):
        raise ValueError(f"unknown layout {layout!r}")
    # Powers of two are exact in every float dtype: no rounding, no promotion.
    scales = jnp.asarray(2.0 ** np.arange(num_freqs), x.dtype)
    scales = scales.reshape((1,) * (x.ndim - 1) + (num_freqs, 1))
    xs = x[..., None, :] * scales  # (..., K, D)
    axis = -2 if layout == "interleaved" else -3
    feats = jnp.stack([jnp.sin(xs), jnp.cos(xs)], axis=axis)
    return jnp.concatenate([x, feats.reshape(*x.shape[:-1], -1)], axis=-1)
