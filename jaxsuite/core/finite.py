"""Stopping a run whose numbers stop being finite.

A loss or gradient norm that turns NaN or infinite poisons every later step
and, once checkpointed, the run's resumption too. The helpers here find the
first such value and raise :class:`NonFiniteError`, naming the step and the
quantity, so the runner can stop before the state is saved:

* :func:`check_scalars`: the scalars a step returned (waits for the device);
* :func:`check_state`: every floating-point leaf of a state, before it is
  checkpointed;
* :class:`FiniteWatch`: records on the device, without waiting, the first
  step at which each scalar went non-finite, for timed loops that must not
  synchronise every step; :meth:`FiniteWatch.check` raises later.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


class NonFiniteError(FloatingPointError):
    """A loss, gradient norm or state value became NaN or infinite.

    Attributes:
      step: the step whose result was not finite.
      quantity: the scalar's name or the state leaf's path.
    """

    def __init__(self, message: str, *, step: int, quantity: str):
        super().__init__(message)
        self.step = step
        self.quantity = quantity


def _is_float(x: Any) -> bool:
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        return isinstance(x, float)
    return jnp.issubdtype(dtype, jnp.inexact)


def _describe(value: np.ndarray) -> str:
    value = np.asarray(value)
    if value.size == 1:
        return repr(float(value.reshape(())))
    bad = int(np.sum(~np.isfinite(value)))
    return f"non-finite in {bad} of {value.size} entries"


def check_scalars(step: int, scalars: Mapping[str, Any], *, where: str = "") -> None:
    """Raises :class:`NonFiniteError` if a floating-point scalar is not finite.

    Args:
      step: the step that produced ``scalars``.
      scalars: name -> number or array (integer and boolean ones are skipped).
      where: what to name in the message (e.g. ``"train loop 'teacher'"``);
        the caller may add more context.
    """
    for name, value in scalars.items():
        if not _is_float(value):
            continue
        host = np.asarray(jax.device_get(value))
        if not np.all(np.isfinite(host)):
            prefix = f"{where}: " if where else ""
            raise NonFiniteError(
                f"{prefix}{name} is {_describe(host)} at step {step}.",
                step=step,
                quantity=name,
            )


@jax.jit
def _finite_flags(leaves: list[jax.Array]) -> list[jax.Array]:
    return [jnp.all(jnp.isfinite(x)) for x in leaves]


def check_state(step: int, state: Any, *, where: str = "") -> None:
    """Raises :class:`NonFiniteError` naming the first non-finite leaf of ``state``.

    Integer, boolean and key leaves are skipped; device arrays are checked on
    the device in one compiled call that brings back one boolean per leaf.
    """
    leaves, _ = jax.tree_util.tree_flatten_with_path(state)
    floats = [(path, leaf) for path, leaf in leaves if _is_float(leaf)]
    # One call per set of devices (arrays on different meshes cannot share one).
    groups: dict[Any, list[int]] = {}
    for i, (_, leaf) in enumerate(floats):
        if isinstance(leaf, jax.Array):
            groups.setdefault(frozenset(leaf.sharding.device_set), []).append(i)
    ok = {}
    for members in groups.values():
        flags = jax.device_get(_finite_flags([floats[i][1] for i in members]))
        ok.update(zip(members, flags))
    for i, (path, leaf) in enumerate(floats):
        if bool(ok[i] if i in ok else np.all(np.isfinite(leaf))):
            continue
        name = "state" + jax.tree_util.keystr(path)
        prefix = f"{where}: " if where else ""
        raise NonFiniteError(
            f"{prefix}{name} is not finite at step {step} "
            f"({_describe(jax.device_get(leaf))}).",
            step=step,
            quantity=name,
        )


@jax.jit
def _update(first, scalars, step):
    out = {}
    for name, value in scalars.items():
        bad = jnp.logical_not(jnp.all(jnp.isfinite(value)))
        prev = first.get(name, jnp.int32(-1))
        out[name] = jnp.where((prev < 0) & bad, step, prev).astype(jnp.int32)
    for name, prev in first.items():
        out.setdefault(name, prev)
    return out


class FiniteWatch:
    """The first step at which each scalar was not finite, kept on the device.

    ``update`` costs one small dispatch and no synchronisation; call
    ``check`` where the loop synchronises anyway (an evaluation, the end).
    """

    def __init__(self, where: str = ""):
        self.where = where
        self._first: dict[str, jax.Array] = {}
        self._values: dict[str, Any] = {}

    def update(self, step: int, scalars: Mapping[str, Any]) -> None:
        floats = {k: v for k, v in scalars.items() if _is_float(v)}
        if floats:
            self._first = _update(self._first, floats, jnp.int32(step))

    def check(self) -> None:
        """Raises :class:`NonFiniteError` for the earliest non-finite scalar."""
        if not self._first:
            return
        first = {k: int(v) for k, v in jax.device_get(self._first).items()}
        bad = {k: s for k, s in first.items() if s >= 0}
        if not bad:
            return
        name = min(bad, key=lambda k: (bad[k], k))
        prefix = f"{self.where}: " if self.where else ""
        raise NonFiniteError(
            f"{prefix}{name} was not finite at step {bad[name]}.",
            step=bad[name],
            quantity=name,
        )
