"""Stages of the blocking experiment: model runs, onset data, cached fits, helpers.

``experiment.run`` strings these together (with ``training`` and
``evaluation``); they are separate so each can be called (and tested) on its
own. They take the typed settings of ``settings.from_config``.
"""

from __future__ import annotations

import os
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx

from jaxsuite.climate import blocking, data, learn, qg, runs, throughput
from jaxsuite.climate.settings import ModelSettings, Settings
from jaxsuite.core import metrics as metrics_lib


def model_config(c: ModelSettings) -> qg.QGConfig:
    """A ``QGConfig`` from a model configuration with days/km units."""
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


def simulate(
    c: ModelSettings, name: str, workdir: str, seed: int
) -> tuple[np.ndarray, float]:
    """Daily Z500 (members, days, nlat, nlon) of one configuration; member-days/s.

    The run is checkpointed per chunk under ``workdir/runs/<name>`` and
    resumes from there; the first ``c.spinup_days`` days are dropped.
    """
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


def split_members(
    ds: dict, test_members: int, members: int
) -> tuple[np.ndarray, np.ndarray]:
    """Onset indices ``(pool, test)``: test onsets are those of the last members."""
    test = ds["member"] >= members - test_members
    return np.flatnonzero(~test), np.flatnonzero(test)


class OnsetData(NamedTuple):
    """Labelled onsets of both configurations, scaled and split for the CNN.

    Attributes:
      xs: (n_s, H, W) source Z500 anomalies at onset over ``scale``; H is the
        northern-hemisphere rows cut to a multiple of 8.
      ys: (n_s,) 0/1 persistence labels of the source onsets.
      xt: (n_t, H, W) target anomalies (same scale).
      yt: (n_t,) target labels.
      src_pool, src_test: indices of ``xs`` for training/validation and test.
      tgt_pool, tgt_test: indices of ``xt`` likewise.
      lat_in: (H,) latitudes of the input rows.
      lon: (W,) longitudes of the input columns.
    """

    xs: np.ndarray
    ys: np.ndarray
    xt: np.ndarray
    yt: np.ndarray
    src_pool: np.ndarray
    src_test: np.ndarray
    tgt_pool: np.ndarray
    tgt_test: np.ndarray
    lat_in: np.ndarray
    lon: np.ndarray


def onset_data(
    s: Settings, z_src: np.ndarray, z_tgt: np.ndarray, lat: np.ndarray, lon: np.ndarray
) -> OnsetData:
    """Onsets of both runs, divided by the source's anomaly scale, split by member.

    Args:
      s: the experiment's settings (onset definition, members held out).
      z_src, z_tgt: (members, days, nlat, nlon) daily Z500 of each run.
      lat, lon: (nlat,), (nlon,) grid coordinates.

    Raises:
      ValueError: when a set has fewer than 4 onsets or a single class.
    """
    ds_src = blocking.onset_dataset(z_src, lat, lon, s.onset)
    ds_tgt = blocking.onset_dataset(z_tgt, lat, lon, s.onset)
    scale = float(np.std(z_src - ds_src["climatology"]))
    xs, ys = ds_src["x"] / scale, ds_src["y"]
    xt, yt = ds_tgt["x"] / scale, ds_tgt["y"]
    rows = xs.shape[1]
    height = rows - rows % 8
    src_pool, src_test = split_members(ds_src, s.source.test_members, s.source.members)
    tgt_pool, tgt_test = split_members(ds_tgt, s.target.test_members, s.target.members)
    d = OnsetData(
        xs=xs[:, :height],
        ys=ys,
        xt=xt[:, :height],
        yt=yt,
        src_pool=src_pool,
        src_test=src_test,
        tgt_pool=tgt_pool,
        tgt_test=tgt_test,
        lat_in=lat[lat >= s.onset.input_lat_min][:height],
        lon=lon,
    )
    logging.info(
        "onsets: source %d (p=%.2f), target %d (p=%.2f)",
        len(ys),
        ys.mean() if len(ys) else 0,
        len(yt),
        yt.mean() if len(yt) else 0,
    )
    _check_sets(d)
    return d


def _check_sets(d: OnsetData) -> None:
    """Raises ``ValueError`` for a set with under 4 onsets or a single class."""
    for name, idx, y in (
        ("source", d.src_pool, d.ys),
        ("source test", d.src_test, d.ys),
        ("target", d.tgt_pool, d.yt),
        ("target test", d.tgt_test, d.yt),
    ):
        if len(idx) < 4 or y[idx].min() == y[idx].max():
            raise ValueError(
                f"Too few onsets to learn from in the {name} set ({len(idx)}, "
                f"{int(y[idx].sum()) if len(idx) else 0} persistent): run more days."
            )


def save_params(path: str, model: nnx.Module) -> None:
    """Writes the leaves of ``model``'s state to ``path`` (npz, in tree order)."""
    leaves = jax.tree.leaves(nnx.state(model))
    np.savez(path, *[np.asarray(v) for v in leaves])


def load_params(path: str, model: nnx.Module) -> nnx.Module:
    """``model`` (same architecture) with the state saved by ``save_params``."""
    graphdef, state = nnx.split(model)
    with np.load(path) as f:
        leaves = [jnp.asarray(f[f"arr_{i}"]) for i in range(len(f.files))]
    state = jax.tree.unflatten(jax.tree.structure(state), leaves)
    return nnx.merge(graphdef, state)


def fit_cached(
    workdir: str, tag: str, make, x, y, xv, yv, *, seed: int, batch_size: int, **kw
) -> nnx.Module:
    """``learn.train`` whose result is cached in ``workdir/fits/<tag>.npz``.

    ``make()`` builds the initial model; ``x`` (n, H, W), ``y`` (n,) train and
    ``xv``, ``yv`` validate; ``kw`` goes to ``learn.train``.
    """
    path = os.path.join(workdir, "fits", f"{tag}.npz")
    model = make()
    if os.path.exists(path):
        return load_params(path, model)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    model, _ = learn.train(model, x, y, xv, yv, batch_size=batch_size, seed=seed, **kw)
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
    """Positions ``(train, val)`` of ``range(n)``; val holds ``frac`` (at least 2)."""
    order = rng.permutation(n)
    k = max(2, int(round(frac * n)))
    return order[k:], order[:k]


def side_by_side(python: str, days: int) -> dict[str, float]:
    """This model vs pyshqg, float64, one member and an ensemble of 8, same session.

    ``python`` is the interpreter of pyshqg's venv; ``days`` model days per
    measurement (a quarter for pyshqg's ensemble).
    """
    out = {}
    with jax.enable_x64(True):
        model = data.default_model()
        q = initial_states(8, 0, np.float64)
        out["jax_single_model_days_per_s"] = throughput.measure_jax(
            model, q[0], days=days
        )
        out["jax_ens8_model_days_per_s"] = throughput.measure_jax(model, q, days=days)
    out["pyshqg_single_model_days_per_s"] = throughput.measure_pyshqg(
        python, members=1, days=days
    )
    out["pyshqg_ens8_model_days_per_s"] = throughput.measure_pyshqg(
        python, members=8, days=max(1, days // 4)
    )
    out["ratio_single"] = (
        out["jax_single_model_days_per_s"] / out["pyshqg_single_model_days_per_s"]
    )
    out["ratio_ens8"] = (
        out["jax_ens8_model_days_per_s"] / out["pyshqg_ens8_model_days_per_s"]
    )
    return out
