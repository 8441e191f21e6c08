"""GraphSAGE (mean aggregator) on padded sampling trees, data-parallel over a mesh.

Parameters are a list of per-layer dicts ``{"w_self" [Din, Dout], "w_neigh"
[Din, Dout], "b" [Dout]}``. For fanouts ``(f1, ..., fL)`` the tree levels have
shapes ``[B]``, ``[B, f1]``, ..., ``[B, f1, ..., fL]``; layer ``l`` updates
every level ``k < L - l`` from itself and the masked mean of its children:
``h_k <- act(h_k W_self + mean(h_{k+1}) W_neigh + b)`` (no activation after
the last layer, which leaves logits ``[B, C]``).

The training step runs in ``jax.shard_map`` over a 1-D mesh: each device
computes the loss of its own seeds from its own fetched features, gradients
are averaged over devices and every device applies the same Adam update.

:class:`GraphSAGE` is the network as an ``nnx.Module``; it holds the same
weights and calls :func:`apply_sage`, and converts to and from the parameter
list that the data-parallel step trains.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxsuite.core import optim
from jaxsuite.gnn.sampler import sample_tree

Params = list[dict[str, jax.Array]]


def init_sage(key: jax.Array, dims: Sequence[int]) -> Params:
    """Glorot-uniform weights for layer widths ``dims`` = (D, hidden..., C)."""
    params = []
    for k, (n_in, n_out) in zip(
        jax.random.split(key, len(dims) - 1), zip(dims[:-1], dims[1:])
    ):
        k1, k2 = jax.random.split(k)
        init = jax.nn.initializers.glorot_uniform()
        params.append(
            {
                "w_self": init(k1, (n_in, n_out), jnp.float32),
                "w_neigh": init(k2, (n_in, n_out), jnp.float32),
                "b": jnp.zeros((n_out,), jnp.float32),
            }
        )
    return params


def gather_levels(
    features: jax.Array, positions: Sequence[jax.Array]
) -> list[jax.Array]:
    """Tree levels from the fetched rows: ``features`` [U, D] -> [B, ..., D] each."""
    return [features[p] for p in positions]


def apply_sage(
    params: Params | GraphSAGE,
    levels: Sequence[jax.Array],
    masks: Sequence[jax.Array],
) -> jax.Array:
    """Logits [B, C] of the seeds.

    Args:
      params: from :func:`init_sage`, one entry per layer (L = len(masks)), or
        a :class:`GraphSAGE` (then it is called).
      levels: L + 1 arrays, level k of shape [B, f1, ..., fk, D].
      masks: L bool arrays, mask k of shape [B, f1, ..., f(k+1)].
    """
    if isinstance(params, GraphSAGE):
        return params(levels, masks)
    h = list(levels)
    num_layers = len(params)
    for layer_idx, layer in enumerate(params):
        new = []
        for k in range(num_layers - layer_idx):
            m = masks[k][..., None].astype(h[k + 1].dtype)
            mean = (h[k + 1] * m).sum(axis=-2) / jnp.maximum(m.sum(axis=-2), 1.0)
            out = h[k] @ layer["w_self"] + mean @ layer["w_neigh"]
            out = out + layer["b"].reshape((1,) * (out.ndim - 1) + (-1,))
            new.append(jax.nn.relu(out) if layer_idx < num_layers - 1 else out)
        h = new
    return h[0]


def loss_and_accuracy(
    params: Params,
    features: jax.Array,
    positions: Sequence[jax.Array],
    masks: Sequence[jax.Array],
    labels: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """Mean cross-entropy and accuracy of one device's batch (scalars)."""
    logits = apply_sage(params, gather_levels(features, positions), masks)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    acc = (logits.argmax(-1) == labels).mean()
    return loss, acc


