"""Blocking indices, events and the labelled dataset of Atlantic onsets.

* ``tibaldi_molteni``: the 1-D TM90 index (as in MiLES): a longitude is
  blocked when, for one of the central latitudes 60N + {-5, -2.5, 0, 2.5, 5},
  GHGS = (Z(phi0) - Z(phi0 - 20)) / 20 > 0 and
  GHGN = (Z(phi0 + 20) - Z(phi0)) / 20 < -10 m per degree.
* ``davini``: the 2-D index of Davini et al. (2012): the same gradients with
  +-15 degree offsets at every central latitude 30-75N, optionally with
  GHGS2 = (Z(phi0 - 15) - Z(phi0 - 30)) / 15 < -5 m per degree.
* ``large_scale``: keeps blocked longitudes that belong to a run at least
  15 degrees wide (periodic in longitude); ``runs`` finds events in time.
* ``onset_dataset``: the learning task. The paper's exact index and
  persistence threshold are not known here (its body was not available);
  this package's documented choice is an anomaly-persistence definition in
  the Dole-Gordon spirit: the daily Z500 anomaly averaged over the Atlantic
  box (50-75N, 60W-0) is "high" when it exceeds ``threshold`` standard
  deviations; an onset is a day it crosses that level from below (the
  "initial high-pressure anomaly"); the label is 1 when it stays high for at
  least ``persistence_days`` consecutive days (onset day included).

Latitudes are degrees north of the grid rows (any order); Z500 in metres.
All functions are numpy (they run on stored trajectories, not in the model).
"""

from __future__ import annotations

import dataclasses

import numpy as np

TM_DELTAS = (-5.0, -2.5, 0.0, 2.5, 5.0)


