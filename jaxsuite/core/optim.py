"""The one place where training steps apply an optax update.

Every paper's step calls ``optim.update(tx, grads, opt_state, params)`` instead
of ``tx.update(...)``. It computes the same update, with JAX's standard dtype
promotion inside optax only: optax's Adam bias correction (``1 - b**count``) and
its warmup-cosine schedule combine Python floats with the int32 step count,
which ``jax.numpy_dtype_promotion("strict")`` rejects. The tests run paper code
under strict promotion; this keeps the exemption to optax's own arithmetic, so
the model, the loss and the gradients stay checked.
"""

from __future__ import annotations

from typing import Any

import jax
import optax


def update(
    tx: optax.GradientTransformation,
    grads: Any,
    opt_state: Any,
    params: Any = None,
) -> tuple[Any, Any]:
    """``tx.update(grads, opt_state, params)`` under standard dtype promotion.

    Args:
      tx: the optimizer.
      grads: a pytree of gradients, shaped like ``params``.
      opt_state: ``tx``'s state (from ``tx.init(params)``).
      params: the parameters, for transformations that read them (weight
        decay, ``multi_transform`` labels); None when ``tx`` needs none.

    Returns:
      ``(updates, new_opt_state)``: ``updates`` shaped like ``grads``, to add
      with ``optax.apply_updates(params, updates)``.
    """
    with jax.numpy_dtype_promotion("standard"):
        return tx.update(grads, opt_state, params)
