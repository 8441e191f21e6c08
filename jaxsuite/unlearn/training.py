"""Sequential sliced training of one shard's nodes, in parallel across devices.

A *node* is a shard ``s`` and a prefix ``p`` of one of its slice sequences:
the model after stage ``t = len(p)``. Stage ``t`` loads the node
``(s, p[:-1])``, trains the parameters of layer group ``t - 1`` and the head
(S3T; SISA and full training tune every group) on the cumulative slices
``p[0], ..., p[t-1]`` with a fresh Adam, and stores the result as an Orbax
checkpoint ``stages/s{s}/{node_key(p)}``. Sequences that share a prefix share
its nodes, so each distinct prefix is trained and stored once.

Every random draw of a stage (minibatch order) comes from
:func:`stage_key` ``(seed, s, p)``, a key derived from the shard and the
prefix, i.e. from (shard, sequence, stage). A node is therefore a pure
function of (pretrained backbone, shard, prefix, the data of the prefix's
slices), which is what makes deletion by truncation exact: the node a shard
serves after a deletion is bit for bit the model that training from scratch
on the surviving prefix produces.

:class:`NodeRunner` runs a stage's nodes in rounds of one node per device
under ``jax.shard_map`` over a 1-D mesh; with one device the same program
runs on a 1-device mesh, so "train everything" and "retrain one prefix" run
the same per-device computation.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxsuite.core import devices as devices_lib
from jaxsuite.unlearn import ledger
from jaxsuite.unlearn import model as model_lib

Flat = dict[str, jax.Array]
AXIS = "nodes"


def _path_tuple(path: tuple[Any, ...]) -> tuple[Any, ...]:
    out = []
    for entry in path:
        if isinstance(entry, jax.tree_util.DictKey):
            out.append(entry.key)
        elif isinstance(entry, jax.tree_util.SequenceKey):
            out.append(entry.idx)
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class Frame:
    """The frozen part of a downstream model and the layout of its tuned part.

    Attributes:
      graphdef: NNX graph definition of the downstream model.
      base: the frozen parameters (pretrained backbone), shared by all nodes.
      keys: names of the tuned leaves (adapters and head), e.g.
        ``"blocks.7.dense.kernel"``, in ``treedef`` leaf order.
      treedef: tree structure of the tuned ``nnx.State``.
      groups: tuned leaf name -> ``"group{g}"`` or ``"head"``.
      num_groups: number of layer groups (= stages of a sequence).
    """

    graphdef: Any
    base: Any
    keys: tuple[str, ...]
    treedef: Any
    groups: dict[str, str]
    num_groups: int

    def to_state(self, flat: Flat) -> Any:
        """Flat dict of tuned leaves -> the ``nnx.State`` that ``merge`` takes."""
        return jax.tree.unflatten(self.treedef, [flat[k] for k in self.keys])

    def logits(self, flat: Flat, x: jax.Array, base: Any = None) -> jax.Array:
        """Logits (N, C) of the model with tuned leaves ``flat`` on images (N, d)."""
        base = self.base if base is None else base
        return nnx.merge(self.graphdef, self.to_state(flat), base)(x)

    def keys_of(self, group_names: Sequence[str]) -> list[str]:
        wanted = set(group_names)
        return [k for k in self.keys if self.groups[k] in wanted]


def make_frame(
    model: model_lib.Backbone, adapters: model_lib.Adapters, num_groups: int
) -> tuple[Frame, Flat]:
    """Splits a downstream model into its :class:`Frame` and tuned leaves.

    Args:
      model: pretrained backbone with adapters attached and a new head.
      adapters: selects the adapter parameters.
      num_groups: layer groups, top-down (see :func:`model.group_blocks`).

    Returns:
      ``(frame, flat)``: ``flat`` maps tuned leaf names to their arrays.
    """
    depth = len(model.blocks)
    block_group = {
        b: g
        for g in range(num_groups)
        for b in model_lib.group_blocks(depth, num_groups, g)
    }
    graphdef, tuned, base = nnx.split(model, model_lib.tuned_filter(adapters), ...)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tuned)
    keys, groups, flat = [], {}, {}
    for path, value in leaves:
        path = _path_tuple(path)
        name = ".".join(str(p) for p in path)
        block = model_lib.block_of(path)
        groups[name] = "head" if block is None else f"group{block_group[block]}"
        keys.append(name)
        flat[name] = value
    frame = Frame(graphdef, base, tuple(keys), treedef, groups, num_groups)
    return frame, flat


def stage_key(seed: int, shard: int, prefix: Sequence[int]) -> jax.Array:
    """The key of the stage that trains node (``shard``, ``prefix``).

    ``fold_in`` of the run's seed with a stage tag, the shard, then each slice
    of the prefix in order: one key per (shard, sequence, stage), shared by
    sequences whose prefixes agree.
    """
    key = jax.random.fold_in(jax.random.PRNGKey(seed), 1)
    key = jax.random.fold_in(key, int(shard))
    for j in prefix:
        key = jax.random.fold_in(key, int(j))
    return key


def init_key(seed: int, shard: int) -> jax.Array:
    """Key that initialises shard ``shard``'s head and adapters."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), 0), shard)


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """Static settings of a stage's training.

    Attributes:
      groups: tuned groups (``"group{g}"``, ``"head"``).
      num_samples: rows of the stage's data (cumulative slices).
      epochs: passes over the data.
      batch_size: rows per step (capped at ``num_samples``).
      learning_rate: Adam's learning rate.
    """

    groups: tuple[str, ...]
    num_samples: int
    epochs: int
    batch_size: int
    learning_rate: float

    @property
    def batch(self) -> int:
        return min(self.batch_size, self.num_samples)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.num_samples / self.batch)

    @property
    def steps(self) -> int:
        return self.epochs * self.steps_per_epoch


