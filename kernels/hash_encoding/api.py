"""Public entry point: ``hash_encode`` picks the reference or the Pallas kernel.

Defaults. ``implementation=None`` means the Pallas kernel on a GPU backend and
the reference everywhere else: on CPU the kernel can only run in the Pallas
interpreter, which is far slower than XLA's own gather/scatter, and on TPU the
TensorCore has no arbitrary gather (that needs SparseCore), so XLA is the better
choice there. ``interpret=None`` means interpret mode exactly when the backend
is CPU. Both the reference and the kernel are differentiable wrt ``x`` and
``table``.
"""

from __future__ import annotations

import functools
from typing import Literal

import jax

from .pallas import Backward, hash_encode_pallas
from .reference import HashEncodingConfig, hash_encode_reference

Implementation = Literal["reference", "pallas"]


def default_implementation() -> Implementation:
    """'pallas' on a GPU backend, else 'reference'."""
    return "pallas" if jax.default_backend() == "gpu" else "reference"


@functools.partial(
    jax.jit,
    static_argnames=(
        "config",
        "implementation",
        "interpret",
        "deterministic",
        "block_size",
        "num_warps",
        "levels_per_program",
        "backward",
    ),
)
def _hash_encode(
    x,
    table,
    *,
    config,
    implementation,
    interpret,
    deterministic,
    block_size,
    num_warps,
    levels_per_program,
    backward,
):
    if implementation == "reference":
        return hash_encode_reference(x, table, config)
    return hash_encode_pallas(
        x,
        table,
        config,
        block_size=block_size,
        interpret=interpret,
        deterministic=deterministic,
        num_warps=num_warps,
        levels_per_program=levels_per_program,
        backward=backward,
    )


def hash_encode(
    x: jax.Array,
    table: jax.Array,
    *,
    config: HashEncodingConfig,
    implementation: Implementation | None = None,
    interpret: bool | None = None,
    deterministic: bool = True,
    block_size: int = 256,
    num_warps: int = 4,
    levels_per_program: int = 1,
    backward: Backward | None = None,
) -> jax.Array:
    """Multiresolution hash encoding (Instant-NGP / tiny-cuda-nn conventions).

    Args:
      x: ``(N, 3)`` float points, nominally in ``[0, 1]`` (see ``reference.py``
        for the exact conventions).
      table: ``(L, T, F)`` parameters, e.g. from ``init_table(key, config)``.
      config: the grid (``L``, ``F``, ``T``, ``N_min``, growth factor).
      implementation: 'reference' (pure jnp), 'pallas' (the kernel), or None
        for 'pallas' on GPU and 'reference' elsewhere.
      interpret: run the kernel in the Pallas interpreter; None means on CPU.
        Ignored by the reference.
      deterministic: kernel's table gradient by sort + segmented scan (True,
        bitwise reproducible) or by atomic adds (False, faster on GPU); used
        when ``backward`` is None.
      block_size: points per kernel program (a power of 2 on GPU).
      num_warps: Triton warps per kernel program.
      levels_per_program: consecutive levels per kernel program; must divide
        ``L`` (a power of 2 on GPU).
      backward: the kernel's table-gradient method, ``'sort'``, ``'atomic'``,
        ``'split_sort'`` or ``'split_atomic'`` (see ``pallas.py``); None
        follows ``deterministic``.

    Returns:
      ``(N, L * F)`` features in ``table.dtype``; column ``l * F + f`` is
      feature ``f`` of level ``l``.
    """
    want = (config.num_levels, config.hashmap_size, config.features_per_level)
    if table.shape != want:
        raise ValueError(f"table shape {table.shape} != config's {want}")
    if x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(f"x must be (N, 3), got {x.shape}")
    if implementation is None:
        implementation = default_implementation()
    if implementation not in ("reference", "pallas"):
        raise ValueError(f"unknown implementation {implementation!r}")
    if interpret is None:
        interpret = jax.default_backend() == "cpu"
    return _hash_encode(
        x,
        table,
        config=config,
        implementation=implementation,
        interpret=bool(interpret),
        deterministic=bool(deterministic),
        block_size=int(block_size),
        num_warps=int(num_warps),
        levels_per_program=int(levels_per_program),
        backward=backward,
    )
