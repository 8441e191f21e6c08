"""Shared base of the kernel tests: implementations x modes against the truth.

Every kernel has one parameterised test over ``(implementation, mode)``:

* ``implementation``: ``'reference'`` (pure jnp), ``'xla'`` where the op has
  one, ``'pallas'`` (the kernel);
* ``mode``: ``'interpret'`` runs on the CPU (the Pallas kernel in the
  interpreter), ``'compiled'`` runs on a CUDA GPU with the kernel compiled.
  Compiled cases carry the ``gpu`` marker and are skipped without a GPU, so
  ``pytest -m gpu tests/kernels`` on a GPU machine checks compiled kernels.

The truth is the op's ``reference`` implementation run on the CPU. Its own
correctness is tested independently in each kernel's test file (closed forms,
scalar transcriptions of the original CUDA code, finite differences), so the
``('reference', 'interpret')`` cell, which would compare the truth with
itself, is left out; ``('reference', 'compiled')`` checks that XLA on the GPU
computes what it computes on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
import pytest

MODES = ("interpret", "compiled")
# cache_key -> the reference's ([output, *cotangents], aux), see
# check_against_reference.
_REFERENCE_CACHE: dict[Any, tuple[list[np.ndarray], Any]] = {}


def cases(implementations: Sequence[str]) -> list:
    """``pytest.param(implementation, mode)`` for every checked cell.

    Use as ``@pytest.mark.parametrize("implementation, mode", cases(...))``.
    """
    params = []
    for impl in implementations:
        for mode in MODES:
            if (impl, mode) == ("reference", "interpret"):
                continue  # the truth itself; tested independently
            marks = [pytest.mark.gpu] if mode == "compiled" else []
            params.append(pytest.param(impl, mode, marks=marks, id=f"{impl}-{mode}"))
    return params


def gpu_available() -> bool:
    """Whether a CUDA device is visible to this process."""
    try:
        return bool(jax.devices("gpu"))
    except RuntimeError:
        return False


def mode_device(mode: str) -> tuple[jax.Device, bool]:
    """``(device, interpret)`` for a mode; skips ``compiled`` without a GPU."""
    if mode == "interpret":
        return jax.devices("cpu")[0], True
    if mode != "compiled":
        raise ValueError(f"unknown mode {mode!r}")
    if not gpu_available():
        pytest.skip("compiled kernels need a CUDA GPU")
    return jax.devices("gpu")[0], False


def _vjp_on(
    device: jax.Device,
    fn: Callable[..., Any],
    args: tuple,
    diff_argnums: tuple[int, ...],
    cotangent_key: jax.Array,
    has_aux: bool,
    **kwargs,
) -> tuple[list[np.ndarray], Any]:
    """``([output, *input cotangents], aux)`` of ``fn(*args, **kwargs)``."""
    with jax.default_device(device), jax.default_matmul_precision("highest"):
        args = jax.device_put(args, device)

        def f(*diff):
            full = list(args)
            for i, a in zip(diff_argnums, diff, strict=True):
                full[i] = a
            return fn(*full, **kwargs)

        def vjp(*diff):
            out, pull, *aux = jax.vjp(f, *diff, has_aux=has_aux)
            ct = jax.random.normal(cotangent_key, out.shape, out.dtype)
            return [out, *pull(ct)], aux[0] if aux else None

        results, aux = jax.jit(vjp)(*(args[i] for i in diff_argnums))
        return [np.asarray(r) for r in results], jax.tree.map(np.asarray, aux)


def check_against_reference(
    fn: Callable[..., Any],
    args: tuple,
    diff_argnums: tuple[int, ...],
    implementation: str,
    mode: str,
    rtol: float | Sequence[float],
    names: Sequence[str] | None = None,
    has_aux: bool = False,
    cache_key: Any = None,
) -> Any:
    """Values and gradients of one cell against the reference on the CPU.

    Args:
      fn: ``fn(*args, implementation=..., interpret=...) -> array``, or
        ``-> (array, aux)`` with ``has_aux``.
      args: inputs (host or device arrays); they are moved to each device.
      diff_argnums: positions of the inputs whose gradients are compared
        (one VJP with a fixed random cotangent).
      implementation: the implementation under test.
      mode: ``'interpret'`` or ``'compiled'`` (see module docstring).
      rtol: tolerance relative to the largest magnitude of each reference
        output (at least 1); one for all outputs or one per output.
      names: labels of ``[output, *gradients]`` for failure messages.
      has_aux: ``fn`` also returns a pytree of non-differentiable outputs
        (counts, flags), which must equal the reference's exactly.
      cache_key: if given, the reference's results are computed once per key
        (for cases that share ``fn``'s inputs and the reference's output).

    Returns:
      The reference's aux pytree (None without ``has_aux``), for further
      checks.
    """
    device, interpret = mode_device(mode)
    key = jax.random.key(1234)
    if cache_key is None or cache_key not in _REFERENCE_CACHE:
        truth = _vjp_on(
            jax.devices("cpu")[0],
            fn,
            args,
            diff_argnums,
            key,
            has_aux,
            implementation="reference",
            interpret=True,
        )
        if cache_key is not None:
            _REFERENCE_CACHE[cache_key] = truth
    else:
        truth = _REFERENCE_CACHE[cache_key]
    want, want_aux = truth
    got, got_aux = _vjp_on(
        device,
        fn,
        args,
        diff_argnums,
        key,
        has_aux,
        implementation=implementation,
        interpret=interpret,
    )
    names = list(names or ["output"] + [f"d arg {i}" for i in diff_argnums])
    rtols = [rtol] * len(want) if np.ndim(rtol) == 0 else list(rtol)
    for name, tol, g, w in zip(names, rtols, got, want, strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype, name
        peak = float(np.abs(w).max())
        assert peak > 0, f"{name}: the reference is all zeros, the case tests nothing"
        atol = tol * max(1.0, peak)
        np.testing.assert_allclose(g, w, rtol=tol, atol=atol, err_msg=name)
    assert jax.tree.structure(got_aux) == jax.tree.structure(want_aux)
    for g, w in zip(jax.tree.leaves(got_aux), jax.tree.leaves(want_aux), strict=True):
        np.testing.assert_array_equal(g, w)
    return want_aux
