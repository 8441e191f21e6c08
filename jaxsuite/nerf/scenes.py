"""Analytic scenes whose volume renders are exact, and posed image sets from them.

A scene is a union of constant-density primitives (spheres and axis-aligned
boxes) inside the cube ``[-1, 1]^3``. Where primitives overlap their densities
add and their colours mix in proportion to density. Each primitive has a base
colour modulated by a procedural albedo, horizontal stripes of height
``stripe_period`` (a factor ``1`` on even stripes and ``stripe_dark`` on odd
ones), plus a view-dependent term ``spec * max(0, d . l)`` for a fixed
direction ``l``; the colour is clipped to ``[0, 1]``.

Density and colour are therefore piecewise constant along every ray, with
breakpoints at the primitives' surfaces and the stripe planes. Sorting those
breakpoints and compositing one sample per interval (``jaxsuite.core.
rendering.volume_render`` with ``t_far``) gives the volume-rendering integral
exactly, up to float32 rounding: the images are ground truth, not an estimate.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsuite.core import cameras, rendering

SCENE_MIN = -1.0
SCENE_MAX = 1.0
# NeRF-Synthetic's horizontal field of view (radians) and camera distance.
BLENDER_FOV_X = 0.6911112070083618
BLENDER_RADIUS = 4.0


@dataclasses.dataclass(frozen=True, eq=False)
class Scene:
    """Constant-density primitives; array fields are numpy (static constants).

    Attributes:
      sphere_center: ``(Ks, 3)``; sphere_radius ``(Ks,)``.
      sphere_density: ``(Ks,)``; sphere_color ``(Ks, 3)``.
      box_min, box_max: ``(Kb, 3)`` corners; box_density ``(Kb,)``;
        box_color ``(Kb, 3)``.
      stripe_period: height of one albedo stripe (world units along ``z``).
      stripe_dark: albedo factor on odd stripes.
      spec: strength of the view-dependent term.
      light: unit direction ``l`` of the view-dependent term, ``(3,)``.
    """

    sphere_center: np.ndarray
    sphere_radius: np.ndarray
    sphere_density: np.ndarray
    sphere_color: np.ndarray
    box_min: np.ndarray
    box_max: np.ndarray
    box_density: np.ndarray
    box_color: np.ndarray
    stripe_period: float = 0.25
    stripe_dark: float = 0.6
    spec: float = 0.15
    light: tuple[float, float, float] = (0.0, 0.6, 0.8)


def default_scene(density: float = 40.0) -> Scene:
    """Three spheres on a flat box (a table top) and a small cube, density
    ``density`` everywhere inside (40 makes a 0.1-thick layer 98% opaque)."""
    f32 = lambda v: np.asarray(v, np.float32)
    return Scene(
        sphere_center=f32([[-0.35, -0.25, 0.05], [0.4, 0.2, -0.05], [0.05, 0.45, 0.3]]),
        sphere_radius=f32([0.35, 0.3, 0.22]),
        sphere_density=f32([density, density, density * 0.5]),
        sphere_color=f32([[0.9, 0.3, 0.2], [0.2, 0.5, 0.9], [0.95, 0.85, 0.2]]),
        box_min=f32([[-0.8, -0.8, -0.5], [0.25, -0.65, -0.35]]),
        box_max=f32([[0.8, 0.8, -0.35], [0.6, -0.3, 0.05]]),
        box_density=f32([density, density]),
        box_color=f32([[0.5, 0.8, 0.45], [0.8, 0.45, 0.85]]),
    )


def _inside(scene: Scene, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Membership of points ``x (N, 3)``: spheres ``(N, Ks)``, boxes ``(N, Kb)``."""
    c = jnp.asarray(scene.sphere_center)[None]
    r = jnp.asarray(scene.sphere_radius)[None]
    in_s = jnp.sum(jnp.square(x[:, None, :] - c), axis=-1) < jnp.square(r)
    lo = jnp.asarray(scene.box_min)[None]
    hi = jnp.asarray(scene.box_max)[None]
    xb = x[:, None, :]
    in_b = jnp.all((xb > lo) & (xb < hi), axis=-1)
    return in_s, in_b


def density(scene: Scene, x: jax.Array) -> jax.Array:
    """Density ``sigma(x)``: ``(N, 3) -> (N,)``."""
    in_s, in_b = _inside(scene, x)
    ds = jnp.asarray(scene.sphere_density)[None]
    db = jnp.asarray(scene.box_density)[None]
    return jnp.sum(jnp.where(in_s, ds, 0.0), -1) + jnp.sum(jnp.where(in_b, db, 0.0), -1)


def color(scene: Scene, x: jax.Array, d: jax.Array) -> jax.Array:
    """Colour ``c(x, d)`` (density-weighted mix of overlapping primitives).

    Args:
      x: points ``(N, 3)``.
      d: unit view directions ``(N, 3)``.

    Returns:
      ``(N, 3)`` in ``[0, 1]`` (the background-free colour; meaningless
      where the density is zero).
    """
    in_s, in_b = _inside(scene, x)
    ws = jnp.where(in_s, jnp.asarray(scene.sphere_density)[None], 0.0)
    wb = jnp.where(in_b, jnp.asarray(scene.box_density)[None], 0.0)
    total = jnp.maximum(
        jnp.sum(ws, -1, keepdims=True) + jnp.sum(wb, -1, keepdims=True), 1e-12
    )
    base = (
        ws @ jnp.asarray(scene.sphere_color) + wb @ jnp.asarray(scene.box_color)
    ) / total
    stripe = jnp.floor(x[:, 2:3] / scene.stripe_period)
    odd = jnp.mod(stripe, 2.0) > 0.5
    albedo = jnp.where(odd, scene.stripe_dark, 1.0)
    light = jnp.asarray(scene.light, jnp.float32)
    light = light / jnp.linalg.norm(light)
    view = scene.spec * jnp.maximum(d @ light, 0.0)[:, None]
    return jnp.clip(base * albedo + view, 0.0, 1.0)


