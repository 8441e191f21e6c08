"""The backbone (a Flax NNX residual MLP), its pretraining, and adapter groups.

``Backbone`` maps a flattened image ``(N, d_in)`` to logits ``(N, C)``:
an input projection, ``depth`` residual blocks ``h + gelu(dense(norm(h)))``
and a classification head. It is pretrained on one task (digits 0-4) and
then frozen; S3T fine-tunes parameter-efficient adapters inside the blocks
plus a new head on the downstream task.

Adapters are reached through a small interface, :class:`Adapters`: ``attach``
adds them to a model and ``filter`` selects their parameters. Block ``i``'s
adapter parameters live under the path ``("blocks", i, ...)``, so the
parameters of a *layer group* are selected by :func:`group_filter`. The
blocks are grouped top-down as in S3T: with ``G`` groups of ``k = depth / G``
blocks, group 0 is the top ``k`` blocks, group 1 the ``k`` below, and so on;
stage ``t`` of a sequence trains group ``t - 1`` and the head.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxsuite.core import optim

Filter = Any


class Block(nnx.Module):
    """Pre-norm residual block ``h + gelu(dense(layer_norm(h)))``: (N, W) -> (N, W)."""

    def __init__(self, width: int, *, rngs: nnx.Rngs):
        self.norm = nnx.LayerNorm(width, rngs=rngs)
        self.dense = nnx.Linear(width, width, rngs=rngs)

    def __call__(self, h: jax.Array) -> jax.Array:
        return h + nnx.gelu(self.dense(self.norm(h)))


class Backbone(nnx.Module):
    """Residual MLP classifier: (N, d_in) -> (N, num_classes) logits."""

    def __init__(
        self, d_in: int, width: int, depth: int, num_classes: int, *, rngs: nnx.Rngs
    ):
        self.embed = nnx.Linear(d_in, width, rngs=rngs)
        self.blocks = nnx.List([Block(width, rngs=rngs) for _ in range(depth)])
        self.norm = nnx.LayerNorm(width, rngs=rngs)
        self.head = nnx.Linear(width, num_classes, rngs=rngs)

    def features(self, x: jax.Array) -> jax.Array:
        """(N, d_in) -> (N, W) penultimate features."""
        h = nnx.gelu(self.embed(x))
        for block in self.blocks:
            h = block(h)
        return self.norm(h)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(self.features(x))


class Adapters(Protocol):
    """Parameter-efficient adapters inside the backbone's blocks."""

    name: str

    def attach(self, model: Backbone, rngs: nnx.Rngs) -> None:
        """Adds the adapters to ``model`` in place (identity at initialisation)."""

    def filter(self) -> Filter:
        """An NNX filter selecting every adapter parameter (all groups)."""


class BlockDense:
    """Tunes each block's dense layer itself (no extra parameters).

    The fallback when no low-rank adapter is plugged in: a group's trainable
    parameters are its blocks' dense kernels and biases.
    """

    name = "dense"

    def attach(self, model: Backbone, rngs: nnx.Rngs) -> None:
        del model, rngs

    def filter(self) -> Filter:
        return lambda path, value: (
            isinstance(value, nnx.Param)
            and len(path) > 2
            and path[0] == "blocks"
            and path[2] == "dense"
        )


class LoRAAdapters:
    """Low-rank adapters (``jaxsuite.lora``) on each block's dense layer.

    Every ``blocks.<i>.dense`` becomes ``base(x) + s (dropout(x) A) B`` with
    ``A`` Kaiming-uniform and ``B`` zero (the model starts as the pretrained
    one); ``s = alpha / sqrt(rank)`` with rank-stabilised scaling, as in
    S3T's reference code (``alpha = rank``, dropout 0.1, rsLoRA).

    Args:
      rank: r of each layer's update.
      alpha: scaling numerator (default: ``rank``).
      dropout: dropout rate on the adapter's input.
      use_rslora: scale by ``alpha / sqrt(rank)`` instead of ``alpha / rank``.
    """

    name = "lora"

    def __init__(
        self,
        rank: int,
        alpha: float | None = None,
        dropout: float = 0.0,
        use_rslora: bool = True,
    ):
        self.rank, self.dropout, self.use_rslora = rank, dropout, use_rslora
        self.alpha = float(rank if alpha is None else alpha)

    def attach(self, model: Backbone, rngs: nnx.Rngs) -> None:
        from jaxsuite import lora

        seed = int(jax.random.randint(rngs.params(), (), 0, 2**31 - 1))
        lora.wrap(
            model,
            lora.LoRAConfig(
                target_modules=("dense",),
                rank=self.rank,
                alpha=self.alpha,
                dropout=self.dropout,
                use_rslora=self.use_rslora,
                seed=seed,
            ),
        )

    def filter(self) -> Filter:
        from jaxsuite import lora

        return lora.trainable