def batch_schedule(key: jax.Array, spec: StageSpec) -> np.ndarray:
    """Row indices of every minibatch of a stage, a pure function of its key.

    Each epoch visits the rows in a fresh random order (wrapping around to
    fill the last batch). The order is drawn on the host by numpy, seeded
    with the key's bits, so the compiled stage holds no random-number code.

    Returns:
      ``(steps, batch)`` int32 indices into the stage's rows.
    """
    seed = np.asarray(jax.random.key_data(key), np.uint32).tolist()
    rng = np.random.default_rng(seed)
    n, batch, spe = spec.num_samples, spec.batch, spec.steps_per_epoch
    rows = []
    for _ in range(spec.epochs):
        perm = rng.permutation(n)
        rows.append(np.concatenate([perm, perm])[: spe * batch].reshape(spe, batch))
    return np.concatenate(rows).astype(np.int32)


def make_stage_fn(frame: Frame, spec: StageSpec) -> Callable[..., tuple[Flat, Any]]:
    """One node's stage as a pure function.

    Returns:
      ``fn(base, flat, x, y, w, idx) -> (flat, losses)``: ``flat`` the node's
      tuned leaves (only ``spec.groups`` change), ``x`` (n, d) images, ``y``
      (n,) labels, ``w`` (n,) sample weights (0 for removed samples), ``idx``
      (steps, batch) the minibatch rows from :func:`batch_schedule`;
      ``losses`` (steps,) the minibatch losses.
    """
    train_keys = frame.keys_of(spec.groups)
    tx = optax.adam(spec.learning_rate)

    def loss_fn(trained, fixed, base, xb, yb, wb):
        logits = frame.logits({**fixed, **trained}, xb, base)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, yb)
        return jnp.sum(wb * ce) / jnp.maximum(jnp.sum(wb), 1.0)

    def fn(base, flat, x, y, w, idx):
        trained = {k: flat[k] for k in train_keys}
        fixed = {k: v for k, v in flat.items() if k not in trained}

        def body(step, carry):
            trained, opt, losses = carry
            rows = idx[step]
            loss, grads = jax.value_and_grad(loss_fn)(
                trained, fixed, base, x[rows], y[rows], w[rows]
            )
            updates, opt = tx.update(grads, opt, trained)
            trained = optax.apply_updates(trained, updates)
            return trained, opt, losses.at[step].set(loss)

        carry = (trained, tx.init(trained), jnp.zeros((spec.steps,), jnp.float32))
        trained, _, losses = jax.lax.fori_loop(0, spec.steps, body, carry)
        return {**fixed, **trained}, losses

    return fn


