"""The NNX modules: their Param state is what the shard_map strategies train.

One FSSDP step on ``params(model.shard(pool_id))`` (a cross-layer random
sharding) equals one step of the NNX reference module jitted through
``nnx.split`` / ``nnx.merge``; the trained pools written back with
``load_params`` and unsharded equal the reference's experts.
"""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import NamedSharding

from configs import hecate as hecate_config
from jaxsuite.core import optim
from jaxsuite.moe import model, nnx_model, replay, runtime, settings, strategies
from tests.moe import common as h


def _reference_step(graphdef, tx, tokens):
    @jax.jit
    def step(params, opt):
        def loss_fn(p):
            module = nnx.merge(graphdef, p)
            kw = dict(groups=h.D, cap=h.CAP, heads=h.HEADS, aux_weight=0.01)
            return module(tokens, **kw)[0]

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt = optim.update(tx, grads, opt, params)
        return optax.apply_updates(params, updates), opt, loss

    return step


def test_nnx_state_is_the_strategies_pytree():
    mesh = h.mesh()
    rng = np.random.default_rng(5)
    ref = nnx_model.MoEModel(
        vocab=h.V, hidden=h.H, ffn=h.F, layers=h.L, experts=h.E, rngs=nnx.Rngs(0)
    )
    pool = h.random_sharding(rng)
    sharded = ref.shard(pool)
    params = nnx_model.params(sharded)
    assert set(params) == {"dense", "pools"}
    assert params["pools"].shape == (h.D, h.S, model.expert_size(h.H, h.F))

    tx = h.tx()
    state = strategies.put_state(mesh, {**params, "opt": tx.init(params)})
    step = strategies.make_train_step(mesh, h.spec("fssdp"), tx)
    toks = h.tokens(11)
    plan = strategies.put_plan(mesh, h.plan(pool, h.random_mat(rng, pool)))
    sharded_toks = jax.device_put(toks, NamedSharding(mesh, jax.P("x")))
    state, scalars = step(state, sharded_toks, plan)

    graphdef, ref_params = nnx.split(ref, nnx.Param)
    ref_params, _, ref_loss = _reference_step(graphdef, tx, toks)(
        ref_params, tx.init(ref_params)
    )
    nnx.update(ref, ref_params)
    h.assert_close(scalars["loss"], ref_loss, err_msg="loss")

    nnx_model.load_params(
        sharded, {"dense": h.to_np(state["dense"]), "pools": h.to_np(state["pools"])}
    )
    h.assert_close(sharded.unshard(pool, h.L), ref.experts[...], err_msg="experts")
    for k in ref.dense:
        h.assert_close(sharded.dense[k][...], ref.dense[k][...], err_msg=k)


def test_model_from_key_is_init_params_and_runtime_trains_its_state():
    """``key=`` draws exactly ``init_params``'s parameters; Runtime's state is
    the module's sharded ``nnx.Param`` state."""
    shape = dict(vocab=11, hidden=8, ffn=16, layers=2, experts=8)
    key = jax.random.PRNGKey(3)
    module = nnx_model.MoEModel(**shape, key=key)
    dense, experts = model.init_params(key, **shape)
    np.testing.assert_array_equal(np.asarray(module.experts[...]), experts)
    for k, v in dense.items():
        np.testing.assert_array_equal(np.asarray(module.dense[k][...]), v)
    with pytest.raises(ValueError, match="exactly one"):
        nnx_model.MoEModel(**shape)
    s = settings.from_config(hecate_config.get_config("smoke"))
    setup = runtime.Runtime(s)
    plnr = replay.planner(s, "ep", replay.overlap_degree(s))
    state = setup.state(plnr.pool_id)
    want = nnx_model.params(setup.model.shard(plnr.pool_id))
    np.testing.assert_array_equal(np.asarray(state["pools"]), want["pools"])
    for k, v in want["dense"].items():
        np.testing.assert_array_equal(np.asarray(state["dense"][k]), v)
