"""Frequency encoding: both column layouts against per-column numpy loops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsuite.core.encoding import positional_encoding


def _loop(x: np.ndarray, num_freqs: int, layout: str) -> np.ndarray:
    """The encoding of one point, column by column, in float64."""
    sin = [np.sin(2.0**k * x) for k in range(num_freqs)]
    cos = [np.cos(2.0**k * x) for k in range(num_freqs)]
    if layout == "interleaved":
        blocks = [b for pair in zip(sin, cos) for b in pair]
    else:
        blocks = sin + cos
    return np.concatenate([x, *blocks])


@pytest.mark.parametrize("layout", ["interleaved", "grouped"])
@pytest.mark.parametrize("num_freqs", [0, 1, 4])
def test_matches_column_loop(layout, num_freqs):
    x = jax.random.uniform(jax.random.key(num_freqs), (2, 5, 3), minval=-2, maxval=2)
    encode = jax.jit(positional_encoding, static_argnames=("num_freqs", "layout"))
    got = encode(x, num_freqs=num_freqs, layout=layout)
    assert got.shape == (2, 5, 3 * (1 + 2 * num_freqs)) and got.dtype == x.dtype
    want = np.stack(
        [
            [_loop(np.float64(p), num_freqs, layout) for p in row]
            for row in np.asarray(x)
        ]
    )
    np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=2e-6)


def test_layouts_are_column_permutations_and_keep_the_dtype():
    x = jnp.linspace(-1.0, 1.0, 8, dtype=jnp.bfloat16).reshape(4, 2)
    a = positional_encoding(x, 3)
    b = positional_encoding(x, 3, layout="grouped")
    assert a.dtype == b.dtype == jnp.bfloat16
    # Column c of each layout: (function, octave, coordinate).
    names = lambda order: (
        [("x", 0, d) for d in range(2)]
        + [(f, k, d) for f, k in order for d in range(2)]
    )
    inter = names([(f, k) for k in range(3) for f in ("sin", "cos")])
    grouped = names([(f, k) for f in ("sin", "cos") for k in range(3)])
    perm = [inter.index(n) for n in grouped]
    np.testing.assert_array_equal(np.asarray(a)[:, perm], np.asarray(b))
    with pytest.raises(ValueError, match="layout"):
        positional_encoding(x, 3, layout="nope")
