"""Shipped fields, model output as xarray/CF NetCDF, and a reanalysis Z500 loader.

* ``load_fields`` / ``load_pyshqg_reference`` read the small npz files in
  ``jaxsuite/assets/climate`` (converted from the pyshqg 1.0.1 wheel, MIT; see
  ``PROVENANCE.md`` there and ``pyshqg_assets`` for the conversion).
* ``to_dataset`` / ``write_netcdf`` / ``read_netcdf``: model trajectories as
  an ``xarray.Dataset`` with CF attributes, round-tripped through NetCDF.
* ``load_reanalysis_z500``: reads user-supplied geopotential at 500 hPa in
  the ERA5 layout and puts it on the model grid, with errors that name what
  is wrong (missing variable, wrong grid, wrong units) and what is expected.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

from jaxsuite.climate import qg as qg_lib
from jaxsuite.climate import sphere as sphere_lib

ASSET_DIR = os.path.join(
    os.path.dirname(os.path.dirname(__file__)), "assets", "climate"
)
GRAVITY = 9.80665  # m/s^2
F0 = 2.0 * 7.292e-5 * np.sin(np.deg2rad(45.0))  # 1/s, Coriolis parameter at 45N


@functools.lru_cache(maxsize=1)
def load_fields() -> dict[str, np.ndarray]:
    """Orography (m), land-sea mask and forcing (1/s^2) on the T21 grid.

    Returns:
      dict with ``orography`` (32, 64), ``land_sea_mask`` (32, 64),
      ``forcing`` (3, 32, 64), ``lat`` (32,) and ``lon`` (64,), float64, rows
      north to south.
    """
    with np.load(os.path.join(ASSET_DIR, "qg_t21_fields.npz")) as f:
        return {k: f[k] for k in f.files}


def load_pyshqg_reference() -> dict[str, np.ndarray]:
    """pyshqg's published T21 reference states, in this package's layout.

    Returns:
      dict with ``q``, ``psi``, ``tendencies``, ``rk4`` of shape
      (S, 3, 22, 22) complex (S = 8 states) and ``q_grid`` (2, 3, 32, 64).
    """
    with np.load(os.path.join(ASSET_DIR, "pyshqg_reference_t21.npz")) as f:
        raw = {k: f[k] for k in f.files}
    tri = np.tril_indices(22)
    out = {"q_grid": raw["q_grid"]}
    for name in ("q", "psi", "tendencies", "rk4"):
        tri_vals = raw[f"{name}_tri"]
        full = np.zeros(tri_vals.shape[:-1] + (22, 22), np.complex128)
        full[..., tri[0], tri[1]] = tri_vals
        out[name] = full
    return out


def default_model(config: qg_lib.QGConfig | None = None, dtype=np.float64):
    """The model with the shipped orography, land-sea mask and forcing."""
    fields = load_fields()
    return qg_lib.build_model(
        config or qg_lib.QGConfig(),
        fields["orography"],
        fields["land_sea_mask"],
        fields["forcing"],
        dtype=dtype,
    )


def z500_from_psi(psi500: np.ndarray) -> np.ndarray:
    """Geopotential height (m) from 500 hPa streamfunction: ``f0 psi / g``."""
    return F0 * np.asarray(psi500) / GRAVITY


# -- model output as a CF dataset ---------------------------------------------


def to_dataset(
    psi: np.ndarray,
    time_days: Sequence[float],
    sph: sphere_lib.Sphere,
    *,
    attrs: Mapping[str, str] | None = None,
) -> xr.Dataset:
    """A trajectory of grid streamfunction as a CF-annotated Dataset.

    Args:
      psi: (time, [member,] 3, nlat, nlon) streamfunction in m^2/s.
      time_days: (time,) model days.
      sph: the grid.
      attrs: extra global attributes.

    Returns:
      Dataset with ``psi`` (m2 s-1) and ``z500`` (m), coordinates ``time``
      (days since the start), ``level`` (hPa), ``lat`` and ``lon``.
    """
    psi = np.asarray(psi)
    dims = ["time", "level", "lat", "lon"]
    if psi.ndim == 5:
        dims.insert(1, "member")
    return xr.Dataset(
        _cf_variables(psi, dims),
        coords=_cf_coords(psi, time_days, sph),
        attrs={
            "Conventions": "CF-1.8",
            "title": "Marshall-Molteni three-level QG model, T21",
            "source": "jaxsuite.climate.qg",
            **dict(attrs or {}),
        },
    )


def _cf_coords(
    psi: np.ndarray, time_days: Sequence[float], sph: sphere_lib.Sphere
) -> dict[str, tuple]:
    """CF coordinates of (time, [member,] 3, nlat, nlon) ``psi`` on ``sph``."""
    coords = {
        "time": (
            "time",
            np.asarray(time_days, np.float64),
            {
                "units": "days since 2000-01-01 00:00:00",
                "calendar": "proleptic_gregorian",
                "standard_name": "time",
            },
        ),
        "level": (
            "level",
            np.asarray(qg_lib.LEVELS_HPA, np.float64),
            {
                "units": "hPa",
                "standard_name": "air_pressure",
                "positive": "down",
            },
        ),
        "lat": (
            "lat",
            sph.lat,
            {"units": "degrees_north", "standard_name": "latitude"},
        ),
        "lon": (
            "lon",
            sph.lon,
            {"units": "degrees_east", "standard_name": "longitude"},
        ),
    }
    if psi.ndim == 5:
        coords["member"] = ("member", np.arange(psi.shape[1]))
    return coords


def _cf_variables(psi: np.ndarray, dims: list[str]) -> dict[str, tuple]:
    """``psi`` (dims) and its Z500 (dims without ``level``) with CF attributes."""
    z = z500_from_psi(psi[..., 1, :, :])
    return {
        "psi": (
            dims,
            psi,
            {
                "units": "m2 s-1",
                "standard_name": "atmosphere_horizontal_streamfunction",
                "long_name": "quasi-geostrophic streamfunction",
            },
        ),
        "z500": (
            [d for d in dims if d != "level"],
            z,
            {
                "units": "m",
                "standard_name": "geopotential_height",
                "long_name": "500 hPa height f0 psi / g",
            },
        ),
    }


def write_netcdf(ds: xr.Dataset, path: str) -> str:
    """Writes ``ds`` to NetCDF4 (times kept as numbers with CF units)."""
    ds.to_netcdf(path, engine="netcdf4")
    return path


def read_netcdf(path: str) -> xr.Dataset:
    """Reads a ``write_netcdf`` file; ``time`` stays in model days."""
    with xr.open_dataset(path, decode_times=False, engine="netcdf4") as ds:
        return ds.load()


# -- reanalysis loader ---------------------------------------------------------

_Z_NAMES = ("z", "geopotential", "z500")
_ZH_NAMES = ("zg", "gh", "geopotential_height")
_GEOPOTENTIAL_UNITS = ("m**2 s**-2", "m2 s-2", "m^2 s^-2", "m2/s2", "m**2/s**2")
_HEIGHT_UNITS = ("m", "gpm", "metre", "meter", "metres", "meters")


def _find(ds: xr.Dataset, names: Sequence[str]) -> str | None:
    for name in names:
        if name in ds.data_vars:
            return name
    return None


def _coord(da: xr.DataArray, names: Sequence[str], what: str) -> str:
    for name in names:
        if name in da.dims:
            return name
    raise ValueError(
        f"Variable {da.name!r} has no {what} dimension: expected one of "
        f"{list(names)}, found dims {list(da.dims)}."
    )


def load_reanalysis_z500(
    path: str, sph: sphere_lib.Sphere | None = None
) -> xr.DataArray:
    """Daily 500 hPa geopotential height (m) on the model grid from ERA5-layout NetCDF.

    Accepts ERA5's ``z`` (geopotential, m**2 s**-2, divided by g) or a
    geopotential height (``zg``/``gh`` in m), with dims ``time`` or
    ``valid_time``, ``latitude``/``lat``, ``longitude``/``lon`` and optionally a
    pressure level dimension holding 500 hPa. The grid must be a regular,
    global-in-longitude latitude-longitude grid covering 20-85 N; it is
    interpolated linearly onto the model's Gaussian grid (rows south of the
    data are NaN).

    Returns:
      (time, nlat, nlon) ``z500`` in m on ``sph`` (default: the T21 grid).

    Raises:
      ValueError: naming the missing variable, the grid problem or the units
        found and those expected.
    """
    sph = sph or sphere_lib.sphere()
    with xr.open_dataset(path, engine="netcdf4") as ds:
        ds = ds.load()
    da = _at_500hpa(_height_variable(ds, path), path)
    tdim = _coord(da, ("time", "valid_time"), "time")
    latd = _coord(da, ("latitude", "lat"), "latitude")
    lond = _coord(da, ("longitude", "lon"), "longitude")
    lat = np.asarray(da[latd], np.float64)
    lon = np.asarray(da[lond], np.float64)
    _check_grid(lat, lon, path)
    da = da.sortby(latd).transpose(tdim, latd, lond)
    lon_wrap = np.concatenate([lon, [lon[0] + 360.0]])
    vals = np.asarray(da.values, np.float64)
    vals = np.concatenate([vals, vals[..., :1]], axis=-1)
    target_lon = np.mod(sph.lon - lon[0], 360.0) + lon[0]
    wrapped = xr.DataArray(
        vals,
        dims=("time", "lat", "lon"),
        coords={"lat": np.sort(lat), "lon": lon_wrap},
    )
    out = wrapped.interp(lat=sph.lat, lon=target_lon)
    out = out.assign_coords(lon=sph.lon, time=np.asarray(da[tdim]))
    out.attrs = {"units": "m", "standard_name": "geopotential_height"}
    return out.rename("z500")


def _height_variable(ds: xr.Dataset, path: str) -> xr.DataArray:
    """The geopotential (divided by g) or geopotential height variable, in m."""
    name = _find(ds, _Z_NAMES) or _find(ds, _ZH_NAMES)
    if name is None:
        raise ValueError(
            f"{path}: no 500 hPa geopotential variable. Expected one of "
            f"{list(_Z_NAMES + _ZH_NAMES)}; found {sorted(ds.data_vars)}."
        )
    da = ds[name]
    units = str(da.attrs.get("units", "")).strip()
    if name in _Z_NAMES:
        if units not in _GEOPOTENTIAL_UNITS:
            raise ValueError(
                f"{path}: variable {name!r} has units {units!r}; geopotential "
                f"must be in m**2 s**-2 (one of {list(_GEOPOTENTIAL_UNITS)})."
            )
        return da / GRAVITY
    if units not in _HEIGHT_UNITS:
        raise ValueError(
            f"{path}: variable {name!r} has units {units!r}; geopotential "
            f"height must be in metres (one of {list(_HEIGHT_UNITS)})."
        )
    return da


def _at_500hpa(da: xr.DataArray, path: str) -> xr.DataArray:
    """``da`` at 500 hPa when it has a pressure-level dimension (Pa or hPa)."""
    for level_dim in ("pressure_level", "level", "plev", "isobaricInhPa"):
        if level_dim in da.dims:
            levels = np.asarray(da[level_dim], np.float64)
            scale = 100.0 if levels.max() > 2000 else 1.0  # Pa or hPa
            idx = np.flatnonzero(np.isclose(levels / scale, 500.0))
            if idx.size == 0:
                raise ValueError(
                    f"{path}: {level_dim} has {levels.tolist()}; expected 500 hPa."
                )
            da = da.isel({level_dim: int(idx[0])})
    return da


def _check_grid(lat: np.ndarray, lon: np.ndarray, path: str) -> None:
    """Raises ``ValueError`` unless (nlat,), (nlon,) is regular, global, 20-85 N."""
    if lat.size < 2 or lon.size < 2:
        raise ValueError(f"{path}: grid {lat.size}x{lon.size} is too small.")
    dlat, dlon = np.diff(lat), np.diff(lon)
    if not (np.allclose(dlat, dlat[0]) and np.allclose(dlon, dlon[0]) and dlon[0] > 0):
        raise ValueError(
            f"{path}: expected a regular latitude-longitude grid with increasing "
            "longitude; the spacing is irregular."
        )
    if abs(lon.size * dlon[0] - 360.0) > 1e-6 * 360:
        raise ValueError(
            f"{path}: longitudes cover {lon.size * dlon[0]:.2f} degrees; expected "
            "a global grid (360 degrees, e.g. 0 to 359.75)."
        )
    if lat.min() > 20.0 or lat.max() < 85.0:
        raise ValueError(
            f"{path}: latitudes span {lat.min():.2f} to {lat.max():.2f}; "
            "expected at least 20N to 85N."
        )
