"""3-D representations and their renderers for the three stages.

* **Radiance field** (coarse stage): ``jaxsuite.nerf``'s Instant-NGP hash grid
  and density MLP (``fields.init(..., "hash")``, ``fields.feature``), with
  DreamCraft3D's progressive band (hash levels switched on over training, by
  masking the table), Magic3D's density blob bias
  ``blob_density (1 - |x| / blob_radius)`` and a view-independent colour head
  ``sigmoid(features @ W + b)`` on the 15 geometry features
  (threestudio's ``no-material``). Rays are marched and composited with
  ``jaxsuite.nerf.renderer`` and ``jaxsuite.core.rendering``.
* **SDF grid** (geometry and texture stages): a dense ``(G, G, G)`` signed
  distance grid over ``[-bound, bound]^3``, trilinear
  (``jaxsuite.nerf.fields.sample_grid``). The geometry stage renders it by
  sphere tracing without gradient to the surface (or the ray's closest
  approach) and volume rendering a band of samples around it with VolSDF's
  Laplace density ``sigma = Psi_beta(-sdf) / beta``, which carries gradients
  to the SDF (this stands in for DMTet + rasterisation). The texture stage
  freezes the SDF and shades the traced hit points with the colour field.

Colours are in ``[0, 1]``; images come out as ``(H, W, C)`` per camera.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsuite.core import cameras, rendering
from jaxsuite.nerf import fields, renderer

Params = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """Radiance/colour field settings (hashable, static under ``jit``)."""

    hash_levels: int = 8
    hash_features: int = 2
    hash_log2_table: int = 12
    hash_base_resolution: int = 8
    hash_max_resolution: float = 128.0
    hidden: int = 32
    bound: float = 1.0
    blob_density: float = 10.0
    blob_radius: float = 0.5

    def field_config(self) -> fields.FieldConfig:
        return fields.FieldConfig(
            bound=self.bound,
            hidden=self.hidden,
            hash_levels=self.hash_levels,
            hash_features=self.hash_features,
            hash_log2_table=self.hash_log2_table,
            hash_base_resolution=self.hash_base_resolution,
            hash_max_resolution=self.hash_max_resolution,
        )


class Views(NamedTuple):
    """Rendered views; leading shape ``(H, W)``."""

    rgb: jax.Array  # (H, W, 3)
    opacity: jax.Array  # (H, W)
    depth: jax.Array  # (H, W) expected ray distance (0 where empty)
    normal: jax.Array  # (H, W, 3) world normals composited (0 where empty)


def safe_norm(v: jax.Array, keepdims: bool = False) -> jax.Array:
    """Norm over the last axis with a finite gradient at zero."""
    return jnp.sqrt(jnp.sum(v * v, axis=-1, keepdims=keepdims) + 1e-12)


# ----------------------------------------------------------------------------
# Radiance / colour field.


def init_field(key: jax.Array, spec: FieldSpec) -> Params:
    """Hash table, density MLP and colour head."""
    k_f, k_c = jax.random.split(key)
    p = fields.init(k_f, "hash", spec.field_config())
    del p["color_net"]
    w = jax.random.normal(k_c, (fields.FEATURE_DIM - 1, 3)) / math.sqrt(15.0)
    return {"field": p, "color": {"w": w, "b": jnp.zeros((3,))}}


def band_table(table: jax.Array, levels: jax.Array | int) -> jax.Array:
    """The progressive band: hash levels ``>= levels`` are zeroed ``(L, T, F)``."""
    on = (jnp.arange(table.shape[0]) < levels).astype(table.dtype)
    return table * on[:, None, None]


def field_features(
    params: Params, spec: FieldSpec, x: jax.Array, levels: jax.Array | int
) -> jax.Array:
    """The 16-d feature at points ``x (N, 3)`` with ``levels`` hash levels on."""
    p = dict(params["field"])
    p["encoder"] = {"table": band_table(p["encoder"]["table"], levels)}
    return fields.feature(p, "hash", spec.field_config(), x)


def blob_bias(x: jax.Array, spec: FieldSpec) -> jax.Array:
    """Magic3D's density blob ``blob_density (1 - |x| / blob_radius)``, ``(N,)``."""
    r = safe_norm(x)
    return spec.blob_density * (1.0 - r / spec.blob_radius)


def field_query(
    params: Params, spec: FieldSpec, x: jax.Array, levels: jax.Array | int
) -> tuple[jax.Array, jax.Array]:
    """Density pre-activation (``sigma = trunc_exp(.)``) and colour at ``x``."""
    h = field_features(params, spec, x, levels)
    log_sigma = h[:, 0] + blob_bias(x, spec) - 1.0  # threestudio's shifted exp
    rgb = jax.nn.sigmoid(h[:, 1:] @ params["color"]["w"] + params["color"]["b"][None])
    return log_sigma, rgb