def make_train_step(
    mesh: jax.sharding.Mesh, axis: str, optimizer: optax.GradientTransformation
):
    """A jitted data-parallel step ``(params, opt_state, features, positions,
    masks, labels) -> (params, opt_state, loss, acc)``.

    ``features`` is [n_dev, U, D]; ``positions``/``masks``/``labels`` have a
    leading device axis; ``params`` and ``opt_state`` are replicated.
    """
    spec = jax.P(axis)

    n = mesh.shape[axis]

    def local(params, features, positions, masks, labels):
        squeeze = lambda t: jax.tree.map(lambda a: a[0], t)

        def share(p):
            loss, acc = loss_and_accuracy(
                p, features[0], squeeze(positions), squeeze(masks), labels[0]
            )
            return loss / n, (loss, acc)

        # The parameters are replicated (unvarying over the axis): under
        # shard_map's varying-value checks the transpose of their implicit
        # broadcast sums the gradient over devices, so differentiating each
        # device's share loss / n yields the global mean gradient, replicated.
        (_, (loss, acc)), grads = jax.value_and_grad(share, has_aux=True)(params)
        return grads, jax.lax.pmean(loss, axis), jax.lax.pmean(acc, axis)

    grad_fn = jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(jax.P(), spec, spec, spec, spec),
        out_specs=(jax.P(), jax.P(), jax.P()),
    )

    @jax.jit
    def step(params, opt_state, features, positions, masks, labels):
        grads, loss, acc = grad_fn(params, features, positions, masks, labels)
        updates, opt_state = optim.update(optimizer, grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, acc

    return step


def evaluate(
    params: Params,
    sampler: Any,
    store: Any,
    node_ids: np.ndarray,
    *,
    chunk: int = 512,
    seed: int = 0,
) -> float:
    """Accuracy on ``node_ids`` with sampled trees and features read uncounted.

    Args:
      params: trained parameters.
      sampler: a ``NodeSampler`` (its graph and fanouts are used).
      store: a ``FeatureStore`` (read with ``peek``, so I/O is not counted).
      node_ids: [M] nodes to classify.
      chunk: seeds per forward pass.
      seed: sampling seed.
    """
    fwd = jax.jit(lambda p, lv, mk: apply_sage(p, lv, mk).argmax(-1))
    correct = 0
    for i, start in enumerate(range(0, node_ids.size, chunk)):
        seeds = node_ids[start : start + chunk]
        pad = chunk - seeds.size
        seeds_p = np.concatenate([seeds, np.full(pad, seeds[0])])
        rng = np.random.default_rng(np.random.SeedSequence([seed, 3, i]))
        hops, masks = sample_tree(sampler.graph, seeds_p, sampler.fanouts, rng)
        levels = [store.peek(seeds_p)] + [
            store.peek(h.reshape(-1)).reshape(h.shape + (store.dim,)) for h in hops
        ]
        pred = np.asarray(fwd(params, levels, masks))
        correct += int((pred[: seeds.size] == sampler.graph.labels[seeds]).sum())
    return correct / max(node_ids.size, 1)


class GraphSAGE(nnx.Module):
    """GraphSAGE-mean as an ``nnx.Module``: the layers of :func:`init_sage`, the
    maths of :func:`apply_sage`.

    ``module(levels, masks)`` returns logits ``[B, C]`` exactly as
    :func:`apply_sage` does on :meth:`to_params`; :meth:`load_params` sets the
    weights from a parameter list.

    Args:
      dims: layer widths ``(D, hidden..., C)``.
      rngs: ``nnx.Rngs`` for the Glorot-uniform weights.
    """

    def __init__(self, dims: Sequence[int], *, rngs: nnx.Rngs):
        init = jax.nn.initializers.glorot_uniform()
        self.w_self = nnx.List()
        self.w_neigh = nnx.List()
        self.b = nnx.List()
        for n_in, n_out in zip(dims[:-1], dims[1:]):
            self.w_self.append(nnx.Param(init(rngs.params(), (n_in, n_out))))
            self.w_neigh.append(nnx.Param(init(rngs.params(), (n_in, n_out))))
            self.b.append(nnx.Param(jnp.zeros((n_out,), jnp.float32)))

    def __call__(
        self, levels: Sequence[jax.Array], masks: Sequence[jax.Array]
    ) -> jax.Array:
        """Logits ``[B, C]``; shapes as in :func:`apply_sage`."""
        return apply_sage(self.to_params(), levels, masks)

    def to_params(self) -> Params:
        """The parameter list of :func:`init_sage` / :func:`apply_sage`."""
        return [
            {"w_self": ws[...], "w_neigh": wn[...], "b": b[...]}
            for ws, wn, b in zip(self.w_self, self.w_neigh, self.b)
        ]

    def load_params(self, params: Params) -> GraphSAGE:
        """Sets the weights from a :func:`init_sage` list (in place); returns self."""
        if len(params) != len(self.b):
            raise ValueError(
                f"{len(params)} layers given; the module has {len(self.b)}."
            )
        for layer, ws, wn, b in zip(params, self.w_self, self.w_neigh, self.b):
            ws[...], wn[...], b[...] = layer["w_self"], layer["w_neigh"], layer["b"]
        return self
