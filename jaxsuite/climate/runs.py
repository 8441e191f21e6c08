"""Long ensemble integrations that checkpoint, resume and stop on non-finite values.

``run_ensemble`` integrates members in chunks of ``chunk_days`` with one
jitted ``lax.scan`` per chunk (members ``vmap``-ed by the leading axis). After
each chunk it writes the chunk's daily grid streamfunction to
``<dir>/psi_<chunk>.npy`` and an Orbax checkpoint of the PV state, so a
killed run resumes at the last finished chunk and returns the same
trajectory. If any member goes non-finite, it raises ``FloatingPointError``
naming the field, level, member, model day and RK4 step; the checkpoint of
the last good chunk is kept.
"""

from __future__ import annotations

import functools
import glob
import os
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from jaxsuite.climate import qg as qg_lib
from jaxsuite.core import train as train_lib


@functools.lru_cache(maxsize=16)
def _chunk_fn(dt: float, days: int, levels: tuple[int, ...]) -> Callable:
    steps = int(round(qg_lib.DAY / dt))
    lv = np.asarray(levels)

    def observe(m, q):
        psi = qg_lib.psi_from_q(m, q)[..., lv, :, :]
        finite = jnp.all(jnp.isfinite(q.real) & jnp.isfinite(q.imag), axis=(-2, -1))
        return m.sphere.to_grid(psi), finite

    @jax.jit
    def run(model, q):
        q, (psi, finite) = qg_lib.integrate(
            model, q, num_saves=days, steps_per_save=steps, dt=dt, observe=observe
        )
        return q, psi, finite

    return run


def daily_chunk_fn(
    model: qg_lib.QGModel, dt: float, days: int, levels: Sequence[int]
) -> Callable[[jax.Array], tuple[jax.Array, jax.Array, jax.Array]]:
    """Jitted ``q -> (q_end, psi_daily, finite_daily)`` for ``days`` days.

    The compiled function takes the model as an argument, so configurations
    of the same shapes share one compilation.

    Args:
      model: the model.
      dt: step in seconds (must divide a day).
      days: days per call.
      levels: model levels (0, 1, 2 = 200, 500, 800 hPa) of psi to keep.

    Returns:
      A function of q (members, 3, L, L) giving the final q, the daily grid
      psi (days, members, len(levels), nlat, nlon) and per-level finiteness
      flags of q (days, members, 3).
    """
    fn = _chunk_fn(float(dt), int(days), tuple(int(v) for v in levels))
    return lambda q: fn(model, q)


def _split(q: jax.Array) -> dict[str, np.ndarray]:
    q = np.asarray(q)
    return {"re": q.real.copy(), "im": q.imag.copy()}


def run_ensemble(
    model: qg_lib.QGModel,
    q0: jax.Array,
    *,
    days: int,
    directory: str,
    dt: float = 1800.0,
    chunk_days: int = 50,
    levels: Sequence[int] = (1,),
    name: str = "run",
    progress_every: float = 30.0,
) -> np.ndarray:
    """Integrates an ensemble for ``days`` days, resumably; returns daily psi.

    Args:
      model: the model.
      q0: (members, 3, L, L) initial PV.
      days: total days; a multiple of ``chunk_days`` is not required.
      directory: holds the chunks and ``checkpoints/``.
      dt: RK4 step in seconds.
      chunk_days: days per jitted call and per checkpoint.
      levels: psi levels to keep.
      name: for messages.
      progress_every: seconds between progress lines.

    Returns:
      (members, days, len(levels), nlat, nlon) float32 daily grid psi (m^2/s).

    Raises:
      FloatingPointError: the state went non-finite (field and step named).
    """
    os.makedirs(directory, exist_ok=True)
    n_chunks = -(-days // chunk_days)
    ckpt = train_lib.Checkpointer(os.path.join(directory, "checkpoints"), every=1)
    steps_per_day = int(round(qg_lib.DAY / dt))
    try:
        state, done = ckpt.restore_or(_split(q0))
        q = jnp.asarray(state["re"] + 1j * state["im"], q0.dtype)
        fns: dict[int, Callable] = {}
        t0, last = time.perf_counter(), -np.inf
        for c in range(done, n_chunks):
            nd = min(chunk_days, days - c * chunk_days)
            if nd not in fns:
                fns[nd] = daily_chunk_fn(model, dt, nd, levels)
            q_new, psi, finite = fns[nd](q)
            finite = np.asarray(finite)
            if not finite.all() or not np.isfinite(np.asarray(psi)).all():
                bad = np.argwhere(~finite)
                day, member, level = (bad[0] if bad.size else (0, 0, 1)).tolist()
                first_day = c * chunk_days + day + 1
                raise FloatingPointError(
                    f"{name}: non-finite potential vorticity q at "
                    f"{qg_lib.LEVELS_HPA[level]} hPa in member {member} by model "
                    f"day {first_day} (RK4 step {first_day * steps_per_day}); "
                    f"the last good checkpoint (day {c * chunk_days}) is kept "
                    f"in {directory}."
                )
            np.save(
                os.path.join(directory, f"psi_{c:05d}.npy"),
                np.asarray(psi, np.float32).swapaxes(0, 1),
            )
            q = q_new
            ckpt.save(c + 1, _split(q), force=True)
            now = time.perf_counter()
            if now - last > progress_every or c == n_chunks - 1:
                last = now
                rate = (c + 1 - done) * chunk_days * q.shape[0] / (now - t0)
                logging.info(
                    "%s: day %d/%d, %.1f member-days/s",
                    name,
                    min((c + 1) * chunk_days, days),
                    days,
                    rate,
                )
    finally:
        ckpt.close()
    files = sorted(glob.glob(os.path.join(directory, "psi_*.npy")))[:n_chunks]
    return np.concatenate([np.load(f) for f in files], axis=1)
