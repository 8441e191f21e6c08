"""On a GPU: the real ``ragged_all_to_all`` exchange equals the fixed-slot one.

One device (a one-GPU mesh), every expert owned locally, replicas of some
of them in materialisation slots, so each expert's tokens are split over its
owner slot and its replicas. Three FSSDP steps (SGD, full-precision
matmuls) through the ragged exchange (``jax.lax.ragged_all_to_all`` and
``ragged_dot``) and through the fixed-slot exchange give the same losses and
parameters, and the first loss equals the dense reference's. Skipped
without a GPU.
"""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding

from jaxsuite.moe import gating, model, plans, sharding, strategies

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(jax.default_backend() != "gpu", reason="needs a GPU"),
]

L, E, M, H, F, V, B, T = 2, 8, 3, 32, 64, 64, 4, 16
CAP = gating.capacity(B * T, E, 2.0)


def _spec(exchange):
    return strategies.Spec(
        strategy="fssdp",
        hidden=H,
        ffn=F,
        heads=2,
        experts=E,
        cap=CAP,
        slots=L * E,
        layer_slots=E,
        mat_slots=M,
        exchange=exchange,
    )


@jax.default_matmul_precision("highest")
def test_ragged_exchange_equals_fixed_slots_on_gpu():
    mesh = jax.make_mesh((1,), ("x",))
    topo = plans.Topology(1, 1)
    dense, experts = model.init_params(
        jax.random.PRNGKey(0), vocab=V, hidden=H, ffn=F, layers=L, experts=E
    )
    pool = sharding.even_sharding(L, E, 1, L * E)
    mat = np.array([[[0, 3, -1]], [[5, 5, 1]]], np.int32)  # (L, D, m)
    plan = strategies.put_plan(
        mesh, sharding.plan_arrays(pool, mat, topo, experts=E, layer_slots=E)
    )
    tx = optax.sgd(0.5)
    out = {}
    for exchange in ("slots", "ragged"):
        state = {"dense": dense, "pools": sharding.experts_to_pools(experts, pool)}
        state = strategies.put_state(mesh, {**state, "opt": tx.init(state)})
        step = strategies.make_train_step(mesh, _spec(exchange), tx)
        losses = []
        for i in range(3):
            rng = np.random.default_rng(i)
            toks = rng.integers(0, 6, size=(B, T)).astype(np.int32)
            toks = jax.device_put(toks, NamedSharding(mesh, jax.P("x")))
            state, scalars = step(state, toks, plan)
            losses.append(float(scalars["loss"]))
        out[exchange] = (np.asarray(losses), np.asarray(state["pools"]))
    ref, _ = model.reference_loss(
        dense,
        experts,
        np.random.default_rng(0).integers(0, 6, size=(B, T)).astype(np.int32),
        groups=1,
        cap=CAP,
        heads=2,
        hidden=H,
        ffn=F,
        aux_weight=0.01,
    )
    np.testing.assert_allclose(out["slots"][0][0], float(ref), rtol=1e-4)
    np.testing.assert_allclose(out["ragged"][0], out["slots"][0], rtol=1e-4)
    np.testing.assert_allclose(out["ragged"][1], out["slots"][1], rtol=1e-4, atol=1e-6)
