"""Expert sharding over one pool per device that spans all layers.

Each device owns ``S`` pool slots (parameters + optimizer state) shared by
every MoE layer: ``pool_id[d, s] = layer * E + expert`` of the chunk in slot
``s`` of device ``d``, or -1 for an empty slot. Every (layer, expert) has
exactly one owner. With ``S = L E / D`` the pools hold exactly the model, and
a device may own anywhere from 0 to ``K`` experts of one layer at equal
memory (Algorithm 2's heterogeneous sharding), where ``K`` (``layer_slots``)
is the static number of compute slots a layer reads from a device's pool.

:func:`layer_views` turns a ``pool_id`` into the per-layer arrays the step
and the per-layer planners use: ``layer_pool (L, D, K)`` (expert ids in the
layer's local compute slots) and ``local_slot (L, D, K)`` (which pool slot
each of them is). Everything here is host numpy.
"""

from __future__ import annotations

import numpy as np

from jaxsuite.moe import plans as plans_lib


def even_sharding(layers: int, experts: int, devices: int, slots: int) -> np.ndarray:
    """Contiguous even sharding: expert e of every layer on device e // (E/D).

    Returns:
      pool_id (D, S) int32; layer l's experts sit in slots ``l E/D ...``;
      slots past ``L E/D`` are empty (-1).
    """
    per = experts // devices
    if per * devices != experts or slots < layers * per:
        raise ValueError(
            f"E={experts} must split over D={devices} into <= {slots} slots "
            f"for {layers} layers"
        )
    pool = -np.ones((devices, slots), np.int32)
    for layer in range(layers):
        ids = layer * experts + np.arange(experts).reshape(devices, per)
        pool[:, layer * per : (layer + 1) * per] = ids
    return pool


