"""Rebuilds ``jaxsuite/assets/climate/*.npz`` from the pyshqg 1.0.1 wheel (MIT).

pyshqg needs old pins (numpy<2, xarray<2024.11, pandas<3, zarr<3), so it lives
in its own venv. This script runs in two stages:

1. ``dump`` (run by the pyshqg venv's python, numpy + pyshqg only): builds
   pyshqg's T21 model from its shipped T63 data, and writes its processed
   orography and land-sea mask on the 32 x 64 grid, the forcing and the
   first ``--states`` of the 16 published T21 reference states (initial PV,
   streamfunction, tendencies and one 1800 s RK4 step), all synthesised to
   the grid with pyshqg's own transform, to a temporary npz.
2. ``pack`` (this package's venv): turns pyshqg's grid orientation into this
   package's (pyshqg's array rows run from its ``lats`` label -85.76 upward
   and its columns from longitude 180; here rows run north to south from
   column 0 at longitude 0: a row flip and a 32-column roll, with values
   unchanged), analyses the states into this package's spectral layout and
   writes ``qg_t21_fields.npz`` and ``pyshqg_reference_t21.npz``.

Run from the repository root::

    python -m venv /tmp/pyshqg-venv
    /tmp/pyshqg-venv/bin/pip install "numpy<2" "xarray<2024.11" "pandas<3" \\
        "zarr<3" pyshqg==1.0.1
    python -m jaxsuite.climate.pyshqg_assets --pyshqg-python /tmp/pyshqg-venv/bin/python
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

ASSET_DIR = os.path.join(
    os.path.dirname(os.path.dirname(__file__)), "assets", "climate"
)
FIELDS_FILE = "qg_t21_fields.npz"
REFERENCE_FILE = "pyshqg_reference_t21.npz"


def dump(path: str, num_states: int) -> None:
    """Stage 1, inside the pyshqg venv."""
    from pyshqg.backend.numpy_backend import NumpyBackend
    from pyshqg.core.constructors import construct_model
    from pyshqg.preprocessing.reference_data import (
        interpolate_data,
        load_reference_data,
        load_test_data,
    )

    ds = load_test_data(internal_truncature=21, grid_truncature=31)
    config = ds.attrs["config"]
    model = construct_model(NumpyBackend(floatx="float64"), config)
    st = model.spectral_transformations
    data = interpolate_data(
        load_reference_data(**config["reference_data"]),
        lat=st.lats,
        lon=st.lons,
        methods=dict(config["data_interpolation"], initial_q="quintic"),
    )
    sel = slice(0, num_states)
    out = {
        "lats": st.lats,
        "lons": st.lons,
        "orography": data.orography.to_numpy(),
        "land_sea_mask": data.land_sea_mask.to_numpy(),
        "forcing": ds.forcing.to_numpy(),
        "initial_q": data.initial_q.to_numpy(),
    }
    for name in ("spec_q", "spec_psi", "spec_tendencies", "spec_rk4"):
        out[name] = st.spec_to_grid(ds[name].to_numpy()[sel])
    np.savez(path, **out)


def to_package_grid(x: np.ndarray) -> np.ndarray:
    """pyshqg grid arrays (..., 32, 64) -> this package's orientation."""
    return np.roll(np.asarray(x)[..., ::-1, :], x.shape[-1] // 2, axis=-1)


def pack(raw_path: str, out_dir: str) -> None:
    """Stage 2, in this package's venv."""
    import jax

    from jaxsuite.climate import sphere as sphere_lib

    raw = dict(np.load(raw_path))
    lat = raw["lats"][::-1]
    lon = np.roll(raw["lons"], 32)
    sph = sphere_lib.sphere(21, 32, 64)
    if not (np.allclose(lat, sph.lat, atol=1e-6) and np.allclose(lon, sph.lon)):
        raise ValueError("pyshqg grid labels do not map onto the model grid.")
    os.makedirs(out_dir, exist_ok=True)
    np.savez_compressed(
        os.path.join(out_dir, FIELDS_FILE),
        orography=to_package_grid(raw["orography"]).astype(np.float64),
        land_sea_mask=to_package_grid(raw["land_sea_mask"]).astype(np.float64),
        forcing=to_package_grid(raw["forcing"]).astype(np.float64),
        initial_q=to_package_grid(raw["initial_q"]).astype(np.float64),
        lat=sph.lat,
        lon=sph.lon,
    )
    tri = np.tril_indices(22)
    ref = {"q_grid": to_package_grid(raw["spec_q"][:2])}
    with jax.enable_x64(True):
        for name in ("spec_q", "spec_psi", "spec_tendencies", "spec_rk4"):
            spec = np.asarray(sph.to_spec(to_package_grid(raw[name])))
            ref[name.replace("spec_", "") + "_tri"] = spec[..., tri[0], tri[1]]
    np.savez_compressed(os.path.join(out_dir, REFERENCE_FILE), **ref)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", nargs="?", default="all", choices=("all", "dump"))
    parser.add_argument("--out", default=ASSET_DIR)
    parser.add_argument("--raw", default=None, help="dump output path")
    parser.add_argument("--states", type=int, default=8)
    parser.add_argument("--pyshqg-python", default=None)
    args = parser.parse_args(argv)
    if args.stage == "dump":
        dump(args.raw, args.states)
        return
    if not args.pyshqg_python:
        parser.error("--pyshqg-python (the pyshqg venv's python) is required")
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "raw.npz")
        subprocess.run(
            [args.pyshqg_python, os.path.abspath(__file__), "dump", "--raw", raw]
            + ["--states", str(args.states)],
            check=True,
        )
        pack(raw, args.out)
    print(f"wrote {FIELDS_FILE} and {REFERENCE_FILE} to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
