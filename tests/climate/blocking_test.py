"""Blocking indices, events and onsets on constructed fields."""

import numpy as np

from jaxsuite.climate import blocking, sphere


def _zonal_flow(sph, days=1):
    # Z decreasing poleward (westerlies): no blocking anywhere.
    z = 5600.0 - 8.0 * (sph.lat[:, None] - 45.0) * np.ones((1, sph.nlon))
    return np.broadcast_to(z, (days, sph.nlat, sph.nlon)).copy()


def _add_block(z, sph, lon_range, amp=400.0):
    """A high centred at 62N over ``lon_range`` that reverses the gradients."""
    lat = sph.lat[:, None]
    lon = sph.lon[None, :]
    inside = (lon >= lon_range[0]) & (lon <= lon_range[1])
    bump = amp * np.exp(-(((lat - 62.0) / 8.0) ** 2)) * inside
    return z + bump


def test_interp_lat_is_exact_for_linear_profiles():
    sph = sphere.sphere()
    z = np.broadcast_to(3.0 * sph.lat[:, None] + 1.0, (32, 64))
    out = blocking.interp_lat(z, sph.lat, np.array([40.0, 60.0, 80.0]))
    np.testing.assert_allclose(out[:, 0], [121.0, 181.0, 241.0], rtol=1e-12)


def test_tm_and_davini_flag_only_the_blocked_sector():
    sph = sphere.sphere()
    z = _add_block(_zonal_flow(sph), sph, (300.0, 340.0))
    tm = blocking.tibaldi_molteni(z, sph.lat)[0]
    blocked_lons = sph.lon[tm]
    assert tm.any() and blocked_lons.min() >= 300.0 and blocked_lons.max() <= 340.0
    assert not blocking.tibaldi_molteni(_zonal_flow(sph), sph.lat).any()
    d2, lats = blocking.davini(z, sph.lat)
    assert d2.shape[-2] == lats.size and lats.max() <= 75 and lats.min() >= 30
    rows, cols = np.nonzero(d2[0])
    assert cols.size and np.all((sph.lon[cols] >= 300) & (sph.lon[cols] <= 340))


def test_large_scale_keeps_wide_runs_across_the_dateline():
    b = np.zeros(64, bool)
    b[[0, 1, 62, 63]] = True  # 4 points across lon 0 = 22.5 degrees
    b[[20, 21]] = True  # 2 points = 11.25 degrees
    out = blocking.large_scale(b, lon_step=5.625, min_width=15.0)
    assert out[[0, 1, 62, 63]].all() and not out[[20, 21]].any()


def test_runs_and_onset_labels_follow_the_persistence_rule():
    assert blocking.runs(np.array([0, 1, 1, 0, 1, 0, 1, 1, 1], bool)) == [
        (1, 2),
        (4, 1),
        (6, 3),
    ]
    sph = sphere.sphere()
    days = 40
    z = _zonal_flow(sph, days)
    spec = blocking.OnsetSpec(threshold=1.0, persistence_days=5)
    # Three anomalies over the Atlantic box lasting 2, 6 and 5 days.
    for start, length in ((5, 2), (15, 6), (28, 5)):
        z[start : start + length] = _add_block(
            z[start : start + length], sph, (300, 355)
        )
    ds = blocking.onset_dataset(z[None], sph.lat, sph.lon, spec)
    np.testing.assert_array_equal(ds["day"], [5, 15, 28])
    np.testing.assert_array_equal(ds["duration"], [2, 6, 5])
    np.testing.assert_array_equal(ds["y"], [0, 1, 1])
    assert ds["x"].shape == (3, int((sph.lat >= 0).sum()), 64)
    # The onset map is the anomaly of that day: positive over the box.
    rows = sph.lat[sph.lat >= 0]
    box = (rows >= 55) & (rows <= 70)
    assert ds["x"][1][box][:, sph.lon == 320.625].mean() > 0
