"""Small models and utilities shared by the adapter tests."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxsuite.lora import adapters
from jaxsuite.lora import transformer as tf

TINY = tf.TransformerConfig(
    vocab=24, d_model=24, n_layers=3, n_heads=2, d_ff=24, max_len=8
)


class Mixed(nnx.Module):
    """One layer of each adaptable kind: Linear, LinearGeneral, Einsum."""

    def __init__(self, rngs: nnx.Rngs):
        self.dense = nnx.Linear(6, 8, rngs=rngs)
        self.general = nnx.LinearGeneral((2, 4), (3, 4), axis=(-2, -1), rngs=rngs)
        self.einsum = nnx.Einsum("btk,kn->btn", (12, 6), (6,), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """(B, T, 6) -> (B, T, 6)."""
        h = self.dense(x).reshape(*x.shape[:2], 2, 4)
        h = self.general(h).reshape(*x.shape[:2], 12)
        return self.einsum(h)


@nnx.jit
def run(model: nnx.Module, x: jax.Array) -> jax.Array:
    """``model(x)``, compiled once instead of op by op."""
    return model(x)


@nnx.jit(static_argnums=0)
def adapter_grads(loss_fn, model: nnx.Module, *args) -> nnx.State:
    """Gradient of ``loss_fn(model, *args)`` with respect to the adapters."""
    return nnx.grad(loss_fn, argnums=nnx.DiffState(0, adapters.AdapterParam))(
        model, *args
    )


def randomize(model: nnx.Module, seed: int = 0, scale: float = 0.2) -> None:
    """Sets every trainable adapter array to Gaussian values (B no longer 0)."""
    state = nnx.state(model, adapters.AdapterParam)
    leaves, treedef = jax.tree.flatten(state)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    new = [scale * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)]
    nnx.update(model, jax.tree.unflatten(treedef, new))


def flat(model: nnx.Module, filter_=...) -> dict[tuple, np.ndarray]:
    """``{path: array}`` of the model's variables matching ``filter_``."""
    return {
        p: np.asarray(v[...]) for p, v in nnx.to_flat_state(nnx.state(model, filter_))
    }


def set_flat(model: nnx.Module, values: dict[tuple, np.ndarray]) -> None:
    state = nnx.state(model)
    for path, var in nnx.to_flat_state(state):
        if path in values:
            var[...] = jnp.asarray(values[path])
    nnx.update(model, state)
