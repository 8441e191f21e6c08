"""Placement plans: Algorithms 1 and 2, routing and the cost model's invariants."""

from __future__ import annotations

import numpy as np

from jaxsuite.moe import cost, plans

TOPO = plans.Topology(8, 2)


def test_assign_slots_by_load_is_proportional_and_capped():
    load = np.array([50.0, 30.0, 15.0, 5.0])
    counts = plans.assign_slots_by_load(load, 16, cap=7)
    assert counts.sum() == 16 and counts.max() <= 7
    assert list(counts) == sorted(counts, reverse=True)
    counts = plans.assign_slots_by_load(np.array([100.0, 0.0]), 10, cap=7)
    np.testing.assert_array_equal(counts, [7, 3])  # the overflow goes on


def test_algorithm1_small_t_replicates_to_all():
    pool = plans.even_sharding(1, 16, 8, 2)[0]
    load = np.arange(16.0)
    mat = plans.sparse_materialization(load, pool, t=2, m=4, topo=TOPO)
    owner, _ = plans.owners(pool, 16)
    for d in range(8):
        got = set(mat[d][mat[d] >= 0])
        assert got == {e for e in (15, 14) if owner[e] != d}


def test_algorithm1_large_t_spreads_slots_by_load():
    rng = np.random.default_rng(0)
    pool = plans.even_sharding(1, 16, 8, 3)[0]
    load = rng.pareto(1.0, 16) * 100
    mat = plans.sparse_materialization(load, pool, t=10, m=3, topo=TOPO)
    owner, _ = plans.owners(pool, 16)
    top = set(np.argsort(-load, kind="stable")[:10])
    for d in range(8):
        row = mat[d][mat[d] >= 0]
        assert len(set(row)) == len(row)  # no duplicate replica on a device
        assert all(owner[e] != d for e in row)  # never on the owner
        assert set(row) <= top
    replicas = np.bincount(mat[mat >= 0], minlength=16)
    hottest = int(np.argmax(load))
    assert replicas[hottest] == replicas.max() and replicas.sum() > 0


def test_route_prefers_local_then_node():
    pool = plans.even_sharding(1, 16, 8, 2)[0]
    mat = -np.ones((8, 1), np.int32)
    mat[1, 0] = 10  # expert 10 lives on device 5 (node 1); replica on device 1
    r_dev, r_slot = plans.route(pool, mat, TOPO)
    assert r_dev[1, 10] == 1 and r_slot[1, 10] == 2  # local replica slot S + 0
    assert all(r_dev[s, 10] == 1 for s in (0, 2, 3))  # same node as the replica
    assert all(r_dev[s, 10] == 5 for s in (4, 6, 7))  # owner's node
    assert r_dev[5, 10] == 5 and r_slot[5, 10] == 0  # the owner keeps its own


def test_algorithm2_owns_each_expert_once_and_balances_cold_load():
    rng = np.random.default_rng(1)
    load = rng.pareto(1.0, 16) * 100
    new = plans.heterogeneous_sharding(load, t=4, slots=3, topo=TOPO)
    assert sorted(new[new >= 0]) == list(range(16))
    hot = set(np.argsort(-load, kind="stable")[:4])
    cold = np.where(np.isin(new, list(hot)) | (new < 0), 0.0, load[np.maximum(new, 0)])
    node_load = [cold[:4].sum(), cold[4:].sum()]
    even = plans.even_sharding(1, 16, 8, 2)[0]
    even_cold = np.where(np.isin(even, list(hot)), 0.0, load[even])
    even_nodes = [even_cold[:4].sum(), even_cold[4:].sum()]
    assert abs(node_load[0] - node_load[1]) <= abs(even_nodes[0] - even_nodes[1]) + 1e-9
    old = plans.even_sharding(1, 16, 8, 3)
    index = plans.reshard_index(old, new[None])
    flat_old = old[0].reshape(-1)
    np.testing.assert_array_equal(flat_old[index[0][new >= 0]], new[new >= 0])


def test_cost_model_fsdp_bytes_and_ep_straggler():
    cm = cost.CostModel()
    pool = plans.even_sharding(1, 16, 8, 2)[0]
    counts = np.full((8, 16), 100.0)
    fsdp = cost.layer_time("fsdp", counts, pool, None, cm)
    # Gather + reduce-scatter: every device receives the 14 experts it lacks.
    assert fsdp["param_bytes"] == 2 * 8 * 14 * cm.expert_bytes
    ep = cost.layer_time("ep", counts, pool, None, cm)
    skewed = counts.copy()
    skewed[:, 0] += 1000.0
    assert cost.layer_time("ep", skewed, pool, None, cm)["compute"] > ep["compute"]
    mat = plans.sparse_materialization(skewed.sum(0), pool, 4, 2, TOPO)
    fssdp = cost.layer_time("fssdp", skewed, pool, mat, cm)
    assert (
        fssdp["max_over_mean_tokens"]
        < cost.layer_time("ep", skewed, pool, None, cm)["max_over_mean_tokens"]
    )
    # Eq. 2: spAG + spRS volume equals 2 x (replicas crossing devices) x P.
    crossing = sum(1 for e in mat[mat >= 0])
    assert fssdp["param_bytes"] == 2 * crossing * cm.expert_bytes
