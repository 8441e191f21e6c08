"""Timing and reporting helpers shared by the benchmark scripts (jax + numpy only)."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax


def time_fn(
    fn: Callable[..., Any], args: Sequence[Any], repeats: int
) -> tuple[float, float]:
    """``(seconds of the first call, compile included; median of ``repeats`` more)``."""
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def bench_env() -> dict[str, Any]:
    """The machine a benchmark ran on, with the load it shared the CPU with."""
    devices = jax.devices()
    env = {
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device_kind": devices[0].device_kind,
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
    }
    if hasattr(os, "getloadavg"):
        env["load_avg_1m"] = os.getloadavg()[0]
    return env


def time_stats(
    fn: Callable[..., Any], args: Sequence[Any], repeats: int
) -> dict[str, float]:
    """Timing of ``fn(*args)`` with its spread, in seconds.

    Returns ``first_s`` (the first call, compile included) and, over
    ``repeats`` further calls, ``median_s``, ``min_s``, ``max_s``, ``p10_s``
    and ``p90_s`` (nearest-rank percentiles) and ``repeats``.
    """
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - start
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    times.sort()

    def rank(q: float) -> float:
        return times[min(len(times) - 1, int(q * len(times)))]

    return {
        "first_s": first,
        "median_s": statistics.median(times),
        "min_s": times[0],
        "max_s": times[-1],
        "p10_s": rank(0.1),
        "p90_s": rank(0.9),
        "repeats": len(times),
    }


# Spec-sheet peak HBM bandwidth (bytes/s) by ``device_kind`` prefix: the
# denominator of "fraction of the HBM roofline". Vendor figures, not measured.
PEAK_HBM_BYTES_PER_S = {
    "NVIDIA H200": 4.8e12,
    "NVIDIA H100 80GB HBM3": 3.35e12,
    "NVIDIA H100 PCIe": 2.0e12,
    "NVIDIA A100-SXM4-80GB": 2.039e12,
    "NVIDIA A100-SXM4-40GB": 1.555e12,
}


def peak_hbm_bytes_per_s(device_kind: str | None = None) -> float | None:
    """Spec-sheet HBM bandwidth of a device kind (default: device 0), or None."""
    kind = device_kind or jax.devices()[0].device_kind
    for prefix, peak in PEAK_HBM_BYTES_PER_S.items():
        if kind.startswith(prefix):
            return peak
    return None


def peak_memory_bytes() -> int | None:
    """``peak_bytes_in_use`` of device 0 since start-up (None where unsupported)."""
    stats = jax.devices()[0].memory_stats()
    return None if not stats else stats.get("peak_bytes_in_use")


def compiled_memory_bytes(compiled: Any) -> dict[str, int] | None:
    """A compiled program's ``memory_analysis()`` byte counts, or None.

    ``compiled`` is ``jax.jit(f).lower(*args).compile()``. Returns
    ``temp_bytes``, ``argument_bytes``, ``output_bytes``, ``alias_bytes`` and
    ``generated_code_bytes`` where the backend reports them; None where it
    has no analysis.
    """
    try:
        mem = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - backends without the analysis raise
        return None
    if mem is None:
        return None
    fields = ("temp", "argument", "output", "alias", "generated_code")
    return {
        f"{k}_bytes": int(getattr(mem, f"{k}_size_in_bytes"))
        for k in fields
        if hasattr(mem, f"{k}_size_in_bytes")
    }
