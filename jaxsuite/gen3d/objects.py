"""Procedural objects with exact ground truth: unions of SDF primitives.

An object is a union of up to ``MAX_PARTS`` primitives (sphere, rounded box,
torus about ``z``, capsule along ``z``) inside the cube ``[-1, 1]^3``. Its
signed distance is the minimum of the parts' distances (exact outside the
object for disjoint parts, a bound elsewhere, which is all sphere tracing
needs). The albedo is per part: part 0 carries a pattern (solid, horizontal
stripes or a 3-D checker) mixing colours ``A`` and ``B``; the other parts are
colour ``B``. A magenta disc, the *marker*, sits on the object's front
(``+x``, the side the reference camera at azimuth 0 sees) and on no other
side: a reconstruction that shows magenta in a back view has copied the front
to the back (the "Janus" failure).

Shading is Lambertian under a fixed world light plus ambient, so the radiance
is a function of the surface point alone and a view-independent colour field
can represent it exactly. Rendering sphere-traces the SDF and returns RGB on a
white background, the mask, the ray distance to the surface and the world
normal, for any camera (``jaxsuite.core.cameras`` conventions: ``+z`` up,
OpenGL cameras).

Object "classes" (the prompt of the image prior) are four part templates:
``snowman`` (two stacked spheres), ``lamp`` (capsule stem under a box),
``ring`` (a torus with a sphere on top) and ``robot`` (a box body with a
capsule on top); sizes, offsets, colours and pattern vary with the seed.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsuite.core import cameras

MAX_PARTS = 3
SPHERE, BOX, TORUS, CAPSULE = 0, 1, 2, 3
CLASSES = ("snowman", "lamp", "ring", "robot")
PATTERNS = ("solid", "stripes", "checker")
PALETTE = np.array(
    [
        [0.85, 0.20, 0.15],  # red
        [0.95, 0.80, 0.20],  # yellow
        [0.25, 0.70, 0.30],  # green
        [0.20, 0.40, 0.90],  # blue
        [0.55, 0.35, 0.20],  # brown
        [0.20, 0.75, 0.80],  # cyan
    ],
    np.float32,
)
COLOR_NAMES = ("red", "yellow", "green", "blue", "brown", "cyan")
MARKER_COLOR = (1.0, 0.0, 1.0)
LIGHT = (0.45, 0.3, 0.84)  # world light direction (normalised below)
AMBIENT = 0.45
BACKGROUND = 1.0
# Reference camera of DreamCraft3D's released configs (and Zero-1-to-3).
REF_RADIUS = 3.8
REF_FOV_DEG = 20.0
FAR = 1e3


class ObjectSpec(NamedTuple):
    """One object; every field is an array, so specs stack and ``vmap``.

    Attributes:
      kind: ``(P,)`` int primitive type (``SPHERE``, ``BOX``, ``TORUS``,
        ``CAPSULE``).
      active: ``(P,)`` bool, which parts exist.
      center: ``(P, 3)``.
      size: ``(P, 3)``: sphere ``(r, -, -)``; box half extents; torus
        ``(R, r, -)``; capsule ``(half_length, r, -)``.
      color_a: ``(3,)`` first colour; color_b: ``(3,)`` second colour.
      pattern: ``()`` int index into ``PATTERNS`` (applies to part 0).
      pattern_freq: ``()`` stripes / checker cells per world unit.
      marker_center: ``(3,)`` a point on the front surface.
      marker_radius: ``()`` disc radius.
      label: ``(4,)`` int ``[class, colour A index, colour B index, pattern]``.
    """

    kind: jax.Array
    active: jax.Array
    center: jax.Array
    size: jax.Array
    color_a: jax.Array
    color_b: jax.Array
    pattern: jax.Array
    pattern_freq: jax.Array
    marker_center: jax.Array
    marker_radius: jax.Array
    label: jax.Array


class Render(NamedTuple):
    """Ground-truth images ``(..., H, W, C)``."""

    rgb: jax.Array  # (..., H, W, 3) on a white background
    mask: jax.Array  # (..., H, W) 1 on the object
    depth: jax.Array  # (..., H, W) ray distance to the surface, 0 off the object
    normal: jax.Array  # (..., H, W, 3) unit world normal, 0 off the object
    marker: jax.Array  # (..., H, W) 1 where the marker is visible


# ----------------------------------------------------------------------------
# Signed distances.


def _norm(v: jax.Array) -> jax.Array:
    """Euclidean norm over the last axis with a finite gradient at 0 (every
    primitive's formula is evaluated for every part, so unselected branches
    must not produce NaN gradients)."""
    return jnp.sqrt(jnp.sum(v * v, axis=-1) + 1e-12)


def _part_sdf(kind: jax.Array, center: jax.Array, size: jax.Array, p: jax.Array):
    """Distance of points ``p (N, 3)`` to one primitive: ``(N,)``."""
    q = p - center[None]
    d_sphere = _norm(q) - size[0]
    rounding = 0.03
    b = jnp.abs(q) - (size[None] - rounding)
    d_box = (
        _norm(jnp.maximum(b, 0.0)) + jnp.minimum(jnp.max(b, axis=-1), 0.0) - rounding
    )
    ring = _norm(q[:, :2]) - size[0]
    d_torus = jnp.sqrt(ring**2 + q[:, 2] ** 2 + 1e-12) - size[1]
    z = q[:, 2] - jnp.clip(q[:, 2], -size[0], size[0])
    d_capsule = jnp.sqrt(jnp.sum(q[:, :2] ** 2, -1) + z**2 + 1e-12) - size[1]
    return jnp.select(
        [kind == SPHERE, kind == BOX, kind == TORUS],
        [d_sphere, d_box, d_torus],
        d_capsule,
    )


def part_sdfs(spec: ObjectSpec, p: jax.Array) -> jax.Array:
    """Distances to every part, ``(N, P)``; inactive parts are at ``FAR``."""
    d = jax.vmap(_part_sdf, in_axes=(0, 0, 0, None), out_axes=1)(
        spec.kind, spec.center, spec.size, p
    )
    return jnp.where(spec.active[None], d, FAR)


def sdf(spec: ObjectSpec, p: jax.Array) -> jax.Array:
    """Signed distance of the union at points ``p (N, 3)``: ``(N,)``."""
    return jnp.min(part_sdfs(spec, p), axis=-1)


def sdf_normal(spec: ObjectSpec, p: jax.Array) -> jax.Array:
    """Unit gradient of the SDF at ``p (N, 3)``: ``(N, 3)``."""
    g = jax.vmap(jax.grad(lambda x: sdf(spec, x[None])[0]))(p)
    return g / jnp.maximum(jnp.linalg.norm(g, axis=-1, keepdims=True), 1e-8)


# ----------------------------------------------------------------------------
# Appearance.


def marker_mask(spec: ObjectSpec, p: jax.Array, normal: jax.Array) -> jax.Array:
    """1 where a surface point lies on the front marker disc: ``(N,)``."""
    near = jnp.linalg.norm(p - spec.marker_center[None], axis=-1) < spec.marker_radius
    return (near & (normal[:, 0] > 0.3)).astype(jnp.float32)


def albedo(spec: ObjectSpec, p: jax.Array, normal: jax.Array) -> jax.Array:
    """Albedo of surface points ``p (N, 3)`` with normals ``(N, 3)``: ``(N, 3)``."""
    part = jnp.argmin(part_sdfs(spec, p), axis=-1)
    f = spec.pattern_freq
    stripes = jnp.floor(p[:, 2] * f) % 2
    checker = jnp.sum(jnp.floor(p * f), axis=-1) % 2
    use_b = jnp.select(
        [spec.pattern == 0, spec.pattern == 1],
        [jnp.zeros_like(stripes), stripes],
        checker,
    )
    use_b = jnp.where(part == 0, use_b, 1.0)[:, None]
    col = (1.0 - use_b) * spec.color_a[None] + use_b * spec.color_b[None]
    m = marker_mask(spec, p, normal)[:, None]
    return (1.0 - m) * col + m * jnp.asarray(MARKER_COLOR, jnp.float32)[None]


def light_direction() -> jax.Array:
    light = jnp.asarray(LIGHT, jnp.float32)
    return light / jnp.linalg.norm(light)


def shade(albedo_rgb: jax.Array, normal: jax.Array) -> jax.Array:
    """Lambert + ambient radiance: ``albedo * (a + (1 - a) max(0, n . l))``."""
    lam = jnp.maximum(normal @ light_direction(), 0.0)
    return albedo_rgb * (AMBIENT + (1.0 - AMBIENT) * lam)[:, None]


# ----------------------------------------------------------------------------
# Sphere tracing.


def sphere_trace(
    sdf_fn,
    origins: jax.Array,
    directions: jax.Array,
    *,
    steps: int = 64,
    bound: float = 1.0,
    eps: float = 1e-3,
) -> tuple[jax.Array, jax.Array]:
    """First hit of rays ``(N, 3), (N, 3)`` (unit directions) on ``sdf_fn``'s zero set.

    Marching starts where the ray enters the sphere of radius ``sqrt(3) bound``
    and stops at its exit.

    Returns:
      ``(t, hit)``: ray distance ``(N,)`` and whether it converged ``(N,)``.
    """
    from jaxsuite.core import rendering

    near, far, inside = rendering.intersect_sphere(
        origins, directions, radius=math.sqrt(3.0) * bound
    )

    def body(_, t):
        d = sdf_fn(origins + t[:, None] * directions)
        return jnp.minimum(t + d, far + 1.0)

    t = jax.lax.fori_loop(0, steps, body, near)
    d = sdf_fn(origins + t[:, None] * directions)
    hit = inside & (jnp.abs(d) < eps * 10.0) & (t < far)
    return t, hit


def render_rays(
    spec: ObjectSpec, origins: jax.Array, directions: jax.Array, steps: int = 64
) -> Render:
    """Ground truth for rays ``(N, 3), (N, 3)``; fields have leading shape ``(N,)``."""
    t, hit = sphere_trace(lambda x: sdf(spec, x), origins, directions, steps=steps)
    p = origins + t[:, None] * directions
    n = sdf_normal(spec, p)
    radiance = shade(albedo(spec, p, n), n)
    m = hit.astype(jnp.float32)
    rgb = m[:, None] * radiance + (1.0 - m[:, None]) * BACKGROUND
    return Render(
        rgb=rgb,
        mask=m,
        depth=m * t,
        normal=m[:, None] * n,
        marker=m * marker_mask(spec, p, n),
    )


def camera(
    elevation_deg: jax.typing.ArrayLike,
    azimuth_deg: jax.typing.ArrayLike,
    radius: jax.typing.ArrayLike = REF_RADIUS,
) -> jax.Array:
    """``c2w (..., 4, 4)`` of cameras on a sphere looking at the origin.

    Azimuth 0 is on ``+x`` (the front); angles in degrees.
    """
    el = jnp.deg2rad(jnp.asarray(elevation_deg, jnp.float32))
    az = jnp.deg2rad(jnp.asarray(azimuth_deg, jnp.float32))
    r = jnp.asarray(radius, jnp.float32)
    el, az, r = jnp.broadcast_arrays(el, az, r)
    eye = r[..., None] * jnp.stack(
        [jnp.cos(el) * jnp.cos(az), jnp.cos(el) * jnp.sin(az), jnp.sin(el)], -1
    )
    return cameras.look_at(eye, jnp.zeros(3, jnp.float32))


def intrinsics(size: int, fov_deg: float = REF_FOV_DEG) -> jax.Array:
    """Square-image intrinsics ``(3, 3)`` with field of view ``fov_deg``."""
    return cameras.intrinsics(size, size, fov_x_deg=fov_deg)


@functools.partial(jax.jit, static_argnames=("size", "fov_deg", "steps"))
def render(
    spec: ObjectSpec,
    c2w: jax.Array,
    size: int,
    fov_deg: float = REF_FOV_DEG,
    steps: int = 64,
) -> Render:
    """Ground-truth images of one object from cameras ``c2w (V, 4, 4)``.

    Returns:
      :class:`Render` with ``rgb (V, size, size, 3)`` etc.
    """
    o, d = cameras.generate_rays(c2w, intrinsics(size, fov_deg), size, size)
    shape = o.shape[:-1]
    out = render_rays(spec, o.reshape(-1, 3), d.reshape(-1, 3), steps)
    return jax.tree.map(lambda x: x.reshape(shape + x.shape[1:]), out)


# ----------------------------------------------------------------------------
# Random objects.


def _part(kind, center, size):
    return kind, np.asarray(center, np.float32), np.asarray(size, np.float32)


def sample_spec(seed: int, class_id: int | None = None) -> ObjectSpec:
    """A random object of class ``class_id`` (random when None), from ``seed``."""
    rng = np.random.default_rng(seed)
    cls = int(rng.integers(len(CLASSES))) if class_id is None else int(class_id)
    u = lambda a, b: float(rng.uniform(a, b))
    if cls == 0:  # snowman
        r0, r1 = u(0.33, 0.42), u(0.2, 0.27)
        z0 = u(-0.3, -0.2)
        parts = [
            _part(SPHERE, (0, 0, z0), (r0, 0, 0)),
            _part(SPHERE, (0, 0, z0 + r0 + 0.7 * r1), (r1, 0, 0)),
        ]
        front = np.array([r0, 0.0, z0 + 0.1 * r0])
    elif cls == 1:  # lamp: box shade on a capsule stem
        hx, hz = u(0.25, 0.35), u(0.1, 0.17)
        stem_h, stem_r = u(0.2, 0.3), u(0.07, 0.11)
        zt = u(0.1, 0.25)
        parts = [
            _part(BOX, (0, 0, zt), (hx, u(0.25, 0.35), hz)),
            _part(CAPSULE, (0, 0, zt - hz - stem_h), (stem_h, stem_r, 0)),
        ]
        front = np.array([hx, 0.0, zt])
    elif cls == 2:  # ring with a bead on top
        big, small = u(0.35, 0.45), u(0.1, 0.14)
        zr = u(-0.25, -0.1)
        bead = u(0.13, 0.19)
        parts = [
            _part(TORUS, (0, 0, zr), (big, small, 0)),
            _part(SPHERE, (0, 0, zr + small + bead * 0.8), (bead, 0, 0)),
        ]
        front = np.array([big + small, 0.0, zr])
    else:  # robot: box body with a capsule head
        hx, hy, hz = u(0.2, 0.3), u(0.22, 0.32), u(0.25, 0.33)
        zb = u(-0.25, -0.15)
        parts = [
            _part(BOX, (0, 0, zb), (hx, hy, hz)),
            _part(CAPSULE, (0, 0, zb + hz + 0.15), (u(0.04, 0.1), u(0.11, 0.15), 0)),
        ]
        front = np.array([hx, 0.0, zb + 0.3 * hz])
    if rng.uniform() < 0.4 and cls in (0, 3):  # an arm on the +y side
        zc = float(parts[0][1][2])
        parts.append(_part(SPHERE, (0, u(0.3, 0.4), zc), (u(0.09, 0.13), 0, 0)))
    ca, cb = (int(c) for c in rng.choice(len(PALETTE), 2, replace=False))
    pattern = int(rng.integers(len(PATTERNS)))
    return from_parts(
        parts,
        color_a=PALETTE[ca],
        color_b=PALETTE[cb],
        pattern=pattern,
        pattern_freq=u(5.0, 8.0),
        marker_center=front,
        marker_radius=u(0.1, 0.13),
        label=(cls, ca, cb, pattern),
    )


def from_parts(
    parts: list[tuple[int, np.ndarray, np.ndarray]],
    *,
    color_a=PALETTE[0],
    color_b=PALETTE[3],
    pattern: int = 0,
    pattern_freq: float = 6.0,
    marker_center=(1.0, 0.0, 0.0),
    marker_radius: float = 0.0,
    label=(0, 0, 3, 0),
) -> ObjectSpec:
    """An :class:`ObjectSpec` from ``[(kind, center (3,), size (3,)), ...]``."""
    n = len(parts)
    if not 1 <= n <= MAX_PARTS:
        raise ValueError(f"An object has 1 to {MAX_PARTS} parts, got {n}.")
    pad = MAX_PARTS - n
    f32 = lambda v: jnp.asarray(np.asarray(v, np.float32))
    kind = np.array([p[0] for p in parts] + [SPHERE] * pad, np.int32)
    center = [np.asarray(p[1], np.float32) for p in parts]
    size = [np.asarray(p[2], np.float32) for p in parts]
    return ObjectSpec(
        kind=jnp.asarray(kind),
        active=jnp.asarray(np.arange(MAX_PARTS) < n),
        center=f32(center + [np.zeros(3, np.float32)] * pad),
        size=f32(size + [np.full(3, 0.1, np.float32)] * pad),
        color_a=f32(color_a),
        color_b=f32(color_b),
        pattern=jnp.asarray(pattern, jnp.int32),
        pattern_freq=f32(pattern_freq),
        marker_center=f32(marker_center),
        marker_radius=f32(marker_radius),
        label=jnp.asarray(label, jnp.int32),
    )


def stack_specs(specs: list[ObjectSpec]) -> ObjectSpec:
    """Stacks specs along a new leading axis (for ``vmap``)."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *specs)


def describe(spec: ObjectSpec) -> str:
    """A short text description, e.g. ``"red/blue striped snowman"``."""
    cls, ca, cb, pat = (int(v) for v in np.asarray(spec.label))
    return f"{COLOR_NAMES[ca]}/{COLOR_NAMES[cb]} {PATTERNS[pat]} {CLASSES[cls]}"
