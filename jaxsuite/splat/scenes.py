"""Procedural scenes with sharp ground truth, and synthetic blur.

The ground truth is a known set of Gaussians: textured planes at three depths
(a back wall, a middle card and a front card) seen by a forward-facing,
LLFF-like grid of cameras. World ``+z`` is up and the cameras look along
``+y``. Every ``test_every``-th view is a sharp test view; the others are
training views, rendered blurry:

* **defocus**: a thin lens. ``K`` points on an aperture disk of radius ``A``
  shift the camera centre in its image plane and the principal point with it,
  so the plane at depth ``d_f`` stays fixed; a point at depth ``z`` spreads
  over a disk of radius ``A f |z - d_f| / (z d_f)`` pixels.
* **camera motion**: poses interpolated along a short path (a rotation of a
  few degrees about a random axis and a translation of a few centimetres,
  centred on the view's pose), ``K`` sub-frames.

Sub-frames are averaged in linear RGB (sRGB -> linear, mean, -> sRGB), as
Deblur-NeRF's data were made.

For speed measurements, :func:`random_scene` fills a camera's view frustum
with random Gaussians of a few pixels on screen and :func:`nearby_cameras`
gives a few cameras that all see it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsuite.core import cameras
from jaxsuite.splat import gaussians as gl
from jaxsuite.splat import render as render_lib


class Views(NamedTuple):
    """Cameras of a scene: ``c2w`` ``(V, 4, 4)``, ``K`` ``(3, 3)``, image size."""

    c2w: jax.Array
    K: jax.Array
    width: int
    height: int


def _texture(kind: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Colour ``(..., 3)`` of a procedural texture at plane coordinates."""
    if kind == 0:  # checkerboard with colour bands
        check = (np.floor(u * 2.5) + np.floor(v * 2.5)) % 2
        base = np.stack(
            [0.5 + 0.4 * np.sin(3 * u), 0.5 + 0.4 * np.cos(2 * v), 0.4 + 0 * u], -1
        )
        return np.clip(base * (0.35 + 0.65 * check[..., None]), 0, 1)
    if kind == 1:  # concentric rings
        r = np.sqrt(u**2 + v**2)
        ring = 0.5 + 0.5 * np.sign(np.sin(r * 20))
        return np.stack([0.9 * ring + 0.05, 0.3 + 0 * u, 0.9 - 0.8 * ring], -1)
    stripes = 0.5 + 0.5 * np.sign(np.sin((u + v) * 22))  # diagonal stripes
    return np.stack([0.1 + 0.8 * stripes, 0.8 * stripes + 0.1, 0.95 + 0 * u], -1)


def _plane(center, half, spacing, kind, texture=None):
    cx, cy, cz = center
    hx, hz = half
    us = np.arange(-hx, hx + 1e-9, spacing)
    vs = np.arange(-hz, hz + 1e-9, spacing)
    u, v = np.meshgrid(us, vs, indexing="xy")
    u, v = u.ravel(), v.ravel()
    means = np.stack([cx + u, np.full_like(u, cy), cz + v], -1)
    colors = (texture or _texture)(kind, u, v)
    scales = np.tile([[0.6 * spacing, 0.05 * spacing, 0.6 * spacing]], (len(u), 1))
    return means, colors, scales


def make_scene(
    detail: float = 1.0, wall_half: tuple[float, float] = (2.6, 2.4)
) -> gl.Gaussians:
    """The ground-truth Gaussians (SH degree 0).

    Args:
      detail: multiplies the Gaussian density (1.0: about 4,500 Gaussians).
      wall_half: the back wall's half width and half height (world units, at
        depth 4). The default fills every view of :func:`make_views`, as in
        forward-facing captures; ``(2.0, 1.6)`` leaves white background above
        and below it.
    """
    parts = [
        _plane((0.0, 4.0, 0.0), wall_half, 0.09 / detail, 0),
        _plane((-0.45, 2.5, 0.1), (0.55, 0.55), 0.04 / detail, 1),
        _plane((0.55, 1.6, -0.25), (0.3, 0.3), 0.025 / detail, 2),
    ]
    return _gaussians(parts)


