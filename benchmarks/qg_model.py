"""QG model speed: this JAX model vs pyshqg's numpy backend, side by side.

Model days per second for one trajectory and for an ensemble of 8 (vmap),
float64 and float32, both timed in this one process session on the same
machine (pyshqg runs in its own venv through a subprocess, see
``jaxsuite.climate.throughput``). Optionally a 10-year climate run: bounded
energy, and its mean 500 hPa streamfunction against the climatology the
forcing implies (``--climate``).

    python benchmarks/qg_model.py --make_venv  # creates runs/pyshqg-venv
    python benchmarks/qg_model.py  # -> benchmarks/results/qg_model_cpu.json
    python benchmarks/qg_model.py --climate_years=10  # -> blocking_climate.json/png

The --climate check: the shipped forcing came (in pyshqg) from a Roads-type
computation on a reanalysis climatology that is not shipped (its
``initial_q`` field is a single state, not a mean), so the run cannot be
compared with that climatology directly. The check reports (a) bounded
streamfunction amplitude year by year, (b) the Roads forcing recomputed
from the run's states (every 5th day) against the shipped forcing (pattern
correlation and relative RMS): they agree when the run's climate, mean plus
eddy fluxes, is the one the forcing holds stationary, and (c) the mean
500 hPa streamfunction of the first and second halves (stationarity).
"""

from __future__ import annotations

import json
import os
import time

import bench_util
import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from jaxsuite.climate import data, qg, throughput

DEFAULT_VENV = "runs/pyshqg-venv"

_MAKE_VENV = flags.DEFINE_bool("make_venv", False, "Create the pyshqg venv and exit.")
_PYSHQG_PYTHON = flags.DEFINE_string(
    "pyshqg_python",
    os.path.join(DEFAULT_VENV, "bin", "python"),
    "Python of the pyshqg venv; pyshqg is timed if it exists.",
)
_DAYS = flags.DEFINE_integer("days", 4, "Model days timed per measurement.")
_OUT = flags.DEFINE_string(
    "out", "benchmarks/results/qg_model_cpu.json", "JSON of the speed run."
)
_CLIMATE_YEARS = flags.DEFINE_float(
    "climate_years", 0.0, "Years of the climate run (0: the speed run instead)."
)
_OUT_CLIMATE = flags.DEFINE_string(
    "out_climate",
    "benchmarks/results/blocking_climate.json",
    "JSON of the climate run.",
)
_FIGURE = flags.DEFINE_string(
    "figure", "benchmarks/results/blocking_climate.png", "Climate run's figure."
)
_WORKDIR = flags.DEFINE_string(
    "workdir", "runs/qg_benchmark", "Where the climate run keeps its states."
)


