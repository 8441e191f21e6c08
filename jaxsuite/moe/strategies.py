"""EP, FSDP, FasterMoE-style and FSSDP MoE training steps in ``jax.shard_map``.

All strategies keep expert parameters and their optimizer state sharded by
expert in one pool per device that spans all layers: ``pools (D, S, P)``
sharded over the device axis, one owner per (layer, expert) (see
:mod:`jaxsuite.moe.sharding`). A layer reads its ``K`` local compute slots
from the pool through an int32 table, so a device may own 0..K experts of
one layer. The strategies differ only in how a layer's experts meet its
tokens:

* ``ep``: tokens go to the owner (``all_to_all``); parameters never move.
* ``fsdp``: every device gathers every expert (``all_gather``, transpose =
  reduce-scatter) and computes its own tokens.
* ``fastermoe`` and ``fssdp``: ``m`` replica slots per device are filled by
  SparseAllGather from a host plan (hot experts on every device for
  FasterMoE; Algorithm 1 for FSSDP); a device splits its tokens of an
  expert evenly over its local replicas, else its node's, else all of them
  (section 4.4); the transpose sums replica gradients onto the owners
  (SparseReduceScatter).

Tokens move by a fixed-slot ``all_to_all`` (every slot, full or not) or,
with ``exchange="ragged"``, by ``ragged_all_to_all`` of the kept rows only
(:mod:`jaxsuite.moe.ragged`; GPU/TPU, as XLA:CPU lacks it).

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

from jaxsuite.core import optim
from jaxsuite.moe import collectives, model, ragged
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
    layer_slots: int
    mat_slots: int
    aux_weight: float = 0.01
    remat: bool = False
    axis: str = "x"
    exchange: str = "slots"  # "slots", "ragged" (GPU/TPU) or "ragged_emulated"


def pool_specs(axis: str = "x") -> dict[str, jax.P]:
    """Partition specs of the step's arguments."""
    return {
        "dense": jax.P(),
        "pools": jax.P(axis),
        "tokens": jax.P(axis),
        "local": jax.P(None, axis),
        "route": jax.P(None, axis),
        "pack": jax.P(None, axis),
        "compact": jax.P(),
        "pick": jax.P(None, axis),
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


def _local_weights(pool: jax.Array, local: jax.Array) -> jax.Array:
    """A layer's local compute slots ``(K, P)`` read from the pool ``(S, P)``.

    ``local (K,)`` holds pool slots or -1 (a zero row). The transpose adds
    each slot's gradient back into its pool slot.
    """
    return jnp.where((local >= 0)[:, None], pool[jnp.maximum(local, 0)], 0.0)


def _exchange(q, r_dev, r_slot, n_slots, fn, axis):
    """Sends expert queues to their compute slots, applies ``fn``, returns.

    Queue position ``p`` of expert ``e`` goes to its chosen replica
    ``p mod n_e`` (``n_e`` = chosen replicas): an even split of the kept
    tokens, which fill positions ``0 .. count - 1``.

    Args:
      q: (E, cap, h) this device's expert queues.
      r_dev, r_slot: (E, R) chosen replicas of each queue, -1 padded.
      n_slots: compute slots per device.
      fn: (n_slots, D cap, h) -> same, the slot-wise expert compute.

    Returns:
      (E, cap, h) expert outputs in queue order.
    """
    num_devices = jax.lax.axis_size(axis)
    _, cap, h = q.shape
    n = jnp.maximum(jnp.sum(r_dev >= 0, axis=1, keepdims=True), 1)  # (E, 1)
    pos = jnp.arange(cap)[None, :]
    pick = pos % n  # (E, cap)
    idx = jnp.take_along_axis(r_dev, pick, 1) * n_slots
    idx = idx + jnp.take_along_axis(r_slot, pick, 1)  # (E, cap)
    send = jnp.zeros((num_devices * n_slots, cap, h), q.dtype).at[idx, pos].set(q)
    send = send.reshape(num_devices, n_slots, cap, h)
    recv = jax.lax.all_to_all(send, axis, 0, 0, tiled=True)  # (D_src, n, cap, h)
    rows = recv.transpose(1, 0, 2, 3).reshape(n_slots, num_devices * cap, h)
    out = fn(rows).reshape(n_slots, num_devices, cap, h).transpose(1, 0, 2, 3)
    back = jax.lax.all_to_all(out, axis, 0, 0, tiled=True)  # (D_dst, n, cap, h)
    return back.reshape(num_devices * n_slots, cap, h)[idx, pos]


_A2A = {
    "ragged": jax.lax.ragged_all_to_all,
    "ragged_emulated": ragged.emulated_ragged_all_to_all,
}


def _kept(g: gating_lib.Gating, num_experts: int) -> jax.Array:
    """(E,) kept assignments per expert: they fill queue positions 0 .. c - 1."""
    return jnp.zeros(num_experts, jnp.int32).at[g.expert].add(g.keep.astype(jnp.int32))


def _expert_computes(spec: Spec) -> tuple[Any, Any, Any]:
    """The expert compute of each exchange, inside ``shard_map`` on one device.

    Returns ``(compute, compute_ragged, fsdp_compute)`` (under
    ``jax.checkpoint`` saving only ``HIDDEN_NAME`` when ``spec.remat``):

    * ``compute(pool, local, send, rows)``: the layer's ``n_slots`` local
      compute slots (the pool's own experts, then for every strategy but EP
      the SparseAllGather ``send`` of ``(pack, compact, pick)``) applied to
      ``rows (n_slots, D cap, h)``;
    * ``compute_ragged(pool, local, send, rows, slot)``: the same on ragged
      ``rows (R, h)`` of compute slots ``slot (R,)``;
    * ``fsdp_compute(pool, local, gather_slot, q)``: every expert gathered
      from all devices, applied to this device's queues ``q (E, cap, h)``.
    """
    axis = spec.axis

    def weights(pool, loc, send_l):
        w = _local_weights(pool, loc)
        if spec.strategy != "ep":
            mat = collectives.sparse_all_gather(w, *send_l, axis)
            w = jnp.concatenate([w, mat], axis=0)
        return w

    def compute(pool, loc, send_l, rows):
        return _ffn(weights(pool, loc, send_l), rows, spec)

    def compute_ragged(pool, loc, send_l, rows, slot):
        w = weights(pool, loc, send_l)
        return ragged.ragged_ffn(w, rows, slot, spec.hidden, spec.ffn)

    def fsdp_compute(pool, loc, gslot, q):
        w = _local_weights(pool, loc)
        w = collectives.all_gather_pools(w, axis)[gslot]
        return _ffn(w, q, spec)

    policy = jax.checkpoint_policies.save_only_these_names(HIDDEN_NAME)
    if spec.remat:
        compute = jax.checkpoint(compute, policy=policy)
        compute_ragged = jax.checkpoint(compute_ragged, policy=policy)
        fsdp_compute = jax.checkpoint(fsdp_compute, policy=policy)
    return compute, compute_ragged, fsdp_compute


def _make_moe_fn(spec: Spec, dense: Any, pools: jax.Array, plan: tuple) -> Any:
    """``moe_fn(layer, x) -> (y, gating)``: one MoE layer on one device.

    Inside ``shard_map``: ``pools (1, S, P)`` and ``plan`` (``local_slot,
    route_dev, route_slot, pack, compact, pick, gather_slot``) are this
    device's blocks; ``x (tokens, h)`` is routed by top-2 gating, its expert
    queues meet their experts as ``spec.strategy`` and ``spec.exchange``
    say, and ``y`` is the combined output.
    """
    local, r_dev, r_slot, pack, compact, pick, gslot = plan
    compute, compute_ragged, fsdp_compute = _expert_computes(spec)
    axis = spec.axis

    def moe_fn(layer, x):
        g = gating_lib.top2_gating(x @ dense["router"][layer], spec.cap)
        q = model.dispatch(x, g, spec.experts, spec.cap)
        pool, loc = pools[0], local[layer, 0]
        if spec.strategy == "fsdp":
            out = fsdp_compute(pool, loc, gslot[layer], q)
        else:
            n_slots = spec.layer_slots
            n_slots += 0 if spec.strategy == "ep" else spec.mat_slots
            send_l = (pack[layer, 0], compact[layer], pick[layer, 0])
            if spec.exchange == "slots":
                out = _exchange(
                    q,
                    r_dev[layer, 0],
                    r_slot[layer, 0],
                    n_slots,
                    lambda rows, p=pool, c=loc, s=send_l: compute(p, c, s, rows),
                    axis,
                )
            else:
                out = ragged.ragged_exchange(
                    q,
                    _kept(g, spec.experts),
                    r_dev[layer, 0],
                    r_slot[layer, 0],
                    n_slots,
                    lambda rows, slot, p=pool, c=loc, s=send_l: compute_ragged(
                        p, c, s, rows, slot
                    ),
                    axis,
                    _A2A[spec.exchange],
                )
        return model.combine(g, out, spec.cap), g

    return moe_fn


def make_loss_fn(mesh: Mesh, spec: Spec):
    """The strategy's loss ``(dense, pools, tokens, plan) -> (loss, stats)``.

    ``plan`` is ``(local_slot, route_dev, route_slot, pack, compact, pick,
    gather_slot)`` as in :class:`plans.PlanArrays`; the shapes of ``pack``
    and ``compact`` (the SparseAllGather bucket) are static, their values
    are data. ``stats`` holds
    ``load (L, D, E)`` (tokens per expert and source device before
    capacity) and ``dropped (L, D)``.
    """
    if spec.strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {spec.strategy!r}; one of {STRATEGIES}")
    if spec.exchange not in ("slots", *_A2A):
        raise ValueError(f"unknown exchange {spec.exchange!r}")
    axis = spec.axis
    ps = pool_specs(axis)

    def body(dense, pools, tokens, *plan):
        moe_fn = _make_moe_fn(spec, dense, pools, plan)
        ce, count, aux, gatings = model.forward(dense, tokens, moe_fn, heads=spec.heads)
        num_devices = jax.lax.axis_size(axis)
        loss = jax.lax.psum(ce, axis) / jax.lax.psum(count, axis)
        loss = loss + spec.aux_weight * jax.lax.psum(aux, axis) / num_devices
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
            ps["local"],
            ps["route"],
            ps["route"],
            ps["pack"],
            ps["compact"],
            ps["pick"],
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
        updates, opt = optim.update(tx, grads, state["opt"], params)
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
    specs = (ps["local"], ps["route"], ps["route"], ps["pack"], ps["compact"])
    specs += (ps["pick"], ps["gather"])
    return tuple(
        jax.device_put(np.asarray(a, np.int32), NamedSharding(mesh, s))
        for a, s in zip(plan, specs)
    )


def _is_pool(path) -> bool:
    """Whether a state leaf's tree path runs through a ``"pools"`` entry."""
    return any(getattr(k, "key", None) == "pools" for k in path)


def put_state(mesh: Mesh, state: dict[str, Any], axis: str = "x") -> dict[str, Any]:
    """Copies ``{"dense", "pools", "opt"}`` to the mesh; pool leaves sharded.

    Leaves under a ``"pools"`` key (the pools and their optimizer state,
    ``(D, S, P)``) are sharded over the devices; the rest is replicated.
    """

    def put(path, x):
        spec = jax.P(axis) if _is_pool(path) else jax.P()
        return jax.device_put(np.asarray(x), NamedSharding(mesh, spec))

    return jax.tree_util.tree_map_with_path(put, state)


def reshard_state(state: dict[str, Any], index: jax.Array) -> dict[str, Any]:
    """Moves pools and their optimizer state to a new sharding (jit-friendly).

    Args:
      state: ``{"dense", "pools", "opt"}``.
      index: (D, S) int32 from :func:`sharding.reshard_index`.

    Returns:
      The state with every pool leaf permuted; empty slots are zero.
    """

    def move(path, x):
        if not _is_pool(path):
            return x
        devices, slots = x.shape[:2]
        flat = x.reshape(devices * slots, *x.shape[2:])
        valid = (index >= 0).reshape(devices, slots, *([1] * (x.ndim - 2)))
        return jnp.where(valid, flat[jnp.maximum(index, 0)], 0.0)

    return jax.tree_util.tree_map_with_path(move, state)


def make_reshard(state: dict[str, Any]):
    """A jitted :func:`reshard_state` that keeps every leaf's sharding.

    Keeping the shardings lets the compiled train step run on the moved state
    without recompiling.
    """
    shardings = jax.tree.map(lambda x: x.sharding, state)
    return jax.jit(reshard_state, out_shardings=shardings, donate_argnums=0)
