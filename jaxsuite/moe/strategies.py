"""EP, FSDP, FasterMoE-style and FSSDP MoE training steps in ``jax.shard_map``.

All strategies keep expert parameters and their optimizer state sharded by
expert: ``pools (L, D, S, P)`` sharded over the device axis, one owner per
expert. They differ only in how a layer's experts meet its tokens:

* ``ep``: tokens go to the owner (``all_to_all``); parameters never move.
* ``fsdp``: every device gathers every expert (``all_gather``, transpose =
  reduce-scatter) and computes its own tokens.
* ``fastermoe`` and ``fssdp``: ``m`` replica slots per device are filled by
  SparseAllGather from a host plan (hot experts on every device for
  FasterMoE; Algorithm 1 for FSSDP); tokens go to a local replica first,
  then a same-node one, then any; the transpose sums replica gradients onto
  the owners (SparseReduceScatter).

With ``remat`` the gather and the expert FFN run under ``jax.checkpoint``
saving only the FFN's hidden activations, so materialised parameters are
freed after the forward pass and gathered again in the backward pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.ad_checkpoint import checkpoint_name
from jax.sharding import Mesh, NamedSharding

from jaxsuite.moe import collectives, model
from jaxsuite.moe import gating as gating_lib
from jaxsuite.moe import plans as plans_lib

STRATEGIES = ("ep", "fsdp", "fastermoe", "fssdp")
HIDDEN_NAME = "moe_hidden"


@dataclass(frozen=True)
class Spec:
    """Static shape of a strategy's step (changing it recompiles)."""

    strategy: str
    hidden: int
    ffn: int
    heads: int
    experts: int
    cap: int
    slots: int
    mat_slots: int
    aux_weight: float = 0.01
    remat: bool = False
    axis: str = "x"


def pool_specs(axis: str = "x") -> dict[str, jax.P]:
    """Partition specs of the step's arguments."""
    return {
        "dense": jax.P(),
        "pools": jax.P(None, axis),
        "tokens": jax.P(axis),
        "route": jax.P(None, axis),
        "send": jax.P(None, axis),
        "gather": jax.P(),
    }


def _ffn(w: jax.Array, x: jax.Array, spec: Spec) -> jax.Array:
    """Expert FFN whose hidden activation is named for re-materialisation."""
    n = w.shape[0]
    h, f = spec.hidden, spec.ffn
    w1 = w[:, : h * f].reshape(n, h, f)
    w2 = w[:, h * f :].reshape(n, f, h)
    pre = checkpoint_name(jnp.einsum("nsh,nhf->nsf", x, w1), HIDDEN_NAME)
    return jnp.einsum("nsf,nfh->nsh", jax.nn.gelu(pre), w2)


def _exchange(q, r_dev, r_slot, n_slots, fn, axis):
    """Sends expert queues to their compute slots, applies ``fn``, returns.

    Args:
      q: (E, cap, h) this device's expert queues.
      r_dev, r_slot: (E,) destination of each queue.
      n_slots: compute slots per device.
      fn: (n_slots, D cap, h) -> same, the slot-wise expert compute.

    Returns:
      (E, cap, h) expert outputs in queue order.
    """
    num_devices = jax.lax.axis_size(axis)
    _, cap, h = q.shape
    idx = r_dev * n_slots + r_slot
    send = jnp.zeros((num_devices * n_slots, cap, h), q.dtype).at[idx].set(q)
    send = send.reshape(num_devices, n_slots, cap, h)
    recv = jax.lax.all_to_all(send, axis, 0, 0, tiled=True)  # (D_src, n, cap, h)
    rows = recv.transpose(1, 0, 2, 3).reshape(n_slots, num_devices * cap, h)
    out = fn(rows).reshape(n_slots, num_devices, cap, h).transpose(1, 0, 2, 3)
    back = jax.lax.all_to_all(out, axis, 0, 0, tiled=True)  # (D_dst, n, cap, h)
    return back.reshape(num_devices * n_slots, cap, h)[idx]