def speed(days: int, pyshqg_python: str) -> dict:
    """Model days per second of the JAX model (and pyshqg's, if present)."""
    rows = []
    ref = data.load_pyshqg_reference()["q"]
    for dtype in ("float64", "float32"):
        x64 = dtype == "float64"
        with jax.enable_x64(x64):
            model = data.default_model(dtype=np.float64 if x64 else np.float32)
            cdt = jnp.complex128 if x64 else jnp.complex64
            q8 = jnp.asarray(ref, cdt)
            single = throughput.measure_jax(model, q8[0], days=days)
            ens = throughput.measure_jax(model, q8, days=max(1, days // 2))
        row = {
            "dtype": dtype,
            "jax_single_model_days_per_s": single,
            "jax_ens8_model_days_per_s": ens,
            "jax_ens8_member_days_per_s": 8 * ens,
        }
        if pyshqg_python and os.path.exists(pyshqg_python):
            ps = throughput.measure_pyshqg(
                pyshqg_python, members=1, days=days, floatx=dtype
            )
            pe = throughput.measure_pyshqg(
                pyshqg_python, members=8, days=max(1, days // 4), floatx=dtype
            )
            row.update(
                {
                    "pyshqg_single_model_days_per_s": ps,
                    "pyshqg_ens8_model_days_per_s": pe,
                    "pyshqg_ens8_member_days_per_s": 8 * pe,
                    "speedup_single": single / ps,
                    "speedup_ens8": ens / pe,
                }
            )
        rows.append(row)
        print(json.dumps(row), flush=True)
    return {
        "rows": rows,
        "env": bench_util.bench_env(),
        "days_timed": days,
        "targets": {"speedup_single": 3.0, "speedup_ens8": 10.0},
    }


def climate(years: float, workdir: str, figure: str) -> dict:
    """A long float32 run: boundedness, Roads forcing recovery, stationarity."""
    from jaxsuite.climate import plots, runs

    model = data.default_model(dtype=np.float32)
    q0 = jnp.asarray(data.load_pyshqg_reference()["q"][:1], jnp.complex64)
    days = int(round(365 * years))
    directory = os.path.join(workdir, "climate_run")
    t0 = time.perf_counter()
    psi = runs.run_ensemble(
        model,
        q0,
        days=days,
        directory=directory,
        chunk_days=100,
        levels=(0, 1, 2),
        name="climate",
    )[0]  # (days, 3, lat, lon)
    wall = time.perf_counter() - t0
    sph = model.sphere
    rms = np.sqrt((psi.astype(np.float64) ** 2).mean(axis=(1, 2, 3)))
    yearly = rms[: 365 * (days // 365)].reshape(-1, 365).mean(1)
    # Roads forcing from (a subsample of) the run's states, in float64.
    with jax.enable_x64(True):
        m64 = data.default_model()
        sample = psi[::5].astype(np.float64)
        psi_spec = sph.to_spec(jnp.asarray(sample))
        q = qg.q_from_psi(m64, psi_spec)
        roads = np.asarray(sph.to_grid(qg.roads_forcing(m64, q)))
    shipped = data.load_fields()["forcing"]
    corr = [
        float(np.corrcoef(roads[i].ravel(), shipped[i].ravel())[0, 1]) for i in range(3)
    ]
    relrms = [
        float(np.sqrt(np.mean((roads[i] - shipped[i]) ** 2) / np.mean(shipped[i] ** 2)))
        for i in range(3)
    ]
    half = psi.shape[0] // 2
    m1, m2 = psi[:half, 1].mean(0), psi[half:, 1].mean(0)
    eddy = lambda f: f - f.mean(-1, keepdims=True)  # noqa: E731
    stat_corr = float(np.corrcoef(eddy(m1).ravel(), eddy(m2).ravel())[0, 1])
    plots.climatology(
        figure,
        {
            "mean psi500 (years 1-5), 1e6 m2/s": eddy(m1) / 1e6,
            "mean psi500 (years 6-10), 1e6 m2/s": eddy(m2) / 1e6,
            "Roads forcing from the run minus shipped, 500 hPa (1e-11 s-2)": (
                roads[1] - shipped[1]
            )
            / 1e-11,
        },
        sph.lat,
        sph.lon,
    )
    return {
        "years": years,
        "wall_seconds": wall,
        "member_days_per_s": days / wall,
        "finite": bool(np.isfinite(psi).all()),
        "psi_rms_by_year_m2_per_s": yearly.tolist(),
        "psi_rms_max_over_min_year": float(yearly.max() / yearly.min()),
        "roads_vs_shipped_forcing_corr_by_level": corr,
        "roads_vs_shipped_forcing_rel_rms_by_level": relrms,
        "eddy_psi500_first_vs_second_half_corr": stat_corr,
        "env": bench_util.bench_env(),
    }


def main(argv) -> None:
    del argv
    if _MAKE_VENV.value:
        print(throughput.make_pyshqg_venv(DEFAULT_VENV))
        return
    if _CLIMATE_YEARS.value > 0:
        res = climate(_CLIMATE_YEARS.value, _WORKDIR.value, _FIGURE.value)
        path = _OUT_CLIMATE.value
    else:
        res = speed(_DAYS.value, _PYSHQG_PYTHON.value)
        path = _OUT.value
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(res, f, indent=2)
    print(json.dumps({k: v for k, v in res.items() if k != "env"}, indent=1))


if __name__ == "__main__":
    app.run(main)