def _fine_texture(kind: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """High-frequency colour ``(..., 3)``: what blur removes first."""
    if kind == 0:  # fine checker over a colour gradient, with hairlines
        check = (np.floor(u * 6.0) + np.floor(v * 6.0)) % 2
        lines = (np.abs(np.sin(np.pi * u * 3.0)) < 0.12).astype(float)
        base = np.stack(
            [0.55 + 0.35 * np.sin(1.3 * u), 0.5 + 0.3 * np.cos(1.1 * v), 0.45 + 0 * u],
            -1,
        )
        out = base * (0.3 + 0.7 * check[..., None])
        return np.clip(out * (1 - 0.85 * lines[..., None]), 0, 1)
    if kind == 1:  # dense rings
        r = np.sqrt(u**2 + v**2)
        ring = 0.5 + 0.5 * np.sign(np.sin(r * 45))
        return np.stack([0.9 * ring + 0.05, 0.25 + 0.5 * (u > 0), 0.9 - 0.8 * ring], -1)
    if kind == 2:  # fine diagonal stripes
        stripes = 0.5 + 0.5 * np.sign(np.sin((u + v) * 60))
        return np.stack([0.1 + 0.8 * stripes, 0.8 * stripes + 0.1, 0.95 + 0 * u], -1)
    # floor: small tiles with dark grout
    grout = (np.abs(np.sin(np.pi * u * 4)) < 0.15) | (
        np.abs(np.sin(np.pi * v * 4)) < 0.15
    )
    tone = 0.55 + 0.3 * ((np.floor(u * 4) + np.floor(v * 4)) % 3 == 0)
    col = np.stack([tone, 0.8 * tone, 0.6 * tone], -1)
    return np.where(grout[..., None], 0.15, col)


def _rod(start, end, radius, spacing, color):
    """A thin rod: Gaussians along a segment, ``radius`` thick."""
    start, end = np.asarray(start, float), np.asarray(end, float)
    n = max(int(np.linalg.norm(end - start) / spacing), 2)
    t = np.linspace(0, 1, n)[:, None]
    means = start + t * (end - start)
    colors = np.tile(np.asarray(color, float), (n, 1))
    scales = np.tile([[radius, radius, radius]], (n, 1))
    scales[:, np.argmax(np.abs(end - start))] = 0.6 * spacing
    return means, colors, scales


def make_detailed_scene(detail: float = 1.0) -> gl.Gaussians:
    """A scene made to show blur: fine textures, thin rods, depths 1.2 to 6.

    A back wall at depth 6 (fine checker and hairlines), a tiled floor that
    runs from depth 1 to 6 below the cameras (so the defocus of one view
    varies across the frame), cards at depths 3.2, 2.2 and 1.3 (dense rings,
    fine stripes, checker) and dark and bright rods (poles and a wire) a few
    hundredths wide at depths 1.2 to 4.5.

    Args:
      detail: multiplies the Gaussian density per axis (1.0: about 24,000
        Gaussians; texture is sampled at the Gaussians, so detail sets the
        finest representable pattern).
    """
    sp = 0.06 / detail
    parts = [
        _plane((0.0, 6.0, 0.2), (3.4, 3.0), sp, 0, _fine_texture),
        _plane((-0.6, 3.2, 0.25), (0.6, 0.6), 0.6 * sp, 1, _fine_texture),
        _plane((0.75, 2.2, -0.2), (0.35, 0.4), 0.4 * sp, 2, _fine_texture),
        _plane((-0.55, 1.3, -0.35), (0.15, 0.15), 0.25 * sp, 0, _fine_texture),
    ]
    # The floor: a horizontal plane (z = -1.1) from depth 1 to 6.
    us = np.arange(-2.6, 2.6 + 1e-9, 1.2 * sp)
    ys = np.arange(1.0, 6.0 + 1e-9, 1.2 * sp)
    u, y = (a.ravel() for a in np.meshgrid(us, ys, indexing="xy"))
    floor = np.stack([u, y, np.full_like(u, -1.1)], -1)
    f_scales = np.tile([[0.6 * 1.2 * sp, 0.6 * 1.2 * sp, 0.05 * sp]], (len(u), 1))
    parts.append((floor, _fine_texture(3, u, y), f_scales))
    rod_sp = 0.25 * sp
    for x, y, color in ((0.25, 1.2, 0.05), (-1.2, 2.0, 0.1), (1.4, 4.5, 0.95)):
        parts.append(_rod((x, y, -1.1), (x, y, 1.3), 0.012, rod_sp, (color,) * 3))
    parts.append(
        _rod((-1.8, 2.8, 0.95), (1.8, 2.8, 0.85), 0.01, rod_sp, (0.1, 0.1, 0.3))
    )
    return _gaussians(parts)


def _gaussians(parts) -> gl.Gaussians:
    means = np.concatenate([p[0] for p in parts]).astype(np.float32)
    colors = np.concatenate([p[1] for p in parts]).astype(np.float32)
    scales = np.concatenate([p[2] for p in parts]).astype(np.float32)
    n = len(means)
    sh = np.zeros((n, 1, 3), np.float32)
    sh[:, 0] = np.asarray(gl.rgb_to_sh(colors))
    return gl.Gaussians(
        means=jnp.asarray(means),
        log_scales=jnp.log(jnp.asarray(scales)),
        quats=jnp.zeros((n, 4)).at[:, 0].set(1.0),
        opacity_logits=jnp.full((n,), 3.0),
        sh=jnp.asarray(sh),
    )


def make_views(
    num_views: int = 16,
    size: int = 64,
    fov_deg: float = 50.0,
    spread: float = 0.3,
    target_depth: float = 3.0,
) -> Views:
    """A forward-facing grid of cameras near the origin looking along ``+y``."""
    cols = int(math.ceil(math.sqrt(num_views)))
    rows = int(math.ceil(num_views / cols))
    idx = np.arange(num_views)
    x = (idx % cols / max(cols - 1, 1) - 0.5) * 2 * spread
    z = (idx // cols / max(rows - 1, 1) - 0.5) * 1.4 * spread
    eye = np.stack([x, np.zeros_like(x), z], -1)
    target = np.stack([0.3 * x, np.full_like(x, target_depth), 0.3 * z], -1)
    c2w = cameras.look_at(jnp.asarray(eye), jnp.asarray(target))
    return Views(c2w, cameras.intrinsics(size, size, fov_x_deg=fov_deg), size, size)


def split(num_views: int, test_every: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """``(train_ids, test_ids)``: every ``test_every``-th view is a test view."""
    ids = np.arange(num_views)
    test = ids[::test_every]
    return np.setdiff1d(ids, test), test


def srgb_to_linear(x: jax.Array) -> jax.Array:
    """The sRGB transfer function's inverse."""
    x = jnp.clip(x, 0.0, 1.0)
    return jnp.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: jax.Array) -> jax.Array:
    """The sRGB transfer function."""
    x = jnp.clip(x, 0.0, 1.0)
    return jnp.where(
        x <= 0.0031308, 12.92 * x, 1.055 * jnp.maximum(x, 1e-12) ** (1 / 2.4) - 0.055
    )


def render_sharp(
    g: gl.Gaussians, c2w, K, width, height, *, with_overflow: bool = False, **kw
) -> jax.Array | tuple[jax.Array, jax.Array, jax.Array]:
    """Sharp ``(H, W, 3)`` render of the ground truth on a white background.

    With ``with_overflow`` it returns ``(image, num_intersections, overflow)``:
    an overflowing render is incomplete, and ground truth made from one is
    wrong (``data.make_data`` refuses it).
    """
    out = render_lib.render_gaussians(
        g,
        c2w,
        K,
        width=width,
        height=height,
        sh_degree=0,
        background=jnp.ones(3),
        **kw,
    )
    image = jnp.clip(out.image, 0.0, 1.0)
    if with_overflow:
        return image, out.num_intersections, out.overflow
    return image


def aperture_samples(num: int) -> np.ndarray:
    """``(num, 2)`` points filling the unit disk (a Fibonacci spiral)."""
    i = np.arange(num) + 0.5
    r = np.sqrt(i / num)
    theta = np.pi * (1 + 5**0.5) * i
    return np.stack([r * np.cos(theta), r * np.sin(theta)], -1)


def defocus_cameras(
    c2w: jax.Array, K: jax.Array, aperture: float, focus_depth: float, num: int
) -> tuple[jax.Array, jax.Array]:
    """Thin-lens sub-cameras: ``(num, 4, 4)`` poses and ``(num, 3, 3)`` intrinsics."""
    s = jnp.asarray(aperture_samples(num) * aperture, jnp.float32)
    right, up = c2w[:3, 0], c2w[:3, 1]
    shift = s[:, :1] * right[None, :] + s[:, 1:] * up[None, :]
    poses = jnp.broadcast_to(c2w, (num, 4, 4)).at[:, :3, 3].add(shift)
    ks = jnp.broadcast_to(K, (num, 3, 3))
    ks = ks.at[:, 0, 2].add(K[0, 0] * s[:, 0] / focus_depth)
    ks = ks.at[:, 1, 2].add(-K[1, 1] * s[:, 1] / focus_depth)
    return poses, ks


def defocus_enlarged_scales(
    means: jax.Array,
    scales: jax.Array,
    c2w: jax.Array,
    aperture: float,
    focus_depth: jax.Array,
) -> jax.Array:
    """Scales grown by the thin-lens blur at each Gaussian's depth.

    The exact per-view factors that Deblurring-3DGS's defocus MLP must learn,
    for a control that knows the blur: a point at depth ``z`` spreads over a
    disk of radius ``A |z - d_f| / d_f`` (world units, at depth ``z``; see
    :func:`defocus_cameras`), whose per-axis standard deviation is half of
    that, and the variances add: ``s' = sqrt(s^2 + (A |z - d_f| / (2 d_f))^2)``.

    Args:
      means: ``(N, 3)`` Gaussian centres; scales: ``(N, 3)``.
      c2w: ``(4, 4)`` camera looking along its ``-z`` axis.
      aperture: aperture radius ``A``; focus_depth: ``d_f``.

    Returns:
      ``(N, 3)`` enlarged scales.
    """
    depth = (means - c2w[None, :3, 3]) @ (-c2w[:3, 2])
    extra = aperture * jnp.abs(depth - focus_depth) / (2.0 * focus_depth)
    return jnp.sqrt(scales**2 + extra[:, None] ** 2)


def _axis_angle_matrix(axis_angle: jax.Array) -> jax.Array:
    theta = jnp.linalg.norm(axis_angle)
    k = axis_angle / jnp.maximum(theta, 1e-12)
    kx = jnp.array(
        [[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]], jnp.float32
    )
    return jnp.eye(3) + jnp.sin(theta) * kx + (1 - jnp.cos(theta)) * kx @ kx


def motion_cameras(
    key: jax.Array, c2w: jax.Array, max_angle_deg: float, max_shift: float, num: int
) -> jax.Array:
    """``(num, 4, 4)`` poses along a straight path centred on ``c2w``.

    A random axis and angle in ``[max/2, max]`` degrees, and a random
    translation of length in ``[max/2, max]``, are spread linearly over
    ``t in [-1/2, 1/2]`` (rotation about the camera centre).
    """
    k1, k2, k3, k4 = jax.random.split(key, 4)
    axis = jax.random.normal(k1, (3,))
    axis = axis / jnp.linalg.norm(axis)
    angle = jnp.deg2rad(max_angle_deg) * jax.random.uniform(k2, minval=0.5, maxval=1)
    direction = jax.random.normal(k3, (3,))
    direction = direction / jnp.linalg.norm(direction)
    length = max_shift * jax.random.uniform(k4, minval=0.5, maxval=1.0)
    ts = jnp.linspace(-0.5, 0.5, num)

    def pose(t):
        rot = _axis_angle_matrix(axis * angle * t) @ c2w[:3, :3]
        trans = c2w[:3, 3] + direction * length * t
        return c2w.at[:3, :3].set(rot).at[:3, 3].set(trans)

    return jax.vmap(pose)(ts)


def blur_average(images: jax.Array) -> jax.Array:
    """Mean of ``(K, H, W, 3)`` sRGB sub-frames in linear RGB, back to sRGB."""
    return linear_to_srgb(jnp.mean(srgb_to_linear(images), axis=0))


def random_scene(
    key: jax.Array, n: int, focal: float, fov_deg: float, aspect: float = 1.0
) -> dict[str, jax.Array]:
    """``n`` random Gaussians in front of an identity (OpenGL, ``-z``) camera.

    Depths are uniform in ``[2, 6]``; the means fill the horizontal field of
    view ``fov_deg`` and ``aspect`` (height / width) times it vertically;
    standard deviations are 1 to 4 pixels on screen at focal length ``focal``
    (pixels); rotations are random unit quaternions, opacities uniform in
    ``[0.05, 0.9]`` and SH coefficients normal with deviation 0.3 (degree 3).

    Returns:
      ``{"means": (N, 3), "scales": (N, 3), "quats": (N, 4), "opacities":
      (N,), "sh": (N, 16, 3)}``, the activated quantities :func:`render`
      takes.
    """
    k = jax.random.split(key, 6)
    depth = jax.random.uniform(k[0], (n,), minval=2.0, maxval=6.0)
    half = np.tan(np.deg2rad(fov_deg) / 2)
    xy = jax.random.uniform(k[1], (n, 2), minval=-half, maxval=half) * depth[:, None]
    if aspect != 1.0:
        xy = xy * jnp.array([[1.0, aspect]], jnp.float32)
    means = jnp.concatenate([xy, -depth[:, None]], axis=-1)
    pixels = jax.random.uniform(k[2], (n, 3), minval=1.0, maxval=4.0)
    quats = jax.random.normal(k[3], (n, 4))
    return dict(
        means=means,
        scales=pixels * depth[:, None] / focal,
        quats=quats / jnp.linalg.norm(quats, axis=-1, keepdims=True),
        opacities=jax.random.uniform(k[4], (n,), minval=0.05, maxval=0.9),
        sh=0.3 * jax.random.normal(k[5], (n, 16, 3)),
    )


def nearby_cameras(
    num: int, spread: float = 0.3, target_depth: float = 4.0
) -> jax.Array:
    """``(num, 4, 4)`` OpenGL poses that all look into :func:`random_scene`.

    Camera 0 is the identity; the others sit on a circle of radius ``spread``
    in the ``z = 0`` plane and look at ``(0, 0, -target_depth)``.
    """
    angle = 2 * np.pi * np.arange(num) / max(num - 1, 1)
    radius = np.where(np.arange(num) == 0, 0.0, spread)
    eye = np.stack([radius * np.cos(angle), radius * np.sin(angle), 0 * angle], -1)
    target = np.array([0.0, 0.0, -target_depth])
    return cameras.look_at(jnp.asarray(eye), jnp.asarray(target), (0.0, 1.0, 0.0))
