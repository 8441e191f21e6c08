"""The shared optax update runs under strict dtype promotion, unchanged."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxsuite.core import optim

_SCHEDULE = optax.warmup_cosine_decay_schedule(0.0, 1e-2, 2, 10)


@pytest.mark.parametrize(
    "tx",
    [
        optax.adam(1e-2),
        optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(_SCHEDULE)),
    ],
    ids=["adam", "clipped_adamw_schedule"],
)
def test_update_matches_optax_bitwise_under_strict_promotion(tx):
    params = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.ones(3)}
    grads = jax.tree.map(lambda p: jnp.cos(3.0 * p), params)
    with pytest.raises(jax.dtypes.TypePromotionError):
        tx.update(grads, tx.init(params), params)  # strict here, see conftest
    step = jax.jit(lambda g, s, p: optim.update(tx, g, s, p))
    state, ref_state = tx.init(params), tx.init(params)
    for _ in range(3):
        updates, state = step(grads, state, params)
        with jax.numpy_dtype_promotion("standard"):
            ref, ref_state = jax.jit(tx.update)(grads, ref_state, params)
        for a, b in zip(jax.tree.leaves(updates), jax.tree.leaves(ref)):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
