"""SparseAllGather equals a numpy gather; its VJP is SparseReduceScatter."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding

from jaxsuite.moe import collectives, plans
from tests.moe import common as h

P_SIZE = 6


def _setup(seed):
    rng = np.random.default_rng(seed)
    pool = h.layer_pool(h.random_sharding(rng))[0]  # (D, K) of layer 0
    mat = h.random_mat(rng, h.random_sharding(rng))[0]
    mat[3, 1] = pool[3][pool[3] >= 0][0] if (pool[3] >= 0).any() else -1
    pools = rng.normal(size=(h.D, h.K, P_SIZE)).astype(np.float32)
    pools[pool < 0] = 0.0
    return pool, mat, pools, rng


def test_sparse_all_gather_and_transpose():
    mesh = h.mesh()
    for seed in range(3):
        pool, mat, pools, rng = _setup(seed)
        send = plans.send_slots(pool, mat)  # (D, D, m)
        cot = rng.normal(size=(h.D, h.M, P_SIZE)).astype(np.float32)

        def f(p, s):
            return jax.shard_map(
                lambda a, b: collectives.sparse_all_gather(a[0], b[0], "x")[None],
                mesh=mesh,
                in_specs=(jax.P("x"), jax.P("x")),
                out_specs=jax.P("x"),
            )(p, s)

        sharding = NamedSharding(mesh, jax.P("x"))
        send_dev = jax.device_put(send, sharding)
        with jax.set_mesh(mesh):
            out, vjp = jax.vjp(
                lambda p, s=send_dev: f(p, s), jax.device_put(pools, sharding)
            )
            (grad,) = vjp(jnp.asarray(cot))
        np.testing.assert_array_equal(
            np.asarray(out), collectives.sparse_all_gather_reference(pools, pool, mat)
        )
        np.testing.assert_allclose(
            np.asarray(grad),
            collectives.sparse_reduce_scatter_reference(cot, pool, mat),
            rtol=1e-6,
            atol=1e-6,
        )
