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
from jaxsuite.core import optim
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
      graphdef: NNX graph definition of the model in training mode (adapter
        dropout on).
      eval_graphdef: the same model in evaluation mode (no dropout).
      base: the frozen parameters (pretrained backbone) and adapter state,
        shared by all nodes.
      keys: names of the tuned leaves (adapters and head), e.g.
        ``"blocks.7.dense.lora_a"``, in ``treedef`` leaf order.
      treedef: tree structure of the tuned ``nnx.State``.
      groups: tuned leaf name -> ``"group{g}"`` or ``"head"``.
      num_groups: number of layer groups (= stages of a sequence).
    """

    graphdef: Any
    eval_graphdef: Any
    base: Any
    keys: tuple[str, ...]
    treedef: Any
    groups: dict[str, str]
    num_groups: int

    def to_state(self, flat: Flat) -> Any:
        """Flat dict of tuned leaves -> the ``nnx.State`` that ``merge`` takes."""
        return jax.tree.unflatten(self.treedef, [flat[k] for k in self.keys])

    def logits(self, flat: Flat, x: jax.Array, base: Any = None) -> jax.Array:
        """Evaluation-mode logits (N, C) of the model with tuned leaves ``flat``.

        Args:
          flat: tuned leaves; x: (N, d) images; base: frozen state (default
            ``self.base``).
        """
        base = self.base if base is None else base
        return nnx.merge(self.eval_graphdef, self.to_state(flat), base)(x)

    def train_logits(
        self, flat: Flat, x: jax.Array, base: Any, key: jax.Array
    ) -> jax.Array:
        """Training-mode logits (N, C): adapter dropout draws from ``key``.

        Every dropout key the adapters hold in ``base`` is replaced by
        ``fold_in(key, i)`` (``i`` the leaf's index), so the masks are a pure
        function of the step's key.
        """
        leaves, treedef = jax.tree_util.tree_flatten_with_path(base)
        values = [
            jax.random.fold_in(key, i) if "dropout_key" in _path_tuple(path) else v
            for i, (path, v) in enumerate(leaves)
        ]
        base = jax.tree.unflatten(treedef, values)
        return nnx.merge(self.graphdef, self.to_state(flat), base)(x)


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
    tuned_filter = model_lib.tuned_filter(adapters)
    model.eval()
    eval_graphdef = nnx.split(model, tuned_filter, ...)[0]
    model.train()
    graphdef, tuned, base = nnx.split(model, tuned_filter, ...)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tuned)
    keys, groups, flat = [], {}, {}
    for path, value in leaves:
        path = _path_tuple(path)
        name = ".".join(str(p) for p in path)
        block = model_lib.block_of(path)
        groups[name] = "head" if block is None else f"group{block_group[block]}"
        keys.append(name)
        flat[name] = value
    frame = Frame(
        graphdef, eval_graphdef, base, tuple(keys), treedef, groups, num_groups
    )
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
    """Static settings shared by every stage of a run (one compiled program).

    A stage ``t`` trains on ``t * slice_rows`` rows for ``steps(t)`` Adam
    steps; arrays are padded to the last stage's size, so every stage, and
    every method, runs the same program with the stage's rows, step count
    and trainable groups as inputs.

    Attributes:
      slice_rows: ``n``, rows of one slice.
      num_slices: ``L``, the last stage.
      epochs: passes over a stage's data.
      batch_size: rows per step (capped at ``slice_rows``).
      learning_rate: Adam's initial learning rate (decays linearly to 0).
    """

    slice_rows: int
    num_slices: int
    epochs: int
    batch_size: int
    learning_rate: float

    @property
    def batch(self) -> int:
        return min(self.batch_size, self.slice_rows)

    def steps(self, stage: int) -> int:
        """Adam steps of stage ``stage``: ``epochs * ceil(stage n / batch)``."""
        return self.epochs * math.ceil(stage * self.slice_rows / self.batch)

    @property
    def max_rows(self) -> int:
        return self.num_slices * self.slice_rows

    @property
    def max_steps(self) -> int:
        return self.steps(self.num_slices)


def batch_schedule(key: jax.Array, spec: StageSpec, stage: int) -> np.ndarray:
    """Row indices of every minibatch of a stage, a pure function of its key.

    Each epoch visits the stage's ``stage * n`` rows in a fresh random order
    (wrapping around to fill the last batch). The order is drawn on the host
    by numpy, seeded with the key's bits, so the compiled program holds no
    random-number code for it.

    Returns:
      ``(max_steps, batch)`` int32 indices; rows past ``spec.steps(stage)``
      are padding (zeros) and never used.
    """
    seed = np.asarray(jax.random.key_data(key), np.uint32).tolist()
    rng = np.random.default_rng(seed)
    n, batch = stage * spec.slice_rows, spec.batch
    spe = math.ceil(n / batch)
    out = np.zeros((spec.max_steps, batch), np.int32)
    for e in range(spec.epochs):
        perm = rng.permutation(n)
        block = np.concatenate([perm, perm])[: spe * batch].reshape(spe, batch)
        out[e * spe : (e + 1) * spe] = block
    return out


def group_mask(frame: Frame, groups: Sequence[str]) -> dict[str, np.ndarray]:
    """Per tuned leaf, whether a stage that trains ``groups`` updates it."""
    wanted = set(groups)
    return {k: np.asarray(frame.groups[k] in wanted) for k in frame.keys}


def make_stage_fn(frame: Frame, spec: StageSpec) -> Callable[..., tuple[Flat, Any]]:
    """One node's stage as a pure function (any stage, any trained groups).

    Adam with a learning rate decaying linearly to 0 over the stage (a fresh
    optimiser per stage, as each stage of the reference code is a new
    training run), cross-entropy weighted by ``w``. Leaves outside the
    stage's groups get zero updates, so they stay bit for bit as they were.

    Returns:
      ``fn(base, flat, x, y, w, idx, key, mask, steps) -> (flat, losses)``:
      ``flat`` the node's tuned leaves, ``x`` (max_rows, d) images, ``y``
      (max_rows,) labels, ``w`` (max_rows,) sample weights (0 for padding and
      removed samples), ``idx`` (max_steps, batch) minibatch rows from
      :func:`batch_schedule`, ``key`` the stage key (adapter dropout uses
      ``fold_in(key, step)``), ``mask`` from :func:`group_mask`, ``steps``
      the stage's step count; ``losses`` (max_steps,) minibatch losses (0
      past ``steps``).
    """
    adam = optax.scale_by_adam()
    lr = spec.learning_rate

    def loss_fn(flat, base, xb, yb, wb, key):
        logits = frame.train_logits(flat, xb, base, key)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, yb)
        return jnp.sum(wb * ce) / jnp.maximum(jnp.sum(wb), 1.0)

    def fn(base, flat, x, y, w, idx, key, mask, steps):
        def body(step, carry):
            flat, opt, losses = carry
            rows = idx[step]
            loss, grads = jax.value_and_grad(loss_fn)(
                flat, base, x[rows], y[rows], w[rows], jax.random.fold_in(key, step)
            )
            grads = jax.tree.map(lambda g, m: jnp.where(m, g, 0.0), grads, mask)
            updates, opt = optim.update(adam, grads, opt)
            rate = lr * (1.0 - step / steps)
            flat = jax.tree.map(lambda p, u: p - rate * u, flat, updates)
            return flat, opt, losses.at[step].set(loss)

        carry = (flat, adam.init(flat), jnp.zeros((spec.max_steps,), jnp.float32))
        flat, _, losses = jax.lax.fori_loop(0, steps, body, carry)
        return flat, losses

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

            def per_device(base, *node_args):
                one = jax.tree.map(lambda a: a[0], node_args)
                out = stage_fn(base, *one)
                return jax.tree.map(lambda a: a[None], out)

            node = P(AXIS)
            self._compiled[cache_key] = jax.jit(
                jax.shard_map(
                    per_device,
                    mesh=self.mesh,
                    in_specs=(P(), *(node,) * 8),
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
        keys: Sequence[jax.Array],
        masks: Sequence[dict[str, np.ndarray]],
        steps: Sequence[int],
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
        jobs = list(
            zip(flats, xs, ys, ws, idxs, keys, masks, np.asarray(steps, np.int32))
        )
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