def group_blocks(depth: int, num_groups: int, group: int) -> list[int]:
    """Blocks of ``group``, top-down: group 0 holds the top ``depth / G`` blocks.

    Raises:
      ValueError: ``depth`` is not a multiple of ``num_groups``.
    """
    if depth % num_groups:
        raise ValueError(f"depth {depth} does not split into {num_groups} groups")
    k = depth // num_groups
    return [depth - 1 - (group * k + r) for r in range(k)]


def block_of(path: tuple[Any, ...]) -> int | None:
    """Block index of a parameter path, or None outside the blocks."""
    if len(path) > 1 and path[0] == "blocks":
        return int(path[1])
    return None


def is_head(path: tuple[Any, ...]) -> bool:
    return len(path) > 0 and path[0] == "head"


def group_filter(adapters: Adapters, blocks: list[int]) -> Filter:
    """Filter for the adapter parameters of ``blocks`` (one layer group)."""
    inner = nnx.filterlib.to_predicate(adapters.filter())
    members = set(blocks)
    return lambda path, value: inner(path, value) and block_of(path) in members


def tuned_filter(adapters: Adapters) -> Filter:
    """Everything a stage may train: every adapter parameter and the head."""
    inner = nnx.filterlib.to_predicate(adapters.filter())
    return lambda path, value: (
        inner(path, value) or (is_head(path) and isinstance(value, nnx.Param))
    )


def pretrain(
    model: Backbone,
    x: np.ndarray,
    y: np.ndarray,
    *,
    key: jax.Array,
    steps: int,
    batch_size: int,
    learning_rate: float,
    loop: Callable[..., Any],
) -> dict[str, Any]:
    """Trains every parameter of ``model`` with Adam and cross-entropy.

    Args:
      model: the backbone; its parameters are the starting point.
      x: (N, d_in) images; y: (N,) integer labels.
      key: batches come from ``fold_in(key, step)``.
      steps: number of Adam steps.
      batch_size: images per step.
      learning_rate: Adam's learning rate.
      loop: ``core.train.train_loop`` with its keyword arguments bound (it
        checkpoints and resumes); called as ``loop(state, step_fn, num_steps)``.

    Returns:
      The trained parameters as a pure dict (``nnx.to_pure_dict``).
    """
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adam(learning_rate)
    pure = nnx.to_pure_dict(params)
    state = {"params": pure, "opt": tx.init(pure)}
    xs, ys = jnp.asarray(x), jnp.asarray(y)

    def loss_fn(p, xb, yb):
        values = jax.tree.map(lambda v: v, params)  # A fresh State to fill.
        nnx.replace_by_pure_dict(values, p)
        logits = nnx.merge(graphdef, values, rest)(xb)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    @jax.jit
    def step_fn(state, step):
        idx = jax.random.choice(
            jax.random.fold_in(key, step), xs.shape[0], (batch_size,), replace=False
        )
        loss, grads = jax.value_and_grad(loss_fn)(state["params"], xs[idx], ys[idx])
        updates, opt = optim.update(tx, grads, state["opt"], state["params"])
        return {"params": optax.apply_updates(state["params"], updates), "opt": opt}, {
            "pretrain_loss": loss
        }

    def checked(state, step):
        state, scalars = step_fn(state, step)
        if not np.isfinite(float(scalars["pretrain_loss"])):
            raise FloatingPointError(
                f"pretraining loss is not finite at step {step}; the last good "
                "checkpoint is kept"
            )
        return state, scalars

    state = loop(state, checked, steps)
    return state["params"]


def load_params(
    model: Backbone, pure: dict[str, Any], *, skip: tuple[str, ...] = ()
) -> None:
    """Writes a pure dict of parameters (from :func:`pretrain`) into ``model``.

    Top-level entries named in ``skip`` (e.g. ``"head"``) keep their values.
    """
    params = nnx.state(model, nnx.Param)
    current = nnx.to_pure_dict(params)
    merged = {k: (current[k] if k in skip else v) for k, v in pure.items()}
    nnx.replace_by_pure_dict(params, merged)
    nnx.update(model, params)


def accuracy(logits: jax.Array, labels: jax.Array) -> float:
    """Top-1 accuracy of (N, C) logits against (N,) labels."""
    return float(jnp.mean(jnp.argmax(logits, axis=-1) == labels))
