"""NetCDF round trip of model output and the reanalysis (ERA5-layout) loader."""

import numpy as np
import pytest
import xarray as xr

from jaxsuite.climate import data, sphere


def test_dataset_netcdf_round_trip(tmp_path):
    sph = sphere.sphere()
    psi = (
        np.random.default_rng(0).normal(size=(3, 2, 3, 32, 64)).astype(np.float32) * 1e7
    )
    ds = data.to_dataset(psi, [1.0, 2.0, 3.0], sph)
    assert ds.psi.dims == ("time", "member", "level", "lat", "lon")
    assert (
        ds.lat.attrs["units"] == "degrees_north" and ds.attrs["Conventions"] == "CF-1.8"
    )
    path = data.write_netcdf(ds, str(tmp_path / "run.nc"))
    back = data.read_netcdf(path)
    np.testing.assert_array_equal(back.psi.values, psi)
    np.testing.assert_allclose(
        back.z500.values, data.z500_from_psi(psi[:, :, 1]), rtol=1e-6
    )
    np.testing.assert_array_equal(back.time.values, [1.0, 2.0, 3.0])
    assert back.time.attrs["units"].startswith("days since")


def _era5(
    tmp_path, *, name="z", units="m**2 s**-2", nlon=144, lat=None, levels=(500.0,)
):
    lat = np.linspace(90, -90, 73) if lat is None else lat
    lon = np.arange(nlon) * (360.0 / nlon)
    zg = 5500.0 + 10.0 * np.cos(np.deg2rad(lat))[:, None] * 100 + 0 * lon[None]
    zg = zg + 50.0 * np.sin(np.deg2rad(lon))[None, :]
    vals = np.broadcast_to(zg, (2, len(levels), len(lat), nlon)) * data.GRAVITY
    ds = xr.Dataset(
        {
            name: (
                ("valid_time", "pressure_level", "latitude", "longitude"),
                vals,
                {"units": units},
            )
        },
        coords={
            "valid_time": np.array(["2000-01-01", "2000-01-02"], "datetime64[ns]"),
            "pressure_level": np.asarray(levels),
            "latitude": lat,
            "longitude": lon,
        },
    )
    path = tmp_path / "era5.nc"
    ds.to_netcdf(path, engine="netcdf4")
    return str(path), zg


def test_loader_regrids_era5_layout_to_the_model_grid(tmp_path):
    path, zg = _era5(tmp_path)
    z = data.load_reanalysis_z500(path)
    sph = sphere.sphere()
    assert z.shape == (2, 32, 64)
    lat = sph.lat[:, None]
    lon = sph.lon[None, :]
    expected = (
        5500.0 + 1000.0 * np.cos(np.deg2rad(lat)) + 50.0 * np.sin(np.deg2rad(lon))
    )
    # Linear interpolation of smooth fields on a 2.5 degree grid.
    np.testing.assert_allclose(z.values[0], expected, atol=2.0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "t"}, "no 500 hPa geopotential variable"),
        ({"units": "K"}, "m\\*\\*2 s\\*\\*-2"),
        ({"nlon": 100, "lat": np.linspace(90, -90, 73)}, "360 degrees"),
        ({"lat": np.linspace(0, 60, 25)}, "20N to 85N"),
        ({"levels": (850.0,)}, "expected 500 hPa"),
    ],
)
def test_loader_names_what_is_wrong(tmp_path, kwargs, message):
    if (
        "nlon" in kwargs
    ):  # 100 points of 3.6 degrees do not cover 360 with the spacing used
        path, _ = _era5(tmp_path, **kwargs)
        ds = xr.open_dataset(path, engine="netcdf4").load()
        ds = ds.assign_coords(longitude=np.arange(100) * 3.0)
        ds.to_netcdf(tmp_path / "bad.nc", engine="netcdf4")
        path = str(tmp_path / "bad.nc")
    else:
        path, _ = _era5(tmp_path, **kwargs)
    with pytest.raises(ValueError, match=message):
        data.load_reanalysis_z500(path)
