"""What a compiled step costs: compilations, collective bytes in its HLO, memory.

* :class:`CompileCounter` counts XLA backend compilations (through
  ``jax.monitoring``), to show that new placement plans reuse a program.
* :func:`hlo_collective_bytes` reads the optimised HLO text and sums, per
  collective kind, the bytes each device puts on the wire
  (``all-to-all``: ``(D - 1) / D`` of its operand; ``all-gather``:
  ``(D - 1) / D`` of its result; ``reduce-scatter``: ``(D - 1) / D`` of its
  operand; ``all-reduce``: ``2 (D - 1) / D`` of its operand;
  ``collective-permute``: its operand). These are the bytes the program
  moves, padding included. ``scope`` keeps only the ops whose ``op_name``
  metadata contains it (e.g. ``sparse_all_gather``, which also names the
  transposed ops of the backward pass).
* :func:`memory_bytes` is ``arg + out + temp - alias`` from
  ``compiled.memory_analysis()`` (per device).
"""

from __future__ import annotations

import collections
import re
from typing import Any

import jax

_EVENT = "/jax/core/compile/backend_compile_duration"
_DTYPE_BYTES = {
    "f32": 4,
    "s32": 4,
    "u32": 4,
    "f16": 2,
    "bf16": 2,
    "f64": 8,
    "s64": 8,
    "pred": 1,
    "s8": 1,
    "u8": 1,
}
_KINDS = (
    "all-to-all",
    "all-gather",
    "reduce-scatter",
    "all-reduce",
    "collective-permute",
)
_SHAPE = re.compile(r"\b(f32|s32|u32|f16|bf16|f64|s64|pred|s8|u8)\[([0-9,]*)\]")


class CompileCounter:
    """Context manager counting backend compilations inside its block."""

    def __init__(self):
        self.count = 0

    def _listener(self, event: str, duration: float, **kwargs: Any) -> None:
        del duration, kwargs
        if event == _EVENT:
            self.count += 1

    def __enter__(self) -> CompileCounter:
        jax.monitoring.register_event_duration_secs_listener(self._listener)
        return self

    def __exit__(self, *exc) -> None:
        jax.monitoring.unregister_event_duration_listener(self._listener)


def _shape_bytes(text: str) -> int:
    total = 0
    for dtype, dims in _SHAPE.findall(text):
        n = 1
        for dim in filter(None, dims.split(",")):
            n *= int(dim)
        total += n * _DTYPE_BYTES[dtype]
    return total


def hlo_collective_bytes(
    hlo_text: str, num_devices: int, scope: str | None = None
) -> dict[str, float]:
    """Per-device wire bytes of the collectives in an HLO module's text.

    Args:
      hlo_text: ``compiled.as_text()``.
      num_devices: size of the (single) mesh axis the collectives span.
      scope: count only ops whose metadata ``op_name`` contains it.

    Returns:
      ``{kind: bytes}`` for all-to-all, all-gather, reduce-scatter and
      all-reduce, plus ``"total"``.
    """
    frac = (num_devices - 1) / num_devices
    out: dict[str, float] = collections.defaultdict(float)
    for line in hlo_text.splitlines():
        line = line.strip()
        if "=" not in line:
            continue
        _, rhs = line.split("=", 1)
        match = re.match(
            r"\s*(\(.*?\)|\S+\[[0-9,]*\](?:\{[^}]*\})?)\s+([a-z\-]+)\(", rhs
        )
        if not match:
            continue
        op = match.group(2).removesuffix("-start")
        if op not in _KINDS:
            continue
        if scope is not None and scope not in _op_name(line):
            continue
        result_bytes = _shape_bytes(match.group(1))
        if op == "reduce-scatter":  # the operand is D times the result
            out[op] += frac * num_devices * result_bytes
        elif op == "all-reduce":
            out[op] += 2 * frac * result_bytes
        elif op == "collective-permute":
            out[op] += result_bytes
        else:  # all-to-all: operand = result; all-gather: the result
            out[op] += frac * result_bytes
    result = {k: float(out.get(k, 0.0)) for k in _KINDS}
    result["total"] = sum(result.values())
    return result


def _op_name(line: str) -> str:
    match = re.search(r'op_name="([^"]*)"', line)
    return match.group(1) if match else ""


def memory_bytes(compiled: Any) -> dict[str, float]:
    """Per-device memory of a compiled program from ``memory_analysis()``.

    Returns:
      ``{"argument", "output", "temp", "alias", "total"}`` in bytes, with
      ``total = argument + output + temp - alias``.
    """
    m = compiled.memory_analysis()
    arg = float(m.argument_size_in_bytes)
    out = float(m.output_size_in_bytes)
    temp = float(m.temp_size_in_bytes)
    alias = float(m.alias_size_in_bytes)
    return {
        "argument": arg,
        "output": out,
        "temp": temp,
        "alias": alias,
        "total": arg + out + temp - alias,
    }


def residual_bytes(fn: Any, *args: Any) -> float:
    """Per-device bytes that ``fn``'s forward pass keeps for its backward pass.

    Runs ``jax.vjp(fn, *args)`` and sums, over the arrays the returned VJP
    function holds (the residuals), the size of one device's shard. This is
    the memory that re-materialisation trades for recomputation.
    """
    _, vjp_fn = jax.vjp(fn, *args)
    total = 0.0
    for leaf in jax.tree.leaves(vjp_fn):
        if isinstance(leaf, jax.Array):
            total += leaf.addressable_shards[0].data.nbytes
    return total