def make_loss_fn(mesh: Mesh, spec: Spec):
    """The strategy's loss ``(dense, pools, tokens, plan) -> (loss, stats)``.

    ``plan`` is ``(route_dev, route_slot, send_slot, gather_slot)`` as in
    :class:`plans.PlanArrays`. ``stats`` holds ``load (L, D, E)`` (tokens per
    expert and source device before capacity) and ``dropped (L, D)``.
    """
    if spec.strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {spec.strategy!r}; one of {STRATEGIES}")
    axis = spec.axis
    ps = pool_specs(axis)

    def body(dense, pools, tokens, r_dev, r_slot, send_slot, gather_slot):
        def compute(pool, send_l, rows):
            if spec.strategy == "ep":
                w = pool
            else:
                mat = collectives.sparse_all_gather(pool, send_l, axis)
                w = jnp.concatenate([pool, mat], axis=0)
            return _ffn(w, rows, spec)

        def fsdp_compute(pool, gslot, q):
            w = collectives.all_gather_pools(pool, axis)[gslot]
            return _ffn(w, q, spec)

        policy = jax.checkpoint_policies.save_only_these_names(HIDDEN_NAME)
        if spec.remat:
            compute = jax.checkpoint(compute, policy=policy)
            fsdp_compute = jax.checkpoint(fsdp_compute, policy=policy)

        def moe_fn(layer, x):
            g = gating_lib.top2_gating(x @ dense["router"][layer], spec.cap)
            q = model.dispatch(x, g, spec.experts, spec.cap)
            pool = pools[layer, 0]
            if spec.strategy == "fsdp":
                out = fsdp_compute(pool, gather_slot[layer], q)
            else:
                n_slots = spec.slots + (0 if spec.strategy == "ep" else spec.mat_slots)
                send_l = send_slot[layer, 0]
                out = _exchange(
                    q,
                    r_dev[layer, 0],
                    r_slot[layer, 0],
                    n_slots,
                    lambda rows, p=pool, s=send_l: compute(p, s, rows),
                    axis,
                )
            return model.combine(g, out, spec.cap), g

        ce, count, aux, gatings = model.forward(dense, tokens, moe_fn, heads=spec.heads)
        layers = len(gatings)
        num_devices = jax.lax.axis_size(axis)
        loss = jax.lax.psum(ce, axis) / jax.lax.psum(count, axis)
        loss = loss + spec.aux_weight * jax.lax.psum(aux, axis) / (num_devices * layers)
        load = jnp.stack([g.load for g in gatings])[:, None]
        dropped = jnp.stack([g.dropped for g in gatings])[:, None]
        return loss, {"load": load, "dropped": dropped}

    mapped = jax.shard_map(
        body,
        mesh=mesh,
        in_specs=(
            ps["dense"],
            ps["pools"],
            ps["tokens"],
            ps["route"],
            ps["route"],
            ps["send"],
            ps["gather"],
        ),
        out_specs=(jax.P(), {"load": jax.P(None, axis), "dropped": jax.P(None, axis)}),
    )

    def loss_fn(dense, pools, tokens, plan):
        return mapped(dense, pools, tokens, *plan)

    return loss_fn


def make_train_step(mesh: Mesh, spec: Spec, tx: optax.GradientTransformation):
    """A jitted ``step(state, tokens, plan) -> (state, scalars)``.

    ``state = {"dense", "pools", "opt"}``; the optimizer state of the pools is
    elementwise and stays sharded with them. ``scalars`` holds ``loss``,
    ``load (L, D, E)`` and ``dropped (L, D)``. Plans are int32 arguments:
    a new plan reuses the compiled step.
    """
    loss_fn = make_loss_fn(mesh, spec)

    def step(state, tokens, plan):
        def objective(params):
            return loss_fn(params["dense"], params["pools"], tokens, plan)

        params = {"dense": state["dense"], "pools": state["pools"]}
        (loss, stats), grads = jax.value_and_grad(objective, has_aux=True)(params)
        updates, opt = tx.update(grads, state["opt"], params)
        params = optax.apply_updates(params, updates)
        return {**params, "opt": opt}, {"loss": loss, **stats}

    jitted = jax.jit(step, donate_argnums=0)

    def run(state, tokens, plan):
        with jax.set_mesh(mesh):
            return jitted(state, tokens, plan)

    run.jitted = jitted
    return run