def breakpoints(scene: Scene, origins: jax.Array, directions: jax.Array) -> jax.Array:
    """Sorted distances where density or colour may change along each ray.

    Args:
      origins: ``(N, 3)``; directions: unit ``(N, 3)``.

    Returns:
      ``(N, M)`` sorted distances, all inside the ray's segment in the scene
      cube (``[near, far]``, both included; ``0`` for rays that miss it).
    """
    near, far, _ = rendering.intersect_aabb(
        origins, directions, np.full(3, SCENE_MIN), np.full(3, SCENE_MAX)
    )
    ts = [near[:, None], far[:, None]]
    for c, r in zip(scene.sphere_center, scene.sphere_radius):
        t0, t1, _ = rendering.intersect_sphere(origins, directions, c, float(r))
        ts += [t0[:, None], t1[:, None]]
    for lo, hi in zip(scene.box_min, scene.box_max):
        t0, t1, _ = rendering.intersect_aabb(origins, directions, lo, hi)
        ts += [t0[:, None], t1[:, None]]
    n_planes = int(math.ceil((SCENE_MAX - SCENE_MIN) / scene.stripe_period)) + 2
    k0 = math.floor(SCENE_MIN / scene.stripe_period)
    planes = (k0 + np.arange(n_planes, dtype=np.float32)) * scene.stripe_period
    dz = directions[:, 2:3]
    safe = jnp.where(jnp.abs(dz) > 1e-9, dz, 1e-9)
    ts.append((jnp.asarray(planes)[None] - origins[:, 2:3]) / safe)
    t = jnp.concatenate(ts, axis=-1)
    t = jnp.clip(t, near[:, None], far[:, None])
    return jnp.sort(t, axis=-1)


def render_rays(
    scene: Scene, origins: jax.Array, directions: jax.Array, background: float = 1.0
) -> jax.Array:
    """Exact volume render of unit-direction rays: ``(N, 3), (N, 3) -> (N, 3)``."""
    t = breakpoints(scene, origins, directions)
    mid = 0.5 * (t[:, :-1] + t[:, 1:])
    pts = rendering.ray_points(origins, directions, mid)  # (N, M-1, 3)
    n, m = mid.shape
    dirs = jnp.broadcast_to(directions[:, None, :], (n, m, 3)).reshape(-1, 3)
    sigma = density(scene, pts.reshape(-1, 3)).reshape(n, m)
    rgb = color(scene, pts.reshape(-1, 3), dirs).reshape(n, m, 3)
    out = rendering.volume_render(
        sigma, rgb, t[:, :-1], t_far=t[:, -1], background=jnp.full((3,), background)
    )
    return out.rgb


class PosedImages(NamedTuple):
    """A posed image set: ``images (N, H, W, 3)``, ``poses (N, 4, 4)`` (c2w,
    OpenGL), ``K (3, 3)``."""

    images: jax.Array
    poses: jax.Array
    K: jax.Array


class Dataset(NamedTuple):
    """Train and test splits of one scene, plus their shared image size."""

    train: PosedImages
    test: PosedImages
    width: int
    height: int


def render_images(
    scene: Scene,
    poses: jax.Array,
    K: jax.Array,
    size: int,
    background: float = 1.0,
    chunk: int = 8192,
) -> jax.Array:
    """Exact renders for ``poses (N, 4, 4)``: returns ``(N, size, size, 3)``."""
    fn = jax.jit(lambda a, b: render_rays(scene, a, b, background))
    return rendering.render_poses(fn, poses, K, size, size, chunk)


def make_dataset(
    scene: Scene,
    key: jax.Array,
    *,
    size: int = 64,
    n_train: int = 50,
    n_test: int = 8,
    radius: float = BLENDER_RADIUS,
    fov_x: float = BLENDER_FOV_X,
    elevation_range_deg: tuple[float, float] = (5.0, 75.0),
    test_elevation_deg: float = 30.0,
    background: float = 1.0,
) -> Dataset:
    """Posed renders: random train cameras on the upper sphere, test cameras
    on an orbit at ``test_elevation_deg`` (azimuths offset by half a step so
    no test camera sits on a regular grid of train cameras)."""
    K = cameras.intrinsics(size, size, fov_x_deg=math.degrees(fov_x))
    train_poses = cameras.random_poses(
        key, n_train, radius, elevation_range_deg=elevation_range_deg
    )
    test_poses = cameras.orbit_poses(
        n_test, radius, test_elevation_deg, start_azimuth_deg=180.0 / n_test
    )
    train = PosedImages(
        render_images(scene, train_poses, K, size, background), train_poses, K
    )
    test = PosedImages(
        render_images(scene, test_poses, K, size, background), test_poses, K
    )
    return Dataset(train, test, size, size)