class NodeRunner:
    """Runs one stage function over many nodes, one node per device per round.

    Args:
      num_devices: devices of the 1-D mesh (the first ``num_devices`` of
        ``jax.devices()``); 1 runs the same ``shard_map`` on one device.
    """

    def __init__(self, num_devices: int):
        if not 1 <= num_devices <= jax.device_count():
            raise ValueError(
                f"num_devices must be in [1, {jax.device_count()}], got {num_devices}"
            )
        self.num_devices = num_devices
        self.mesh = devices_lib.make_mesh(
            (num_devices,), (AXIS,), devices=jax.devices()[:num_devices]
        )
        self._nodes = NamedSharding(self.mesh, P(AXIS))
        self._replicated = NamedSharding(self.mesh, P())
        self._compiled: dict[Any, Callable[..., Any]] = {}

    def _program(self, cache_key: Any, stage_fn: Callable[..., Any]):
        if cache_key not in self._compiled:

            def per_device(base, flat, x, y, w, idx):
                one = jax.tree.map(lambda a: a[0], (flat, x, y, w, idx))
                out = stage_fn(base, *one)
                return jax.tree.map(lambda a: a[None], out)

            node = P(AXIS)
            self._compiled[cache_key] = jax.jit(
                jax.shard_map(
                    per_device,
                    mesh=self.mesh,
                    in_specs=(P(), node, node, node, node, node),
                    out_specs=(node, node),
                    check_vma=False,
                )
            )
        return self._compiled[cache_key]

    def run(
        self,
        cache_key: Any,
        stage_fn: Callable[..., Any],
        base: Any,
        flats: Sequence[Flat],
        xs: Sequence[np.ndarray],
        ys: Sequence[np.ndarray],
        ws: Sequence[np.ndarray],
        idxs: Sequence[np.ndarray],
    ) -> tuple[list[Flat], list[np.ndarray]]:
        """Applies ``stage_fn`` to every node; returns their tuned leaves and losses.

        ``cache_key`` identifies ``stage_fn``: calls with an equal key reuse
        the first call's compiled program, so it must determine the function.
        Nodes go in rounds of ``num_devices``; a short last round is padded
        with copies of its last node, whose results are dropped.
        """
        program = self._program(cache_key, stage_fn)
        out_flats: list[Flat] = []
        out_losses: list[np.ndarray] = []
        d = self.num_devices
        jobs = list(zip(flats, xs, ys, ws, idxs))
        for start in range(0, len(jobs), d):
            chunk = jobs[start : start + d]
            real = len(chunk)
            chunk = chunk + [chunk[-1]] * (d - real)
            stacked = jax.device_put(
                jax.tree.map(lambda *a: np.stack(a), *chunk), self._nodes
            )
            flat, losses = program(jax.device_put(base, self._replicated), *stacked)
            flat, losses = jax.device_get((flat, losses))
            for i in range(real):
                out_flats.append({k: jnp.asarray(v[i]) for k, v in flat.items()})
                out_losses.append(np.asarray(losses[i]))
        return out_flats, out_losses


# ---------------------------------------------------------------------------
# Checkpoints of nodes.


def save_node(
    checkpointer: ocp.StandardCheckpointer,
    run_dir: str,
    shard: int,
    prefix: Sequence[int],
    flat: Flat,
) -> str:
    """Writes node (``shard``, ``prefix``) as an Orbax checkpoint; returns its path."""
    path = ledger.checkpoint_dir(run_dir, shard, prefix)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    checkpointer.save(path, dict(flat), force=True)
    return path


def load_node(run_dir: str, shard: int, prefix: Sequence[int], template: Flat) -> Flat:
    """Reads node (``shard``, ``prefix``) into the structure of ``template``.

    Raises:
      MissingCheckpointError: the checkpoint is absent or unfinished.
    """
    if not ledger.checkpoint_present(run_dir, shard, prefix):
        raise ledger.MissingCheckpointError(
            f"stage checkpoint {ledger.checkpoint_dir(run_dir, shard, prefix)} "
            "is missing or unfinished"
        )
    target = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in template.items()}
    with ocp.StandardCheckpointer() as ckptr:
        restored = ckptr.restore(ledger.checkpoint_dir(run_dir, shard, prefix), target)
    return {k: jnp.asarray(v) for k, v in restored.items()}
