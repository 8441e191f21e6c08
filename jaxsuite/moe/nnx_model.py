"""The MoE model as Flax NNX modules whose state is the strategies' pytree.

* :class:`MoEModel` holds the dense parameters and the experts ``(L, E, P)``
  as ``nnx.Param``; calling it gives the single-device dense reference loss
  (:func:`jaxsuite.moe.model.reference_loss`).
* :class:`ShardedMoE` holds the same dense parameters and the expert pools
  ``(D, S, P)`` of a sharding (see :mod:`jaxsuite.moe.sharding`). Its
  ``nnx.Param`` state, as a pure dict, is exactly ``{"dense", "pools"}``: the
  parameters every ``jax.shard_map`` strategy trains (:func:`params`), and
  :func:`load_params` writes trained ones back with ``nnx.update``.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from flax import nnx

from jaxsuite.moe import model, sharding


def _params(tree: dict[str, Any]) -> dict[str, nnx.Param]:
    return nnx.data({k: nnx.Param(v) for k, v in tree.items()})


class MoEModel(nnx.Module):
    """Dense parameters and experts ``(L, E, P)``; ``__call__`` is the reference.

    Args:
      vocab, hidden, ffn, layers, experts: model shape (``ffn = 2 hidden``
        in the paper's models).
      rngs: draws the initial parameters (``rngs.params()``).
      key: alternatively, the key :func:`jaxsuite.moe.model.init_params`
        draws from (the experiment's ``PRNGKey(seed)``).
    """

    def __init__(
        self,
        *,
        vocab: int,
        hidden: int,
        ffn: int,
        layers: int,
        experts: int,
        rngs: nnx.Rngs | None = None,
        key: jax.Array | None = None,
    ):
        if (rngs is None) == (key is None):
            raise ValueError("MoEModel needs exactly one of rngs and key.")
        dense, weights = model.init_params(
            rngs.params() if key is None else key,
            vocab=vocab,
            hidden=hidden,
            ffn=ffn,
            layers=layers,
            experts=experts,
        )
        self.dense = _params(dense)
        self.experts = nnx.Param(weights)
        self.hidden, self.ffn = hidden, ffn

    def __call__(
        self,
        tokens: jax.Array,
        *,
        groups: int,
        cap: int,
        heads: int,
        aux_weight: float,
    ) -> tuple[jax.Array, dict[str, Any]]:
        """Reference loss of ``tokens (groups * B, T)``; see ``reference_loss``."""
        return model.reference_loss(
            {k: v[...] for k, v in self.dense.items()},
            self.experts[...],
            tokens,
            groups=groups,
            cap=cap,
            heads=heads,
            hidden=self.hidden,
            ffn=self.ffn,
            aux_weight=aux_weight,
        )

    def shard(self, pool_id: np.ndarray) -> ShardedMoE:
        """The same parameters with experts laid out as pools of ``pool_id (D, S)``."""
        dense = {k: np.asarray(v[...]) for k, v in self.dense.items()}
        pools = sharding.experts_to_pools(np.asarray(self.experts[...]), pool_id)
        return ShardedMoE(dense, pools)


class ShardedMoE(nnx.Module):
    """Dense parameters and expert pools ``(D, S, P)``, as the strategies hold them."""

    def __init__(self, dense: dict[str, Any], pools: Any):
        self.dense = _params(dense)
        self.pools = nnx.Param(pools)

    def unshard(self, pool_id: np.ndarray, layers: int) -> np.ndarray:
        """Experts ``(L, E, P)`` gathered back from the pools of ``pool_id``."""
        return sharding.pools_to_experts(np.asarray(self.pools[...]), pool_id, layers)


def params(module: ShardedMoE) -> dict[str, Any]:
    """``{"dense": {...}, "pools": (D, S, P)}``: the module's ``nnx.Param`` state."""
    return nnx.to_pure_dict(nnx.state(module, nnx.Param))


def load_params(module: ShardedMoE, new: dict[str, Any]) -> None:
    """Writes ``{"dense", "pools"}`` (e.g. after training) into the module."""
    state = nnx.state(module, nnx.Param)
    nnx.replace_by_pure_dict(state, new)
    nnx.update(module, state)
