"""The ragged token exchange: its collective's semantics and exact training.

XLA:CPU has no ``ragged_all_to_all``, so the emulation (same semantics,
built from ``all_gather``) is checked against a numpy model of the
collective on random sizes, and FSSDP trained through the ragged exchange
(only kept tokens move, experts applied with ``ragged_dot``) matches the
dense reference like the fixed-slot path does.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding

from jaxsuite.moe import ragged
from tests.moe import common as h
from tests.moe.strategies_test import run_against_reference

N, M, W = 12, 40, 3


def _random_plan(rng):
    """Per-device rows, send sizes and the implied sender-side offsets."""
    sizes = np.zeros((h.D, h.D), np.int32)
    for s in range(h.D):
        cut = np.sort(rng.integers(0, N + 1, size=h.D))
        sizes[s] = np.diff(np.concatenate([[0], cut]))
    sizes[:, :] = np.minimum(sizes, M // h.D)
    in_off = np.cumsum(sizes, 1) - sizes
    out_off = np.cumsum(sizes, 0) - sizes  # [s, d]: start of s's rows on d
    return sizes, in_off, out_off


def test_emulated_ragged_all_to_all_matches_its_definition():
    mesh = h.mesh()
    rng = np.random.default_rng(0)
    for _ in range(3):
        sizes, in_off, out_off = _random_plan(rng)
        rows = rng.normal(size=(h.D, N, W)).astype(np.float32)
        want = np.zeros((h.D, M, W), np.float32)
        for s in range(h.D):
            for d in range(h.D):
                n = sizes[s, d]
                src = rows[s, in_off[s, d] : in_off[s, d] + n]
                want[d, out_off[s, d] : out_off[s, d] + n] = src

        def body(x, io, sz, oo, rs):
            out = ragged.emulated_ragged_all_to_all(
                x[0], jnp.zeros((M, W)), io[0], sz[0], oo[0], rs[0], axis_name="x"
            )
            return out[None]

        f = jax.jit(
            jax.shard_map(
                body, mesh=mesh, in_specs=(jax.P("x"),) * 5, out_specs=jax.P("x")
            )
        )
        put = lambda a: jax.device_put(a, NamedSharding(mesh, jax.P("x")))
        args = (rows, in_off, sizes, out_off, sizes.T.copy())
        with jax.set_mesh(mesh):
            got = f(*(put(np.asarray(a)) for a in args))
        np.testing.assert_array_equal(np.asarray(got), want)


def test_ragged_ffn_groups_rows_by_slot():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(4, 2 * h.H * h.F)).astype(np.float32)
    rows = rng.normal(size=(9, h.H)).astype(np.float32)
    slot = rng.integers(0, 5, size=9).astype(np.int32)  # 4 = unused row
    got = np.asarray(ragged.ragged_ffn(w, rows, slot, h.H, h.F))
    for i in range(9):
        if slot[i] == 4:
            np.testing.assert_array_equal(got[i], 0.0)
            continue
        w1 = w[slot[i], : h.H * h.F].reshape(h.H, h.F)
        w2 = w[slot[i], h.H * h.F :].reshape(h.F, h.H)
        want = np.asarray(jax.nn.gelu(rows[i] @ w1)) @ w2
        np.testing.assert_allclose(got[i], want, rtol=1e-4, atol=1e-5)


def test_fssdp_ragged_exchange_matches_reference():
    run_against_reference("fssdp", h.random_mat, exchange="ragged_emulated")
