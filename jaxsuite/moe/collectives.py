"""SparseAllGather with bucketed static shapes, its transpose, numpy references.

A layer's SparseAllGather fills ``m`` materialisation slots per device with
replicas of experts owned elsewhere (the plan ``mat (D, m)``). Only the
chunks some non-owner needs travel, packed into a fixed, *bucketed*
capacity, so the compiled program moves about the plan's bytes and a new
plan recompiles only when it needs a new bucket (plans stay int32 data).
Two packings, chosen per step by the host (:func:`gather_arrays`), whichever
moves fewer bytes:

* ``direct``: source ``o`` packs, for each destination, the chunks that
  destination needs from it into ``c`` slots (``c`` = bucketed largest
  count over source/destination pairs); one tiled ``all_to_all`` of the
  ``(D, c, P)`` buffer. Wire bytes per device ``(D - 1) c P``. Best when
  replicas are spread (each chunk goes to a few devices).
* ``relay``: every owner publishes the distinct chunks anyone needs (``c1``
  = bucketed largest count per owner); an ``all_to_all`` gives device ``i``
  piece ``i`` (``P / D`` floats) of each published chunk; the ``c2``
  distinct chunks (bucketed) are compacted and one ``all_gather`` of the
  pieces hands every device every published chunk. Wire bytes per device
  ``(D - 1) / D (c1 + c2) P``: the per-chunk Broadcasts of the paper with
  the owner's load spread over all devices. Best when replicas go to many
  devices (Algorithm 1's ``t <= m`` branch), and below an FSDP all-gather's
  ``(D - 1) / D E P`` whenever ``c1 + c2 < E``.

Each destination then picks its ``m`` slots by index from its own ``K``
local chunks (owner-local replicas move nothing) followed by what it
received. Reverse-mode autodiff turns the ``all_to_all`` into its inverse,
the ``all_gather`` into a reduce-scatter and the picks into scatter-adds:
replica gradients summed onto their owners, i.e. SparseReduceScatter.

On GPU/TPU a ``ragged_all_to_all`` could drop the bucket padding; XLA:CPU
does not implement it.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class GatherArrays(NamedTuple):
    """A step's SparseAllGather plan over ``L`` layers (int32, -1 = empty).

    The packing and capacities are read from the shapes:
    ``compact.shape[-1] > 0`` means ``relay``, else ``pack.shape[-1] > 0``
    means ``direct``, else nothing moves.

    Attributes:
      pack: direct ``(L, D_src, D_dst * c)`` local slot sent to (dst, j);
        relay ``(L, D_src, c1)`` local slots published by src.
      compact: relay ``(L, c2)`` index into the ``D_src * c1`` published
        chunks; direct ``(L, 0)``.
      pick: ``(L, D_dst, m)`` index into ``[K local slots, received]``
        (received: direct ``D_src * c`` chunks, relay ``c2``).
    """

    pack: np.ndarray
    compact: np.ndarray
    pick: np.ndarray


_GRID = (1, 2, 3, 4, 5, 6, 7)


def bucket(n: int, most: int) -> int:
    """Smallest bucket ``>= n`` (1..7, then 4 sizes per octave), at most ``most``.

    Padding is at most 25% above 4; ``most`` caps it where no plan can need
    more (e.g. ``E`` distinct chunks).
    """
    if n <= 0:
        return 0
    size = next((b for b in _GRID if b >= n), None)
    scale = 4
    while size is None:
        size = next((k * scale for k in (2, 2.5, 3, 3.5) if k * scale >= n), None)
        scale *= 2
    return int(min(max(size, n), max(most, n)))


def _owners(pool_expert: np.ndarray, experts: int) -> tuple[np.ndarray, np.ndarray]:
    dev, slot = -np.ones(experts, np.int64), -np.ones(experts, np.int64)
    for d, s in zip(*np.nonzero(pool_expert >= 0)):
        dev[pool_expert[d, s]], slot[pool_expert[d, s]] = d, s
    return dev, slot


def gather_needs(pool_expert: np.ndarray, mat: np.ndarray, experts: int) -> dict:
    """What one layer's plan must move.

    Args:
      pool_expert: (D, K) the layer's experts in each device's local slots.
      mat: (D, m) requested replicas (-1 empty).

    Returns:
      ``pairs (D_src, D_dst)`` chunks each source sends each destination,
      ``published (D,)`` distinct chunks each owner must send,
      ``distinct`` (|C-hat|, chunks that cross devices) and ``replicas``
      (crossing (chunk, destination) pairs).
    """
    devices = pool_expert.shape[0]
    owner, _ = _owners(pool_expert, experts)
    pairs = np.zeros((devices, devices), np.int64)
    crossing: set[int] = set()
    for dst, k in zip(*np.nonzero(mat >= 0)):
        e = int(mat[dst, k])
        if owner[e] != dst:
            pairs[owner[e], dst] += 1
            crossing.add(e)
    published = np.bincount(owner[list(crossing)], minlength=devices)
    return {
        "pairs": pairs,
        "published": published.astype(np.int64),
        "distinct": len(crossing),
        "replicas": int(pairs.sum()),
    }


def wire_chunks(mode: str, c: int, c2: int, devices: int) -> float:
    """Chunks one SparseAllGather puts on the wire per device (padding included)."""
    if mode == "direct":
        return (devices - 1) * c
    if mode == "relay":
        return (devices - 1) / devices * (c + c2)
    return 0.0


def choose_bucket(
    needs: list[dict],
    devices: int,
    most: int,
    experts: int,
    current=None,
    mode: str | None = None,
) -> tuple[str, int, int]:
    """``(mode, c, c2)`` for a step whose layers need ``needs``.

    The cheaper packing at its smallest bucket (or the packing ``mode``, if
    given), unless ``current`` (the bucket of the program already compiled)
    still fits and moves at most twice the bytes of the best: then it is
    kept and nothing recompiles (a compile costs far more than the padding
    on CPU). ``most`` caps per-owner counts (K).
    """
    if not any(n["replicas"] for n in needs):
        return ("none", 0, 0)
    c_dir = bucket(max(int(n["pairs"].max()) for n in needs), most)
    c1 = bucket(max(int(n["published"].max()) for n in needs), most)
    c2 = bucket(max(n["distinct"] for n in needs), experts)
    options = [("direct", c_dir, 0), ("relay", c1, c2)]
    best = min(options, key=lambda o: (wire_chunks(*o, devices), o[0] != "direct"))
    if mode is not None:
        best = dict((o[0], o) for o in options)[mode]
    if current is not None and current[0] != "none":
        mode, c, cc = current
        fits = (mode == "direct" and c >= c_dir) or (
            mode == "relay" and c >= c1 and cc >= c2
        )
        if fits and wire_chunks(*current, devices) <= 2 * wire_chunks(*best, devices):
            return tuple(current)
    return best


def gather_arrays(
    layer_pool: np.ndarray,
    mat: np.ndarray,
    experts: int,
    current=None,
    mode: str | None = None,
) -> tuple[GatherArrays, tuple[str, int, int]]:
    """SparseAllGather arrays of a whole step and the bucket they use.

    Args:
      layer_pool: (L, D, K) experts in each layer's local slots (-1 empty).
      mat: (L, D, m) requested replicas (-1 empty).
      current: a bucket ``(mode, c, c2)`` to keep if it fits (see
        :func:`choose_bucket`).
      mode: force ``direct`` or ``relay`` (default: the cheaper).
    """
    layers, devices, slots = layer_pool.shape
    m = mat.shape[-1]
    needs = [gather_needs(layer_pool[i], mat[i], experts) for i in range(layers)]
    mode, c, c2 = choose_bucket(needs, devices, slots, experts, current, mode)
    width = {"direct": devices * c, "relay": c, "none": 0}[mode]
    pack = -np.ones((layers, devices, width), np.int32)
    compact = -np.ones((layers, c2), np.int32)
    pick = -np.ones((layers, devices, m), np.int32)
    for i in range(layers):
        owner, slot = _owners(layer_pool[i], experts)
        fill = np.zeros((devices, devices), np.int64)
        where: dict[int, int] = {}  # expert -> index among received chunks
        for dst, k in zip(*np.nonzero(mat[i] >= 0)):
            e = int(mat[i, dst, k])
            o = int(owner[e])
            if o == dst:
                pick[i, dst, k] = slot[e]
                continue
            if mode == "direct":
                j = fill[o, dst]
                fill[o, dst] += 1
                pack[i, o, dst * c + j] = slot[e]
                pick[i, dst, k] = slots + o * c + j
                continue
            if e not in where:
                j = fill[o, 0]
                fill[o, 0] += 1
                pack[i, o, j] = slot[e]
                where[e] = len(where)
                compact[i, where[e]] = o * c + j
            pick[i, dst, k] = slots + where[e]
    return GatherArrays(pack, compact, pick), (mode, c, c2)


def mode_of(pack_shape, compact_shape) -> str:
    """The packing a plan's array shapes encode (see :class:`GatherArrays`)."""
    if compact_shape[-1] > 0:
        return "relay"
    return "direct" if pack_shape[-1] > 0 else "none"


