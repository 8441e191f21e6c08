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
