"""Measuring a reconstruction against the procedural ground truth.

* Novel views: a turntable (``A`` azimuths x the given elevations) split into
  **front** views (``|azimuth| <= 60`` deg from the reference) and **back**
  views (``|azimuth| >= 120`` deg), PSNR against exact ground-truth renders.
* Geometry: Chamfer distance between marching-cubes vertices of the predicted
  and true SDFs (mean of the two directed mean nearest-neighbour distances,
  world units) and the IoU of the two occupancies on a ``G^3`` grid.
* Janus: the true object shows its magenta marker only from the front; a
  reconstruction that shows marker-coloured pixels in a back view has copied
  the front to the back.
* Paired bootstrap confidence intervals for differences between variants
  over the same (object, seed) runs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxsuite.core import image as image_lib
from jaxsuite.gen3d import geometry, mesh, objects

FRONT_DEG = 60.0
BACK_DEG = 120.0
MARKER_PIXELS = 3


def turntable(n_azimuth: int, elevations) -> tuple[np.ndarray, np.ndarray]:
    """Elevations and azimuths (degrees) of the evaluation views ``(E*A,)``."""
    az = np.arange(n_azimuth) * 360.0 / n_azimuth
    az = (az + 180.0) % 360.0 - 180.0
    el = np.repeat(np.asarray(elevations, np.float32), n_azimuth)
    return el, np.tile(az, len(elevations)).astype(np.float32)


def split(azimuth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks of front and back views."""
    a = np.abs((np.asarray(azimuth) + 180.0) % 360.0 - 180.0)
    return a <= FRONT_DEG, a >= BACK_DEG


def marker_pixels(rgb: np.ndarray) -> np.ndarray:
    """Number of marker-coloured (magenta: red ~ blue, little green) pixels per
    image of ``rgb (..., H, W, 3)``."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    lo = np.minimum(r, b)
    hit = (lo > 0.3) & (g < 0.5 * lo) & (np.abs(r - b) < 0.35 * np.maximum(r, b))
    return hit.sum(axis=(-2, -1))


def view_metrics(
    pred: np.ndarray, truth: np.ndarray, azimuth: np.ndarray
) -> dict[str, float]:
    """Front/back PSNR and the Janus flag of turntable renders ``(V, H, W, 3)``."""
    psnr = np.asarray(image_lib.psnr(jnp.asarray(pred), jnp.asarray(truth)))
    front, back = split(azimuth)
    markers = marker_pixels(pred)
    return {
        "front_psnr": float(np.mean(psnr[front])),
        "back_psnr": float(np.mean(psnr[back])),
        "all_psnr": float(np.mean(psnr)),
        "back_marker_pixels": int(markers[back].sum()),
        "front_marker_pixels": int(markers[front].sum()),
        "janus": bool(np.any(markers[back] >= MARKER_PIXELS)),
    }


def true_sdf_grid(
    spec: objects.ObjectSpec, resolution: int, bound: float
) -> np.ndarray:
    pts = geometry.grid_points(resolution, bound).reshape(-1, 3)
    return np.asarray(objects.sdf(spec, pts)).reshape((resolution,) * 3)


def resample(grid: jax.Array, resolution: int, bound: float) -> np.ndarray:
    """Trilinear resampling of an SDF grid to ``resolution^3`` nodes."""
    pts = geometry.grid_points(resolution, bound).reshape(-1, 3)
    return np.asarray(geometry.sdf_at(grid, pts, bound)).reshape((resolution,) * 3)


def chamfer(pred: np.ndarray, truth: np.ndarray, bound: float) -> float:
    """Chamfer distance between the zero sets of two node grids (same size)."""
    from scipy.spatial import cKDTree

    vp, _ = mesh.marching_cubes(pred, bound)
    vt, _ = mesh.marching_cubes(truth, bound)
    if len(vp) == 0 or len(vt) == 0:
        return float("inf")
    d_pt = cKDTree(vt).query(vp)[0].mean()
    d_tp = cKDTree(vp).query(vt)[0].mean()
    return float(0.5 * (d_pt + d_tp))


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """IoU of ``{sdf < 0}`` of two node grids."""
    a, b = pred < 0, truth < 0
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def geometry_metrics(
    grid: jax.Array, spec: objects.ObjectSpec, resolution: int, bound: float
) -> dict[str, float]:
    pred = resample(grid, resolution, bound)
    truth = true_sdf_grid(spec, resolution, bound)
    return {"chamfer": chamfer(pred, truth, bound), "iou": iou(pred, truth)}


def paired_bootstrap(
    diffs: np.ndarray, n: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """Mean of paired differences and its percentile bootstrap interval."""
    d = np.asarray(diffs, np.float64)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), (n, len(d)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(d.mean()), float(lo), float(hi)
