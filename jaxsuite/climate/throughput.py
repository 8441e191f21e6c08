"""Model days per second of this QG model and of pyshqg, measured side by side.

``measure_jax`` times ``lax.scan`` RK4 runs (one member, or a ``vmap``-ed
ensemble) after a compile-and-warm-up call. ``measure_pyshqg`` runs pyshqg's
numpy backend in its own venv (``python`` of that venv) through this file
as a script, so both are timed on the same machine in the same session.
``make_pyshqg_venv`` creates that venv with pyshqg's pins.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

PYSHQG_PINS = ("numpy<2", "xarray<2024.11", "pandas<3", "zarr<3", "pyshqg==1.0.1")


def make_pyshqg_venv(path: str) -> str:
    """Makes (if absent) a venv at ``path`` with pyshqg and its pins; returns python."""
    python = os.path.join(path, "bin", "python")
    if not os.path.exists(python):
        subprocess.run([sys.executable, "-m", "venv", path], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", *PYSHQG_PINS], check=True)
    return python


def measure_jax(model, q0, *, days: int, dt: float = 1800.0, repeats: int = 3) -> float:
    """Median model-days per second (per trajectory) of integrating ``q0``.

    Args:
      model: a ``QGModel``.
      q0: (3, L, L) one member or (members, 3, L, L) an ensemble.
      days: days per timed call.
      dt: step in seconds.
      repeats: timed calls after one warm-up call.
    """
    import jax

    from jaxsuite.climate import qg

    steps = int(round(qg.DAY / dt))
    run = jax.jit(
        lambda q: qg.integrate(model, q, num_saves=days, steps_per_save=steps, dt=dt)[0]
    )
    jax.block_until_ready(run(q0))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(run(q0))
        times.append(time.perf_counter() - t)
    times.sort()
    return days / times[len(times) // 2]


def _pyshqg_worker(members: int, days: int, repeats: int, floatx: str) -> None:
    """Runs inside the pyshqg venv; prints model-days/s as JSON."""
    import numpy as np
    from pyshqg.backend.numpy_backend import NumpyBackend
    from pyshqg.core.constructors import construct_integrator, construct_model
    from pyshqg.preprocessing.reference_data import load_test_data

    ds = load_test_data(internal_truncature=21, grid_truncature=31)
    model = construct_model(NumpyBackend(floatx=floatx), ds.config)
    rk4 = construct_integrator(ds.config["rk4_integration"], model)
    q = ds.spec_q.to_numpy().astype(floatx)
    q = q[0] if members == 1 else np.resize(q, (members,) + q.shape[1:])
    state = model.model_state(q)
    steps = 48 * days
    for _ in range(48):  # one warm-up day
        state = rk4.forward(state)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(steps):
            state = rk4.forward(state)
        times.append(time.perf_counter() - t)
    times.sort()
    print(json.dumps({"model_days_per_s": days / times[len(times) // 2]}))


def measure_pyshqg(
    python: str, *, members: int, days: int, repeats: int = 3, floatx: str = "float64"
) -> float:
    """pyshqg's model-days per second (per trajectory), via its venv's python."""
    out = subprocess.run(
        [
            python,
            os.path.abspath(__file__),
            str(members),
            str(days),
            str(repeats),
            floatx,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1])["model_days_per_s"])


if __name__ == "__main__":
    _pyshqg_worker(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
