"""Shared set-up for the MoE tests: a tiny model, random plans, the reference step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxsuite.core import devices, optim
from jaxsuite.moe import gating, model, plans, sharding, strategies

D, L, E, S, K, M = 8, 2, 16, 5, 5, 2
H, F, HEADS, V = 16, 32, 2, 64
B_LOCAL, T = 2, 8
CAP = gating.capacity(B_LOCAL * T, E, 2.0)
TOPO = plans.Topology(D, 2)
LR = 1e-3


def mesh():
    return devices.make_mesh((D,), ("x",))


def spec(
    strategy: str, remat: bool = False, exchange: str = "slots"
) -> strategies.Spec:
    return strategies.Spec(
        strategy=strategy,
        hidden=H,
        ffn=F,
        heads=HEADS,
        experts=E,
        cap=CAP,
        slots=S,
        layer_slots=K,
        mat_slots=M,
        remat=remat,
        exchange=exchange,
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
    """pool_id (D, S) over all layers, devices owning 0..K experts of a layer.

    Device 0 owns S experts of layer 0 and none of layer 1; device 1 owns
    S - 1 experts of layer 1 and none of layer 0; the rest lie in random
    slots of the other devices (some empty).
    """
    ids = rng.permutation(L * E)
    first = [g for g in ids if g < E][:S]
    second = [g for g in ids if g >= E][: S - 1]
    pool = -np.ones((D, S), np.int32)
    pool[0], pool[1, : S - 1] = first, second
    rest = np.array([g for g in ids if g not in set(first) | set(second)])
    slots = rng.permutation((D - 2) * S)[: len(rest)]
    pool[2:].reshape(-1)[slots] = rest
    return pool


def layer_pool(pool_id: np.ndarray) -> np.ndarray:
    """(L, D, K) expert ids of each layer's local compute slots."""
    return sharding.layer_views(pool_id, L, E, K)[0]


def plan(pool_id: np.ndarray, mat: np.ndarray, current=None) -> plans.PlanArrays:
    return sharding.plan_arrays(
        pool_id, mat, TOPO, experts=E, layer_slots=K, current=current
    )


def random_mat(rng: np.random.Generator, pool_id: np.ndarray) -> np.ndarray:
    """(L, D, M): random replicas, some empty, one owner-local per layer."""
    views = layer_pool(pool_id)
    mat = rng.integers(-1, E, size=(L, D, M)).astype(np.int32)
    for layer in range(L):
        owned = views[layer, 3][views[layer, 3] >= 0]
        if owned.size:
            mat[layer, 3, 0] = owned[0]  # a replica of an expert its owner holds
        mat[layer, 5, :] = -1  # a device with no replicas
    return mat


def tx():
    return optax.adam(LR)


def reference_step(tx_):
    """The dense reference's training step in float64 (call it through
    :func:`float64`); the strategies run in float32."""

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
        updates, opt = optim.update(tx_, grads, state["opt"], params)
        return {**optax.apply_updates(params, updates), "opt": opt}, loss, stats, grads

    return jax.jit(step)


def assert_close(a, b, atol=2e-5, rtol=2e-4, err_msg=""):
    np.testing.assert_allclose(
        np.asarray(a), np.asarray(b), atol=atol, rtol=rtol, err_msg=err_msg
    )


def to_np(x):
    return jax.tree.map(lambda a: np.asarray(jnp.asarray(a)), x)


def float64(fn, *args):
    """Runs ``fn(*args)`` with 64-bit types, floating inputs cast to float64."""
    with jax.enable_x64(True):
        cast = jax.tree.map(
            lambda a: (
                jnp.asarray(a, jnp.float64)
                if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating)
                else jnp.asarray(a)
            ),
            args,
        )
        return jax.tree.map(np.asarray, fn(*cast))