def interp_lat(z: np.ndarray, lat: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Linear interpolation along the latitude axis (-2).

    Args:
      z: (..., nlat, nlon).
      lat: (nlat,) row latitudes (monotonic).
      target: (K,) latitudes inside the grid's range.

    Returns:
      (..., K, nlon).
    """
    lat = np.asarray(lat, np.float64)
    order = np.argsort(lat)
    lat_s, z_s = lat[order], np.take(z, order, axis=-2)
    target = np.asarray(target, np.float64)
    if target.min() < lat_s[0] or target.max() > lat_s[-1]:
        raise ValueError(f"latitudes {target} outside the grid {lat_s[0]}..{lat_s[-1]}")
    hi = np.clip(np.searchsorted(lat_s, target), 1, lat_s.size - 1)
    lo = hi - 1
    w = (target - lat_s[lo]) / (lat_s[hi] - lat_s[lo])
    return z_s[..., lo, :] * (1 - w)[:, None] + z_s[..., hi, :] * w[:, None]


def tibaldi_molteni(
    z: np.ndarray,
    lat: np.ndarray,
    *,
    phi0: float = 60.0,
    offset: float = 20.0,
    deltas: tuple[float, ...] = TM_DELTAS,
    ghgn_max: float = -10.0,
) -> np.ndarray:
    """TM90 instantaneous blocking: (..., nlat, nlon) Z500 -> (..., nlon) bool."""
    blocked = np.zeros(z.shape[:-2] + z.shape[-1:], bool)
    for d in deltas:
        c = phi0 + d
        zs, z0, zn = np.moveaxis(interp_lat(z, lat, [c - offset, c, c + offset]), -2, 0)
        ghgs = (z0 - zs) / offset
        ghgn = (zn - z0) / offset
        blocked |= (ghgs > 0) & (ghgn < ghgn_max)
    return blocked


def davini(
    z: np.ndarray,
    lat: np.ndarray,
    *,
    lat_range: tuple[float, float] = (30.0, 75.0),
    offset: float = 15.0,
    ghgn_max: float = -10.0,
    ghgs2_max: float | None = -5.0,
) -> tuple[np.ndarray, np.ndarray]:
    """2-D instantaneous blocking (Davini et al. 2012).

    Returns:
      ``(blocked, lats)``: (..., K, nlon) bool and the (K,) central
      latitudes (the grid rows inside ``lat_range`` whose northern partner
      ``phi0 + offset`` lies on the grid; at T21 that stops at 67.6N),
      north to south.
    """
    lat = np.asarray(lat)
    hi = min(lat_range[1], lat.max() - offset)  # phi0 + offset must be on the grid
    phi0 = np.sort(lat[(lat >= lat_range[0]) & (lat <= hi)])[::-1]
    z0 = interp_lat(z, lat, phi0)
    zn = interp_lat(z, lat, phi0 + offset)
    zs = interp_lat(z, lat, phi0 - offset)
    blocked = ((z0 - zs) / offset > 0) & ((zn - z0) / offset < ghgn_max)
    if ghgs2_max is not None:
        zs2 = interp_lat(z, lat, phi0 - 2 * offset)
        blocked &= (zs - zs2) / offset < ghgs2_max
    return blocked, phi0


def large_scale(
    blocked: np.ndarray, lon_step: float, min_width: float = 15.0
) -> np.ndarray:
    """Keeps blocked longitudes in (periodic) runs of at least ``min_width`` degrees.

    Args:
      blocked: (..., nlon) bool.
      lon_step: grid spacing in degrees.
      min_width: minimum extent; a run of n points spans ``n * lon_step``.
    """
    need = int(np.ceil(min_width / lon_step - 1e-9))
    b = np.asarray(blocked, bool)
    n = b.shape[-1]
    # Run length through each point = left run + right run - 1 (periodic).
    left = np.zeros(b.shape, np.int64)
    right = np.zeros(b.shape, np.int64)
    ext = np.concatenate([b, b, b], axis=-1)
    cnt = np.zeros(b.shape[:-1], np.int64)
    lrun = np.zeros(ext.shape, np.int64)
    for k in range(3 * n):
        cnt = np.where(ext[..., k], cnt + 1, 0)
        lrun[..., k] = cnt
    cnt[...] = 0
    rrun = np.zeros(ext.shape, np.int64)
    for k in range(3 * n - 1, -1, -1):
        cnt = np.where(ext[..., k], cnt + 1, 0)
        rrun[..., k] = cnt
    left = lrun[..., n : 2 * n]
    right = rrun[..., n : 2 * n]
    width = np.minimum(left + right - 1, n)
    return b & (width >= need)


def runs(series: np.ndarray) -> list[tuple[int, int]]:
    """Runs of True in a 1-D bool series: list of ``(start, length)``."""
    s = np.concatenate([[False], np.asarray(series, bool), [False]])
    d = np.diff(s.astype(np.int8))
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1)
    return [(int(a), int(b - a)) for a, b in zip(starts, ends)]


def run_length_mask(flags: np.ndarray, min_len: int, axis: int = 0) -> np.ndarray:
    """True where ``flags`` is in a run of at least ``min_len`` along ``axis``."""
    f = np.moveaxis(np.asarray(flags, bool), axis, 0)
    fwd = np.zeros(f.shape, np.int64)
    bwd = np.zeros(f.shape, np.int64)
    cnt = np.zeros(f.shape[1:], np.int64)
    for t in range(f.shape[0]):
        cnt = np.where(f[t], cnt + 1, 0)
        fwd[t] = cnt
    cnt = np.zeros(f.shape[1:], np.int64)
    for t in range(f.shape[0] - 1, -1, -1):
        cnt = np.where(f[t], cnt + 1, 0)
        bwd[t] = cnt
    return np.moveaxis(f & (fwd + bwd - 1 >= min_len), 0, axis)


def persistent_anomaly_frequency(
    z: np.ndarray, threshold: float = 1.0, min_days: int = 5
) -> np.ndarray:
    """Fraction of days in a positive-anomaly episode at each point (Dole-Gordon).

    Args:
      z: (members, days, nlat, nlon) daily Z500.
      threshold: anomaly threshold in local standard deviations.
      min_days: minimum episode length.

    Returns:
      (nlat, nlon) frequency in [0, 1].
    """
    anom = z - z.mean(axis=(0, 1))
    high = anom >= threshold * anom.std(axis=(0, 1))
    return run_length_mask(high, min_days, axis=1).mean(axis=(0, 1))


def sector_mask(lon: np.ndarray, west: float, east: float) -> np.ndarray:
    """(nlon,) bool for longitudes in [west, east] (degrees east, may wrap)."""
    lon = np.mod(lon, 360.0)
    w, e = np.mod(west, 360.0), np.mod(east, 360.0)
    return (lon >= w) & (lon <= e) if w <= e else (lon >= w) | (lon <= e)


@dataclasses.dataclass(frozen=True)
class OnsetSpec:
    """The documented event definition (see the module docstring)."""

    box_lat: tuple[float, float] = (50.0, 75.0)
    box_lon: tuple[float, float] = (300.0, 360.0)  # 60W to 0
    threshold: float = 1.0  # in standard deviations of the box anomaly
    persistence_days: int = 5
    input_lat_min: float = 0.0  # CNN input: northern-hemisphere rows


def box_mean(anom: np.ndarray, lat: np.ndarray, lon: np.ndarray, spec: OnsetSpec):
    """cos(lat)-weighted box mean: (..., nlat, nlon) -> (...)."""
    rows = (lat >= spec.box_lat[0]) & (lat <= spec.box_lat[1])
    cols = sector_mask(lon, *spec.box_lon)
    w = np.cos(np.deg2rad(lat[rows]))
    sub = anom[..., rows, :][..., cols]
    return np.einsum("...jk,j->...", sub, w) / (w.sum() * cols.sum())


def onset_dataset(
    z: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    spec: OnsetSpec,
    *,
    climatology: np.ndarray | None = None,
    box_std: float | None = None,
) -> dict[str, np.ndarray]:
    """Labelled Atlantic onsets from daily Z500 of several members.

    Args:
      z: (members, days, nlat, nlon) daily Z500 in m.
      lat, lon: grid coordinates.
      spec: event definition.
      climatology: (nlat, nlon) mean Z500 (default: mean of ``z``).
      box_std: standard deviation of the box anomaly (default: from ``z``).

    Returns:
      dict with ``x`` (n, rows, nlon) Z500 anomaly at onset on rows with
      lat >= ``spec.input_lat_min``, ``y`` (n,) 0/1, ``duration`` (n,) days
      above the threshold (censored at the series end), ``member``, ``day``,
      and ``climatology`` and ``box_std`` used.
    """
    z = np.asarray(z, np.float32)
    clim = z.mean(axis=(0, 1)) if climatology is None else climatology
    anom = z - clim
    a = box_mean(anom, lat, lon, spec)  # (members, days)
    std = float(a.std()) if box_std is None else box_std
    high = a >= spec.threshold * std
    rows = lat >= spec.input_lat_min
    xs, ys, durs, mem, days = [], [], [], [], []
    n_days = z.shape[1]
    for i in range(z.shape[0]):
        for start, length in runs(high[i]):
            if start == 0:
                continue  # not an up-crossing inside the record
            if start + spec.persistence_days > n_days and start + length == n_days:
                continue  # label unknown: the record ends first
            xs.append(anom[i, start][rows])
            ys.append(int(length >= spec.persistence_days))
            durs.append(length)
            mem.append(i)
            days.append(start)
    return {
        "x": np.asarray(xs, np.float32).reshape(-1, int(rows.sum()), z.shape[-1]),
        "y": np.asarray(ys, np.int32),
        "duration": np.asarray(durs, np.int32),
        "member": np.asarray(mem, np.int32),
        "day": np.asarray(days, np.int32),
        "climatology": clim,
        "box_std": np.float32(std),
    }


def event_statistics(
    z: np.ndarray, lat: np.ndarray, lon: np.ndarray, spec: OnsetSpec
) -> dict[str, float]:
    """Onsets, persistence and TM sector blocking of (members, days, lat, lon) Z500."""
    ds = onset_dataset(z, lat, lon, spec)
    tm = tibaldi_molteni(z, lat)
    tm = large_scale(tm, lon_step=float(lon[1] - lon[0]))
    sector = tm[..., sector_mask(lon, *spec.box_lon)].any(-1)  # (members, days)
    tm_events = [n for m in range(sector.shape[0]) for _, n in runs(sector[m])]
    tm_events = np.asarray(tm_events) if tm_events else np.zeros(0)
    total_days = z.shape[0] * z.shape[1]
    return {
        "member_days": float(total_days),
        "onsets": float(ds["y"].size),
        "onsets_per_100_days": 100.0 * ds["y"].size / total_days,
        "p_persist": float(ds["y"].mean()) if ds["y"].size else 0.0,
        "mean_duration_days": float(ds["duration"].mean()) if ds["y"].size else 0.0,
        "tm_atlantic_blocked_fraction": float(sector.mean()),
        "tm_atlantic_events_ge5d": float((tm_events >= 5).sum()),
        "tm_atlantic_mean_event_days": float(tm_events.mean())
        if tm_events.size
        else 0.0,
    }
