"""Stages of the blocking experiment: model runs, cached fits, small helpers.

``experiment.run`` strings these together; they are separate so each can be
called (and tested) on its own.
"""

from __future__ import annotations

import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxsuite.climate import data, learn, qg, runs, throughput
from jaxsuite.core import metrics as metrics_lib


def model_config(c: Any) -> qg.QGConfig:
    """A ``QGConfig`` from a config block with days/km units."""
    return qg.QGConfig(
        tau_ekman=c.tau_ekman_days * qg.DAY,
        rossby_radii=(c.rossby_radius_1_km * 1e3, c.rossby_radius_2_km * 1e3),
        tau_selective=c.tau_selective_s,
        tau_thermal=c.tau_thermal_days * qg.DAY,
        dt=c.dt,
    )


def initial_states(members: int, seed: int, dtype) -> jax.Array:
    """pyshqg reference states (cycled), slightly perturbed per member."""
    ref = data.load_pyshqg_reference()["q"]
    q = np.resize(ref, (members,) + ref.shape[1:])
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=q.shape) + 1j * rng.normal(size=q.shape)
    scale = 1e-3 * np.sqrt(np.mean(np.abs(ref[..., 2:, :]) ** 2))
    q = q + scale * noise * data.default_model().sphere.mask
    q[..., 0] = q[..., 0].real
    cdt = jnp.complex128 if np.dtype(dtype) == np.float64 else jnp.complex64
    return jnp.asarray(q, cdt)


def simulate(c: Any, name: str, workdir: str, seed: int) -> tuple[np.ndarray, float]:
    """Daily Z500 (members, days, nlat, nlon) of one configuration; member-days/s."""
    dtype = np.float64 if c.dtype == "float64" else np.float32
    model = data.default_model(model_config(c), dtype=dtype)
    q0 = initial_states(c.members, seed, dtype)
    t0 = time.perf_counter()
    with jax.enable_x64(dtype == np.float64):
        psi = runs.run_ensemble(
            model,
            q0,
            days=c.spinup_days + c.days,
            directory=os.path.join(workdir, "runs", name),
            dt=c.dt,
            chunk_days=c.chunk_days,
            levels=(1,),
            name=name,
        )
    rate = c.members * (c.spinup_days + c.days) / (time.perf_counter() - t0)
    return data.z500_from_psi(psi[:, c.spinup_days :, 0]), rate


def split_members(ds: dict, test_members: int, members: int):
    test = ds["member"] >= members - test_members
    return np.flatnonzero(~test), np.flatnonzero(test)


def save_params(path: str, model: nnx.Module) -> None:
    leaves = jax.tree.leaves(nnx.state(model))
    np.savez(path, *[np.asarray(v) for v in leaves])


def load_params(path: str, model: nnx.Module) -> nnx.Module:
    graphdef, state = nnx.split(model)
    with np.load(path) as f:
        leaves = [jnp.asarray(f[f"arr_{i}"]) for i in range(len(f.files))]
    state = jax.tree.unflatten(jax.tree.structure(state), leaves)
    return nnx.merge(graphdef, state)


def fit_cached(
    workdir: str, tag: str, make, x, y, xv, yv, *, seed: int, lc: Any, **kw
) -> nnx.Module:
    """``learn.train`` whose result is cached in ``workdir/fits/<tag>.npz``."""
    path = os.path.join(workdir, "fits", f"{tag}.npz")
    model = make()
    if os.path.exists(path):
        return load_params(path, model)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    model, _ = learn.train(
        model, x, y, xv, yv, batch_size=lc.batch_size, seed=seed, **kw
    )
    save_params(path + ".tmp.npz", model)
    os.replace(path + ".tmp.npz", path)
    return model


def padded_logits(fn, x: np.ndarray, batch: int = 1024) -> np.ndarray:
    """Numpy logits in fixed-size (zero-padded) batches: one compilation."""
    out = []
    for i in range(0, len(x), batch):
        chunk = np.asarray(x[i : i + batch], np.float32)
        pad = np.zeros((batch - len(chunk),) + chunk.shape[1:], np.float32)
        out.append(
            np.asarray(fn(jnp.asarray(np.concatenate([chunk, pad]))))[: len(chunk)]
        )
    return np.concatenate(out)


def retained(auc: float, reference_auc: float) -> float | str:
    """Share of the reference's skill above chance, (AUC - 0.5) / (AUC_ref - 0.5)."""
    if reference_auc <= 0.5 + 1e-6:
        return f"not defined: reference AUC {reference_auc:.3f} <= 0.5"
    return (auc - 0.5) / (reference_auc - 0.5)


def metric_or_note(value, unit: str, **extra) -> dict:
    """``metrics_lib.metric`` that passes a string (an undefined value) through."""
    if isinstance(value, str):
        return {"value": value, "unit": unit, **extra}
    return metrics_lib.metric(value, unit, **extra)


def val_split(n: int, frac: float, rng) -> tuple[np.ndarray, np.ndarray]:
    order = rng.permutation(n)
    k = max(2, int(round(frac * n)))
    return order[k:], order[:k]


def side_by_side(config: Any) -> dict[str, float]:
    """This model vs pyshqg, float64, one member and an ensemble of 8, same session."""
    out = {}
    days = config.throughput_days
    with jax.enable_x64(True):
        model = data.default_model()
        q = initial_states(8, 0, np.float64)
        out["jax_single_model_days_per_s"] = throughput.measure_jax(
            model, q[0], days=days
        )
        out["jax_ens8_model_days_per_s"] = throughput.measure_jax(model, q, days=days)
    py = config.pyshqg_python
    out["pyshqg_single_model_days_per_s"] = throughput.measure_pyshqg(
        py, members=1, days=days
    )
    out["pyshqg_ens8_model_days_per_s"] = throughput.measure_pyshqg(
        py, members=8, days=max(1, days // 4)
    )
    out["ratio_single"] = (
        out["jax_single_model_days_per_s"] / out["pyshqg_single_model_days_per_s"]
    )
    out["ratio_ens8"] = (
        out["jax_ens8_model_days_per_s"] / out["pyshqg_ens8_model_days_per_s"]
    )
    return out