def put_plan(mesh: Mesh, plan: plans_lib.PlanArrays, axis: str = "x") -> tuple:
    """Device-puts a plan with the shardings the step expects."""
    ps = pool_specs(axis)
    specs = (ps["route"], ps["route"], ps["send"], ps["gather"])
    return tuple(
        jax.device_put(np.asarray(a, np.int32), NamedSharding(mesh, s))
        for a, s in zip(plan, specs)
    )


def experts_to_pools(experts: np.ndarray, pool_expert: np.ndarray) -> np.ndarray:
    """Lays out ``(L, E, ...)`` expert-ordered arrays as pools ``(L, D, S, ...)``."""
    experts = np.asarray(experts)
    out = np.zeros((*pool_expert.shape, *experts.shape[2:]), experts.dtype)
    for (layer, d, s), e in np.ndenumerate(pool_expert):
        if e >= 0:
            out[layer, d, s] = experts[layer, e]
    return out


def pools_to_experts(pools: np.ndarray, pool_expert: np.ndarray) -> np.ndarray:
    """Inverse of :func:`experts_to_pools`: ``(L, D, S, ...) -> (L, E, ...)``."""
    pools = np.asarray(pools)
    layers = pool_expert.shape[0]
    experts = int(pool_expert.max()) + 1
    out = np.zeros((layers, experts, *pools.shape[3:]), pools.dtype)
    for (layer, d, s), e in np.ndenumerate(pool_expert):
        if e >= 0:
            out[layer, e] = pools[layer, d, s]
    return out


def put_state(mesh: Mesh, state: dict[str, Any], axis: str = "x") -> dict[str, Any]:
    """Copies ``{"dense", "pools", "opt"}`` to the mesh; pool-shaped leaves sharded."""
    pool_ndim = np.ndim(state["pools"])
    pool_shape = np.shape(state["pools"])

    def put(x):
        x = np.asarray(x)
        spec = (
            jax.P(None, axis)
            if np.shape(x) == pool_shape and pool_ndim == 4
            else jax.P()
        )
        return jax.device_put(x, NamedSharding(mesh, spec))

    return jax.tree.map(put, state)


def reshard_state(state: dict[str, Any], index: jax.Array) -> dict[str, Any]:
    """Moves pools and their optimizer state to a new sharding (jit-friendly).

    Args:
      state: ``{"dense", "pools", "opt"}``.
      index: (L, D, S) int32 from :func:`plans.reshard_index`.

    Returns:
      The state with every pool-shaped leaf permuted; empty slots are zero.
    """
    pool_shape = state["pools"].shape
    layers, devices, slots, _ = pool_shape

    def move(x):
        if x.shape != pool_shape:
            return x
        flat = x.reshape(layers, devices * slots, -1)
        picked = jnp.take_along_axis(
            flat, jnp.maximum(index, 0).reshape(layers, -1, 1), axis=1
        )
        picked = jnp.where(index.reshape(layers, -1, 1) >= 0, picked, 0.0)
        return picked.reshape(pool_shape)

    return jax.tree.map(move, state)


def make_reshard(state: dict[str, Any]):
    """A jitted :func:`reshard_state` that keeps every leaf's sharding.

    Keeping the shardings lets the compiled train step run on the moved state
    without recompiling.
    """
    shardings = jax.tree.map(lambda x: x.sharding, state)
    return jax.jit(reshard_state, out_shardings=shardings, donate_argnums=0)