def _take(x: jax.Array, idx: jax.Array) -> jax.Array:
    """Rows ``x[idx]``, zero where ``idx < 0``."""
    return jnp.where((idx >= 0)[:, None], x[jnp.maximum(idx, 0)], 0.0)


def sparse_all_gather(
    w: jax.Array,
    pack: jax.Array,
    compact: jax.Array,
    pick: jax.Array,
    axis: str,
) -> jax.Array:
    """Materialises the planned replicas on every device (call in shard_map).

    Args:
      w: (K, P) this device's local chunks of the layer.
      pack: this device's row of :attr:`GatherArrays.pack` (direct
        ``(D c,)``, relay ``(c1,)``).
      compact: relay ``(c2,)`` (the same on every device), direct ``(0,)``.
      pick: (m,) this device's picks.
      axis: mesh axis over the D devices.

    Returns:
      (m, P) the materialisation slots (zero where empty).
    """
    devices = jax.lax.axis_size(axis)
    p = w.shape[-1]
    mode = mode_of(pack.shape, compact.shape)
    with jax.named_scope("sparse_all_gather"):
        if mode == "none":
            return _take(w, pick)
        if mode == "direct":
            c = pack.shape[0] // devices
            buf = _take(w, pack).reshape(devices, c, p)
            recv = jax.lax.all_to_all(buf, axis, 0, 0, tiled=True)
            got = recv.reshape(devices * c, p)
        else:
            c1, c2 = pack.shape[0], compact.shape[0]
            piece = -(-p // devices)
            pub = _take(w, pack)
            pub = jnp.pad(pub, ((0, 0), (0, piece * devices - p)))
            pub = pub.reshape(c1, devices, piece).transpose(1, 0, 2)
            mine = jax.lax.all_to_all(pub, axis, 0, 0, tiled=True)  # (D_src, c1, pc)
            mine = _take(mine.reshape(devices * c1, piece), compact)  # (c2, pc)
            every = jax.lax.all_gather(mine, axis, axis=0)  # (D_piece, c2, pc)
            got = every.transpose(1, 0, 2).reshape(c2, devices * piece)[:, :p]
        return _take(jnp.concatenate([w, got], axis=0), pick)


def all_gather_pools(pool: jax.Array, axis: str) -> jax.Array:
    """FSDP gather: every device gets every device's ``(K, P) -> (D K, P)``.

    Its transpose is ``psum_scatter`` (the FSDP gradient reduce-scatter).
    """
    with jax.named_scope("fsdp_all_gather"):
        return jax.lax.all_gather(pool, axis, axis=0, tiled=True)


MODES = ("none", "direct", "relay")


def plan_chunks(layer_pool: np.ndarray, mat: np.ndarray, experts: int) -> int:
    """Planned crossing replicas of a step, summed over layers (chunks)."""
    return sum(
        gather_needs(layer_pool[i], mat[i], experts)["replicas"]
        for i in range(layer_pool.shape[0])
    )


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
