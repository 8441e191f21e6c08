"""One pool per device over all layers: even sharding, views, Algorithm 2."""

from __future__ import annotations

import numpy as np
import pytest

from jaxsuite.moe import plans, sharding

TOPO = plans.Topology(8, 2)
L, E = 3, 16


def test_even_sharding_views_and_layout_round_trip():
    pool = sharding.even_sharding(L, E, 8, 7)  # 6 used slots + 1 empty
    layer_pool, local = sharding.layer_views(pool, L, E, 2)
    for layer in range(L):
        np.testing.assert_array_equal(layer_pool[layer], np.arange(E).reshape(8, 2))
        np.testing.assert_array_equal(
            pool[np.arange(8)[:, None], local[layer]], layer * E + layer_pool[layer]
        )
    experts = np.random.default_rng(0).normal(size=(L, E, 5))
    pools = sharding.experts_to_pools(experts, pool)
    assert pools.shape == (8, 7, 5) and not pools[:, 6].any()
    np.testing.assert_array_equal(sharding.pools_to_experts(pools, pool, L), experts)
    with pytest.raises(ValueError):
        sharding.layer_views(pool, L, E, 1)  # a device owns 2 experts per layer


def _cold_node_loads(pool, load, t):
    """(L, nodes) load of each layer's cold experts per node."""
    out = np.zeros((L, TOPO.nodes))
    hot = np.argsort(-load, axis=1, kind="stable")[:, :t]
    for (d, _), g in np.ndenumerate(pool):
        if g >= 0:
            layer, e = divmod(int(g), E)
            if e not in hot[layer]:
                out[layer, TOPO.node(d)] += load[layer, e]
    return out


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("layer_slots", [4, 6])
def test_algorithm2_across_layers(seed, layer_slots):
    rng = np.random.default_rng(seed)
    load = rng.lognormal(0.0, 1.0 + seed, size=(L, E)) * 100
    t, slots = 4, L * E // 8
    pool = sharding.heterogeneous_sharding(load, t, slots, layer_slots, TOPO)
    # Every (layer, expert) has one owner; the pools are full (equal memory).
    assert sorted(pool.reshape(-1)) == list(range(L * E))
    layer_pool, _ = sharding.layer_views(pool, L, E, layer_slots)
    per_layer = (layer_pool >= 0).sum(-1)  # (L, D) experts of a layer per device
    assert per_layer.max() <= layer_slots and (per_layer.sum(-1) == E).all()
    # Devices hold uneven numbers of one layer's experts (0..K), not E / D.
    assert (per_layer != E // 8).any()
    # Greedy least-loaded placement: the nodes' cold loads differ by at most
    # the largest cold expert, and by no more than under even sharding.
    cold = _cold_node_loads(pool, load, t)
    even = _cold_node_loads(sharding.even_sharding(L, E, 8, slots), load, t)
    biggest = np.sort(load, axis=1)[:, : E - t].max(1)
    gap = np.abs(cold[:, 0] - cold[:, 1])
    assert (gap <= biggest + 1e-9).all()
    assert gap.sum() <= np.abs(even[:, 0] - even[:, 1]).sum() + 1e-9
    # Moving the state: every new slot reads its chunk from the old pools.
    old = sharding.even_sharding(L, E, 8, slots)
    index = sharding.reshard_index(old, pool)
    np.testing.assert_array_equal(old.reshape(-1)[index], pool)
    moved = sharding.moved_experts(old, pool)
    owner_old = {int(g): d for (d, _), g in np.ndenumerate(old)}
    assert moved == sum(owner_old[int(g)] != d for (d, _), g in np.ndenumerate(pool))


def test_algorithm2_orders_layers_by_max_load_and_fills_hot_last():
    load = np.ones((2, E))
    load[1] = np.arange(E, 0, -1.0)  # layer 1 has the larger max load
    pool = sharding.heterogeneous_sharding(load, 2, 4, 4, TOPO)
    # Layer 1's hottest cold expert (expert 2; 0 and 1 are hot) is placed
    # first, in device 0's first slot; hot experts take the last free slots.
    assert pool[0, 0] == 1 * E + 2
    hot = np.isin(pool, [0 * E + 0, 0 * E + 1, 1 * E + 0, 1 * E + 1])
    assert hot.sum() == 4
    for d in range(8):  # on every device the hot experts follow the cold ones
        where = np.nonzero(hot[d])[0]
        assert (where >= 4 - len(where)).all()
