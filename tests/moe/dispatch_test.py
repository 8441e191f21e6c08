"""Token dispatch (section 4.4): replica choice and the even split.

On random plans: each source's chosen replicas are its own copies if any,
else its node's, else all; the host split is even; and the compiled exchange
sends queue position p of an expert to chosen replica ``p mod n``, so each
replica receives the host's predicted number of tokens.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding

from jaxsuite.moe import plans, strategies
from tests.moe import common as h


def _holders(pool, mat, e):
    out = [(d, k) for (d, k), x in np.ndenumerate(pool) if x == e]
    out += [(d, pool.shape[1] + k) for (d, k), x in np.ndenumerate(mat) if x == e]
    return out


def test_route_chooses_nearest_replicas_and_splits_evenly():
    rng = np.random.default_rng(0)
    for _ in range(20):
        pool_id = h.random_sharding(rng)
        pool, mat = h.layer_pool(pool_id)[0], h.random_mat(rng, pool_id)[0]
        r_dev, r_slot = plans.route(pool, mat, h.TOPO)
        counts = rng.integers(0, 40, size=(h.D, h.E))
        share = plans.split_counts(counts, r_dev)
        np.testing.assert_array_equal(share.sum(-1), counts)
        for src in range(h.D):
            for e in range(h.E):
                every = _holders(pool, mat, e)
                local = [x for x in every if x[0] == src]
                near = [x for x in every if h.TOPO.node(x[0]) == h.TOPO.node(src)]
                n = int((r_dev[src, e] >= 0).sum())
                got = list(zip(r_dev[src, e, :n], r_slot[src, e, :n]))
                assert sorted(got) == sorted(local or near or every)
                part = share[src, e, :n]
                assert part.max() - part.min() <= 1 and part.sum() == counts[src, e]


def test_exchange_sends_position_p_to_replica_p_mod_n():
    mesh = h.mesh()
    rng = np.random.default_rng(1)
    pool_id = h.random_sharding(rng)
    pool, mat = h.layer_pool(pool_id)[0], h.random_mat(rng, pool_id)[0]
    mat[2, :] = mat[1, :] = 4  # several replicas of expert 4 on node 0
    r_dev, r_slot = plans.route(pool, mat, h.TOPO)
    n_slots, cap, hid = h.K + h.M, 5, 3
    counts = rng.integers(0, cap + 1, size=(h.D, h.E))
    q = np.zeros((h.D, h.E, cap, hid), np.float32)
    for (d, e), c in np.ndenumerate(counts):
        q[d, e, :c] = 1.0  # kept tokens fill positions 0 .. count - 1

    def tag(rows):  # each compute slot multiplies by its global id + 1
        dev = jax.lax.axis_index("x")
        ids = (dev * n_slots + jnp.arange(n_slots) + 1).astype(jnp.float32)
        return rows * ids[:, None, None]

    def body(qd, rd, rs):
        return strategies._exchange(qd[0], rd[0], rs[0], n_slots, tag, "x")[None]

    f = jax.shard_map(body, mesh=mesh, in_specs=(jax.P("x"),) * 3, out_specs=jax.P("x"))
    put = lambda a: jax.device_put(a, NamedSharding(mesh, jax.P("x")))
    with jax.set_mesh(mesh):
        out = np.asarray(jax.jit(f)(put(q), put(r_dev), put(r_slot)))[..., 0]
    share = plans.split_counts(counts, r_dev)
    for (src, e), c in np.ndenumerate(counts):
        n = int((r_dev[src, e] >= 0).sum())
        for p in range(cap):
            r = p % n
            want = r_dev[src, e, r] * n_slots + r_slot[src, e, r] + 1.0
            assert out[src, e, p] == (want if p < c else 0.0)
        got = [
            np.sum(
                out[src, e, :c] == r_dev[src, e, r] * n_slots + r_slot[src, e, r] + 1
            )
            for r in range(n)
        ]
        np.testing.assert_array_equal(got, share[src, e, :n])
