"""Shared set-up for the MoE tests: a tiny model, random plans, the reference step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxsuite.core import devices
from jaxsuite.moe import gating, model, plans, strategies

D, L, E, S, M = 8, 2, 16, 3, 2
H, F, HEADS, V = 16, 32, 2, 64
B_LOCAL, T = 2, 8
CAP = gating.capacity(B_LOCAL * T, E, 2.0)
TOPO = plans.Topology(D, 2)
LR = 1e-3


def mesh():
    return devices.make_mesh((D,), ("x",))


def spec(strategy: str, remat: bool = False) -> strategies.Spec:
    return strategies.Spec(
        strategy=strategy,
        hidden=H,
        ffn=F,
        heads=HEADS,
        experts=E,
        cap=CAP,
        slots=S,
        mat_slots=M,
        remat=remat,
    )


def init(seed: int = 0):
    return model.init_params(
        jax.random.PRNGKey(seed), vocab=V, hidden=H, ffn=F, layers=L, experts=E
    )


def tokens(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Few distinct tokens: loads are skewed and capacity drops some tokens.
    return rng.integers(0, 6, size=(D * B_LOCAL, T)).astype(np.int32)


def random_sharding(rng: np.random.Generator) -> np.ndarray:
    """(L, D, S): each expert in a random slot; devices may own 0..S experts."""
    out = -np.ones((L, D, S), np.int32)
    for layer in range(L):
        slots = rng.permutation(D * S)[:E]
        out[layer].reshape(-1)[slots] = np.arange(E)
    return out


def random_mat(rng: np.random.Generator, pool: np.ndarray) -> np.ndarray:
    """(L, D, M): random replicas, some empty, one owner-local per layer."""
    mat = rng.integers(-1, E, size=(L, D, M)).astype(np.int32)
    for layer in range(L):
        owned = pool[layer, 3][pool[layer, 3] >= 0]
        if owned.size:
            mat[layer, 3, 0] = owned[0]  # a replica of an expert its owner holds
        mat[layer, 5, :] = -1  # a device with no replicas
    return mat


def tx():
    return optax.adam(LR)


def reference_step(tx_):
    def step(state, toks):
        def objective(p):
            return model.reference_loss(
                p["dense"],
                p["experts"],
                toks,
                groups=D,
                cap=CAP,
                heads=HEADS,
                hidden=H,
                ffn=F,
                aux_weight=0.01,
            )

        params = {"dense": state["dense"], "experts": state["experts"]}
        (loss, stats), grads = jax.value_and_grad(objective, has_aux=True)(params)
        updates, opt = tx_.update(grads, state["opt"], params)
        return {**optax.apply_updates(params, updates), "opt": opt}, loss, stats, grads

    return jax.jit(step)


def assert_close(a, b, atol=2e-5, rtol=2e-4, err_msg=""):
    np.testing.assert_allclose(
        np.asarray(a), np.asarray(b), atol=atol, rtol=rtol, err_msg=err_msg
    )


def to_np(x):
    return jax.tree.map(lambda a: np.asarray(jnp.asarray(a)), x)
