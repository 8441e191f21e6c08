"""SparseAllGather over fixed slots, its transpose, and numpy references.

Inside ``jax.shard_map`` each device holds a layer's owned expert chunks in
``(K, P)`` local slots (read from its pool over all layers).
:func:`sparse_all_gather` fills ``m`` materialisation slots per device from
the owners, following an int32 plan ``send_slot (D, m)`` held by each
source: ``send_slot[dst, k]`` is the local slot this device sends into slot
``k`` of ``dst`` (or -1). It is one tiled ``all_to_all`` of a ``(D, m, P)``
buffer that is non-zero only where this device owns the chunk, followed by a
sum over sources; the plan is data, so new plans do not recompile.
Reverse-mode autodiff of it scatters each replica's gradient back into its
owner's slot and sums them: that is SparseReduceScatter.

On GPU/TPU a ``ragged_all_to_all`` over the non-empty rows would move only
the planned bytes; XLA:CPU does not implement it, so the fixed-slot form is
used here (it moves ``(D - 1) m P`` floats per device regardless of the plan).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def sparse_all_gather(pool: jax.Array, send_slot: jax.Array, axis: str) -> jax.Array:
    """Materialises the planned replicas on every device (call in shard_map).

    Args:
      pool: (K, P) this device's owned chunks of the layer.
      send_slot: (D, m) int32, local slot to send to (dst, k) or -1.
      axis: mesh axis over the D devices.

    Returns:
      (m, P) this device's materialisation slots (zero where empty).
    """
    valid = send_slot >= 0
    buf = jnp.where(valid[..., None], pool[jnp.maximum(send_slot, 0)], 0.0)
    recv = jax.lax.all_to_all(buf, axis, 0, 0, tiled=True)  # (D_src, m, P)
    return jnp.sum(recv, axis=0)


def all_gather_pools(pool: jax.Array, axis: str) -> jax.Array:
    """FSDP gather: every device gets every device's ``(K, P) -> (D K, P)``.

    Its transpose is ``psum_scatter`` (the FSDP gradient reduce-scatter).
    """
    return jax.lax.all_gather(pool, axis, axis=0, tiled=True)


def sparse_all_gather_reference(
    pools: np.ndarray, pool_expert: np.ndarray, mat: np.ndarray
) -> np.ndarray:
    """Numpy SparseAllGather: replica slot (d, k) gets expert ``mat[d, k]``.

    Args:
      pools: (D, S, P) owned chunks.
      pool_expert: (D, S) expert ids (-1 empty).
      mat: (D, m) requested experts (-1 empty).

    Returns:
      (D, m, P).
    """
    chunk = {int(e): pools[d, s] for (d, s), e in np.ndenumerate(pool_expert) if e >= 0}
    out = np.zeros((*mat.shape, pools.shape[-1]), pools.dtype)
    for (d, k), e in np.ndenumerate(mat):
        if e >= 0:
            out[d, k] = chunk[int(e)]
    return out


def sparse_reduce_scatter_reference(
    grads: np.ndarray, pool_expert: np.ndarray, mat: np.ndarray
) -> np.ndarray:
    """Numpy SparseReduceScatter: replica gradients summed onto the owners.

    Args:
      grads: (D, m, P) gradients of the replica slots.
      pool_expert: (D, S) expert ids (-1 empty).
      mat: (D, m) replicated experts (-1 empty).

    Returns:
      (D, S, P) gradients of the owned chunks.
    """
    where = {int(e): (d, s) for (d, s), e in np.ndenumerate(pool_expert) if e >= 0}
    out = np.zeros((*pool_expert.shape, grads.shape[-1]), grads.dtype)
    for (d, k), e in np.ndenumerate(mat):
        if e >= 0:
            out[where[int(e)]] += grads[d, k]
    return out