def color(params: Params, spec: FieldSpec, x: jax.Array, levels=None) -> jax.Array:
    """Colour at points ``x (N, 3)``: ``(N, 3)``."""
    levels = spec.hash_levels if levels is None else levels
    return field_query(params, spec, x, levels)[1]


def camera_rays(c2w: jax.Array, size: int, fov_deg: float):
    """Unit rays ``(H*W, 3)`` of one camera ``c2w (4, 4)``."""
    K = cameras.intrinsics(size, size, fov_x_deg=fov_deg)
    o, d = cameras.generate_rays(c2w, K, size, size)
    return o.reshape(-1, 3), d.reshape(-1, 3)


def render_field(
    params: Params,
    spec: FieldSpec,
    c2w: jax.Array,
    size: int,
    fov_deg: float,
    num_samples: int,
    levels: jax.Array | int,
    key: jax.Array | None,
    background: float = 1.0,
) -> Views:
    """Volume render of the radiance field from ``c2w (4, 4)``."""
    o, d = camera_rays(c2w, size, fov_deg)
    occ = jnp.ones((1, 1, 1), bool)
    samples = renderer.march(key, o, d, occ, num_samples, spec.bound)
    n, s = samples.t.shape
    log_sigma, rgb = field_query(params, spec, samples.points.reshape(-1, 3), levels)
    bg = jnp.full(o.shape, background, jnp.float32)
    out = renderer.composite(log_sigma.reshape(n, s), rgb.reshape(n, s, 3), samples, bg)
    t_mid = samples.t + 0.5 * rendering.compute_deltas(samples.t, samples.t_far)
    depth = jnp.sum(out.weights * t_mid, axis=-1)
    return Views(
        rgb=out.rgb.reshape(size, size, 3),
        opacity=out.opacity.reshape(size, size),
        depth=depth.reshape(size, size),
        normal=jnp.zeros((size, size, 3)),
    )


def field_density_grid(
    params: Params, spec: FieldSpec, resolution: int, levels=None
) -> jax.Array:
    """Density ``sigma`` at the nodes of a ``resolution^3`` grid over the cube."""
    levels = spec.hash_levels if levels is None else levels
    x = grid_points(resolution, spec.bound).reshape(-1, 3)
    chunks = [
        fields.trunc_exp(field_query(params, spec, x[i : i + 32768], levels)[0])
        for i in range(0, x.shape[0], 32768)
    ]
    return jnp.concatenate(chunks).reshape((resolution,) * 3)


# ----------------------------------------------------------------------------
# SDF grid.


def grid_points(resolution: int, bound: float) -> jax.Array:
    """Node positions ``(G, G, G, 3)`` of a corner-aligned grid over the cube."""
    c = jnp.linspace(-bound, bound, resolution)
    return jnp.stack(jnp.meshgrid(c, c, c, indexing="ij"), axis=-1)


def sdf_at(grid: jax.Array, x: jax.Array, bound: float) -> jax.Array:
    """Trilinear SDF at ``x (N, 3)``: ``(N,)``; outside the cube the distance
    to the cube is added (so rays are pulled back toward it)."""
    u = (x + bound) / (2.0 * bound)
    inside = fields.sample_grid(grid[..., None], jnp.clip(u, 0.0, 1.0))[:, 0]
    outside = safe_norm(jnp.maximum(jnp.abs(x) - bound, 0.0))
    return inside + outside


def grid_gradient(grid: jax.Array, bound: float) -> jax.Array:
    """Finite-difference gradient of a node grid ``(G, G, G) -> (G, G, G, 3)``."""
    h = 2.0 * bound / (grid.shape[0] - 1)
    return jnp.stack(jnp.gradient(grid, h, h, h), axis=-1)


def normal_at(grad: jax.Array, x: jax.Array, bound: float) -> jax.Array:
    """Unit normals at ``x (N, 3)`` from a gradient grid ``(G, G, G, 3)``."""
    u = jnp.clip((x + bound) / (2.0 * bound), 0.0, 1.0)
    g = fields.sample_grid(grad, u)
    return g / jnp.maximum(safe_norm(g, keepdims=True), 1e-6)


def trace(
    grid: jax.Array, o: jax.Array, d: jax.Array, bound: float, steps: int = 48
) -> tuple[jax.Array, jax.Array]:
    """Sphere tracing without gradient: ``(t*, hit)`` of rays ``(N, 3)``.

    ``t*`` is the first hit, or for a miss the point of closest approach met.
    """
    grid = jax.lax.stop_gradient(grid)
    near, far, inside = rendering.intersect_sphere(o, d, radius=math.sqrt(3.0) * bound)

    eps = 1e-3 * bound

    def body(_, carry):
        t, best_t, best_d, done = carry
        s = sdf_at(grid, o + t[:, None] * d, bound)
        better = (s < best_d) & ~done
        best_t = jnp.where(better, t, best_t)
        best_d = jnp.where(better, s, best_d)
        done = done | (s < eps)
        t = jnp.where(done, t, jnp.minimum(t + 0.9 * jnp.maximum(s, eps), far))
        return t, best_t, best_d, done

    init = (near, near, jnp.full_like(near, 1e9), ~inside)
    _, best_t, best_d, _ = jax.lax.fori_loop(0, steps, body, init)
    return best_t, inside & (best_d < 5.0 * eps)


