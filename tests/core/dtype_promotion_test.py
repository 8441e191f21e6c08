"""The test set-up runs this package under strict dtype promotion."""

import jax
import jax.numpy as jnp
import pytest


def test_implicit_promotion_fails_here():
    with pytest.raises(jax.dtypes.TypePromotionError):
        jnp.arange(3) * 1.5
    # Explicit conversions are what strict promotion asks for.
    assert (jnp.arange(3, dtype=jnp.float32) * 1.5).dtype == jnp.float32


@pytest.mark.standard_dtypes
def test_marker_restores_standard_promotion():
    assert (jnp.arange(3) * 1.5).dtype == jnp.float32