def layer_views(
    pool_id: np.ndarray, layers: int, experts: int, layer_slots: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-layer local compute slots of a sharding.

    Args:
      pool_id: (D, S) global ids ``layer * E + expert`` or -1.
      layer_slots: K, compute slots a layer reads from each device's pool.

    Returns:
      ``layer_pool (L, D, K)`` expert ids (-1 empty) and ``local_slot
      (L, D, K)`` their pool slots (-1 empty), in ascending pool-slot order.
    """
    devices = pool_id.shape[0]
    layer_pool = -np.ones((layers, devices, layer_slots), np.int32)
    local = -np.ones((layers, devices, layer_slots), np.int32)
    fill = np.zeros((layers, devices), np.int64)
    for d, s in zip(*np.nonzero(pool_id >= 0)):
        layer, e = divmod(int(pool_id[d, s]), experts)
        k = fill[layer, d]
        if k >= layer_slots:
            raise ValueError(
                f"device {d} owns more than K={layer_slots} of layer {layer}"
            )
        layer_pool[layer, d, k], local[layer, d, k] = e, s
        fill[layer, d] += 1
    return layer_pool, local


def heterogeneous_sharding(
    load: np.ndarray,
    t: int,
    slots: int,
    layer_slots: int,
    topo: plans_lib.Topology,
) -> np.ndarray:
    """Algorithm 2: re-shard all layers' experts into one pool per device.

    Each layer's top-t experts (J, always materialised) and the rest (J',
    cold) are placed separately. J' goes first: layers in descending order
    of their maximum load, each layer's experts in descending load, each to
    the node with the least load of that layer, then that node's device with
    the least load of that layer (ties: fewer free slots) that has a free
    pool slot and fewer than K experts of the layer. J then fills the
    remaining slots, each expert to the device with the most free slots.
    A device may thus own 0..K experts of one layer at equal memory.

    Args:
      load: (L, E) expected loads.
      t: overlap degree (the size of each layer's hot set J).
      slots: S pool slots per device (``D S >= L E``).
      layer_slots: K, most experts of one layer per device (``D K >= E``).
      topo: node layout.

    Returns:
      pool_id (D, S) int32.
    """
    load = np.asarray(load, np.float64)
    layers, experts = load.shape
    devices = topo.devices
    if devices * slots < layers * experts or devices * layer_slots < experts:
        raise ValueError("not enough slots")
    t = min(int(t), experts)
    order = np.argsort(-load, axis=1, kind="stable")
    pool = -np.ones((devices, slots), np.int32)
    free = np.full(devices, slots)
    count = np.zeros((layers, devices), np.int64)
    dev_load = np.zeros((layers, devices))
    node_load = np.zeros((layers, topo.nodes))

    def put(layer: int, e: int, d: int) -> None:
        pool[d, slots - free[d]] = layer * experts + e
        free[d] -= 1
        count[layer, d] += 1
        dev_load[layer, d] += load[layer, e]
        node_load[layer, topo.node(d)] += load[layer, e]

    def open_devices(layer: int) -> list[int]:
        devs = [
            d for d in range(devices) if free[d] > 0 and count[layer, d] < layer_slots
        ]
        if not devs:
            raise ValueError(f"no device can take another expert of layer {layer}")
        return devs

    for layer in np.argsort(-load.max(axis=1), kind="stable"):
        for e in order[layer, t:]:
            devs = open_devices(layer)
            node = min(
                {topo.node(d) for d in devs}, key=lambda n: (node_load[layer, n], n)
            )
            d = min(
                (d for d in devs if topo.node(d) == node),
                key=lambda d: (dev_load[layer, d], free[d], d),
            )
            put(int(layer), int(e), d)
    for layer in range(layers):
        for e in order[layer, :t]:
            d = max(open_devices(layer), key=lambda d: (free[d], -d))
            put(layer, int(e), d)
    return pool


def reshard_index(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Where each new pool slot's chunk lives in the old pools.

    Args:
      old, new: pool_id (D, S).

    Returns:
      (D, S) int32 flat index ``old_dev * S + old_slot``, -1 for empty slots.
    """
    flat = old.reshape(-1)
    where = {int(g): i for i, g in enumerate(flat) if g >= 0}
    out = -np.ones_like(new, dtype=np.int32)
    for (d, s), g in np.ndenumerate(new):
        if g >= 0:
            out[d, s] = where[int(g)]
    return out


def moved_experts(old: np.ndarray, new: np.ndarray) -> int:
    """Chunks (over all layers) whose owning device changes."""
    dev_old = {int(g): d for (d, _), g in np.ndenumerate(old) if g >= 0}
    return sum(
        1 for (d, _), g in np.ndenumerate(new) if g >= 0 and dev_old[int(g)] != d
    )


def experts_to_pools(experts: np.ndarray, pool_id: np.ndarray) -> np.ndarray:
    """Lays out ``(L, E, ...)`` expert-ordered arrays as pools ``(D, S, ...)``."""
    experts = np.asarray(experts)
    flat = experts.reshape(-1, *experts.shape[2:])
    out = np.zeros((*pool_id.shape, *experts.shape[2:]), experts.dtype)
    valid = pool_id >= 0
    out[valid] = flat[pool_id[valid]]
    return out


def pools_to_experts(pools: np.ndarray, pool_id: np.ndarray, layers: int) -> np.ndarray:
    """Inverse of :func:`experts_to_pools`: ``(D, S, ...) -> (L, E, ...)``."""
    pools = np.asarray(pools)
    total = int(np.sum(pool_id >= 0))
    out = np.zeros((total, *pools.shape[2:]), pools.dtype)
    valid = pool_id >= 0
    out[pool_id[valid]] = pools[valid]
    return out.reshape(layers, total // layers, *pools.shape[2:])


def plan_arrays(
    pool_id: np.ndarray,
    mat: np.ndarray,
    topo: plans_lib.Topology,
    *,
    experts: int,
    layer_slots: int,
    current: tuple[str, int, int] | None = None,
) -> plans_lib.PlanArrays:
    """The step's int32 plan of a sharding ``pool_id (D, S)`` and ``mat (L, D, m)``.

    ``current``: a SparseAllGather bucket to keep if it fits.
    """
    layer_pool, local = layer_views(pool_id, mat.shape[0], experts, layer_slots)
    return plans_lib.plan_arrays(layer_pool, local, mat, topo, current=current)