def laplace_density(sdf: jax.Array, beta: float) -> jax.Array:
    """VolSDF's ``sigma = Psi_beta(-sdf) / beta`` (Laplace CDF)."""
    s = -sdf / beta
    cdf = jnp.where(
        s <= 0,
        0.5 * jnp.exp(jnp.minimum(s, 0.0)),
        1.0 - 0.5 * jnp.exp(-jnp.maximum(s, 0.0)),
    )
    return cdf / beta


def render_sdf(
    grid: jax.Array,
    color_fn,
    c2w: jax.Array,
    size: int,
    fov_deg: float,
    bound: float,
    beta: float,
    num_samples: int = 24,
    band: float = 0.15,
    background: float = 1.0,
) -> Views:
    """Differentiable render of an SDF grid (see the module docstring)."""
    o, d = camera_rays(c2w, size, fov_deg)
    t_star, _ = trace(grid, o, d, bound)
    t = t_star[:, None] + jnp.linspace(-band, band, num_samples)[None]
    t = jnp.maximum(t, 0.0)
    pts = rendering.ray_points(o, d, t).reshape(-1, 3)
    sdf = sdf_at(grid, pts, bound).reshape(t.shape)
    sigma = laplace_density(sdf, beta)
    t_far = t[:, -1] + (t[:, -1] - t[:, -2])
    weights, _, _ = rendering.render_weights(sigma, t, t_far)
    rgb = color_fn(pts).reshape(t.shape + (3,))
    grad = grid_gradient(grid, bound)
    nrm = normal_at(grad, pts, bound).reshape(t.shape + (3,))
    opacity = jnp.sum(weights, -1)
    return Views(
        rgb=rendering.composite(weights, rgb, background).reshape(size, size, 3),
        opacity=opacity.reshape(size, size),
        depth=jnp.sum(weights * t, -1).reshape(size, size),
        normal=rendering.composite(weights, nrm).reshape(size, size, 3),
    )


def render_surface(
    grid: jax.Array,
    color_fn,
    c2w: jax.Array,
    size: int,
    fov_deg: float,
    bound: float,
    background: float = 1.0,
) -> Views:
    """Render of a frozen SDF: traced hit points shaded by ``color_fn``."""
    o, d = camera_rays(c2w, size, fov_deg)
    t, hit = trace(grid, o, d, bound)
    p = jax.lax.stop_gradient(o + t[:, None] * d)
    m = hit.astype(jnp.float32)[:, None]
    rgb = m * color_fn(p) + (1.0 - m) * background
    n = normal_at(grid_gradient(jax.lax.stop_gradient(grid), bound), p, bound)
    return Views(
        rgb=rgb.reshape(size, size, 3),
        opacity=m[:, 0].reshape(size, size),
        depth=(m[:, 0] * t).reshape(size, size),
        normal=(m * n).reshape(size, size, 3),
    )


def sdf_from_density(density: np.ndarray, threshold: float, bound: float) -> np.ndarray:
    """Signed distance grid (negative inside) of ``{density > threshold}``.

    Uses exact Euclidean distance transforms of the occupancy and its
    complement (``scipy.ndimage``), in world units.
    """
    from scipy import ndimage

    occ = np.asarray(density) > threshold
    h = 2.0 * bound / (occ.shape[0] - 1)
    if not occ.any():
        r = np.linalg.norm(np.asarray(grid_points(occ.shape[0], bound)), axis=-1)
        return (r - 0.3).astype(np.float32)
    outside = ndimage.distance_transform_edt(~occ) * h
    inside = ndimage.distance_transform_edt(occ) * h
    return (outside - inside + np.where(occ, 0.5 * h, -0.5 * h)).astype(np.float32)


def eikonal_loss(grid: jax.Array, bound: float) -> jax.Array:
    """``mean((|grad sdf| - 1)^2)`` over the grid nodes."""
    g = grid_gradient(grid, bound)
    return jnp.mean((safe_norm(g) - 1.0) ** 2)


def laplacian_loss(grid: jax.Array, bound: float, band: float = 0.1) -> jax.Array:
    """Mean squared Laplacian of the SDF near its zero set (smoothness)."""
    lap = sum(jnp.roll(grid, s, a) for a in range(3) for s in (1, -1)) - 6.0 * grid
    near = (jnp.abs(jax.lax.stop_gradient(grid)) < band).astype(grid.dtype)
    inner = jnp.zeros_like(grid).at[1:-1, 1:-1, 1:-1].set(1.0)
    w = near * inner
    return jnp.sum(w * lap**2) / jnp.maximum(jnp.sum(w), 1.0)
