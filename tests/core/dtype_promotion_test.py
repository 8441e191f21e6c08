"""The test set-up runs this package under strict dtype promotion."""

import pathlib

import jax
import jax.numpy as jnp
import pytest

TESTS = pathlib.Path(__file__).parents[1]


def test_implicit_promotion_fails_here():
    with pytest.raises(jax.dtypes.TypePromotionError):
        jnp.arange(3) * 1.5
    # Explicit conversions are what strict promotion asks for.
    assert (jnp.arange(3, dtype=jnp.float32) * 1.5).dtype == jnp.float32


@pytest.mark.standard_dtypes
def test_marker_restores_standard_promotion():
    assert (jnp.arange(3) * 1.5).dtype == jnp.float32


def test_every_test_package_is_strict(request):
    """A new folder of tests is listed in ``tests/conftest.py`` as strict."""
    conftest = next(
        plugin
        for plugin in request.config.pluginmanager.get_plugins()
        if getattr(plugin, "__file__", None) == str(TESTS / "conftest.py")
    )
    folders = {
        d.name for d in TESTS.iterdir() if d.is_dir() and any(d.glob("*_test.py"))
    }
    assert folders == set(conftest._STRICT_DTYPE_PACKAGES)
