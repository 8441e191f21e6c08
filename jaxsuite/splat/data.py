"""Data of the Deblurring-3DGS experiment: the scene, its blurry views, the points.

``make_data`` renders the procedural ground truth (``scenes``) at every view,
sharp and through each blur type's sub-cameras, and averages the sub-frames
(it raises ``OverflowError`` if any of those renders overflowed the
rasteriser's workspace, since the ground truth would then be wrong);
``initial_gaussians`` draws the noisy sparse point cloud every method starts
from. Both read a :class:`DataSettings`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxsuite.kernels.splatting import binning
from jaxsuite.splat import gaussians as gl
from jaxsuite.splat import scenes
from jaxsuite.splat.render import RasterSettings


@dataclasses.dataclass(frozen=True)
class DataSettings:
    """The scene, its cameras, its synthetic blur and the initial points.

    Attributes:
      seed: draws the blur (``seed + 1``) and the initial points (``seed``).
      scene: ``"detailed"`` (``scenes.make_detailed_scene``) or ``"cards"``
        (``scenes.make_scene``).
      scene_detail: the scene's point density.
      wall_half: the cards scene's back-wall half width and height.
      num_views: ``V``, the cameras (``scenes.make_views``).
      image_size: ``H = W`` in pixels.
      fov_deg: the field of view.
      test_every: every ``test_every``-th view is a sharp test view.
      blur_types: ``"defocus"`` and/or ``"motion"``.
      blur_samples: ``S``, sub-cameras averaged per blurry image.
      aperture: the thin lens's aperture radius (defocus).
      focus_min: each view's focus depth is drawn uniformly from
        ``[focus_min, focus_max]`` (defocus).
      focus_max: see ``focus_min``.
      motion_angle_deg: camera motion's rotation in degrees.
      motion_shift: camera motion's translation in scene units.
      gt_max_per_tile: the ground-truth renders' per-tile list length
        (0: the rasteriser's ``max_per_tile``).
      num_gaussians: ``n``, the initial points.
      init_noise: the standard deviation of their position noise.
    """

    seed: int
    scene: str
    scene_detail: float
    wall_half: tuple[float, float]
    num_views: int
    image_size: int
    fov_deg: float
    test_every: int
    blur_types: tuple[str, ...]
    blur_samples: int
    aperture: float
    focus_min: float
    focus_max: float
    motion_angle_deg: float
    motion_shift: float
    gt_max_per_tile: int
    num_gaussians: int
    init_noise: float


def make_data(settings: DataSettings, raster: RasterSettings) -> dict[str, Any]:
    """Ground truth, cameras, sharp images and blurry images per blur type.

    Args:
      settings: the scene, cameras and blur.
      raster: the rasteriser of the ground-truth renders (with
        ``settings.gt_max_per_tile`` when set).

    Returns:
      A dict: ``gt`` (the ground-truth ``Gaussians``), ``views`` (``V``
      cameras), ``train_ids`` and ``test_ids`` (int arrays), ``sharp``
      ``(V, H, W, 3)``, ``blurry`` (per blur type ``(V, H, W, 3)``),
      ``blur_cameras`` (per blur type ``((V, S, 4, 4), (V, S, 3, 3))``),
      ``focus`` ``(V,)`` and ``extent`` (the cameras' spread, a float).
    """
    s = settings
    if s.scene == "detailed":
        gt = scenes.make_detailed_scene(s.scene_detail)
    else:
        gt = scenes.make_scene(s.scene_detail, tuple(s.wall_half))
    views = scenes.make_views(s.num_views, s.image_size, s.fov_deg)
    train_ids, test_ids = scenes.split(s.num_views, s.test_every)
    size = s.image_size
    # The ground truth is denser than any trained model: its renders may get
    # a longer per-tile list (gt_max_per_tile; 0: max_per_tile).
    kw = dict(
        raster.kwargs(),
        max_per_tile=s.gt_max_per_tile or raster.max_per_tile,
    )

    @jax.jit
    def render_batch(poses, ks):
        fn = lambda p, k: scenes.render_sharp(
            gt, p, k, size, size, with_overflow=True, **kw
        )
        return jax.lax.map(lambda pk: fn(*pk), (poses, ks))

    nsub, nv = s.blur_samples, s.num_views
    key = jax.random.PRNGKey(s.seed + 1)
    poses, ks, focus = jax.jit(lambda k: _blur_cameras(s, views, k))(key)
    images, counts, overflow = render_batch(poses, ks)
    require_complete(
        overflow,
        counts,
        raster,
        "ground-truth renders (sharp views and blur sub-frames)",
    )
    sharp = images[:nv]
    blurry, blur_cameras = {}, {}
    for i, blur in enumerate(s.blur_types):
        part = slice(nv + i * nv * nsub, nv + (i + 1) * nv * nsub)
        sub = images[part].reshape(nv, nsub, size, size, 3)
        blurry[blur] = jax.vmap(scenes.blur_average)(sub)
        blur_cameras[blur] = (
            poses[part].reshape(nv, nsub, 4, 4),
            ks[part].reshape(nv, nsub, 3, 3),
        )
    centres = np.asarray(views.c2w[:, :3, 3])
    extent = 1.1 * float(np.max(np.linalg.norm(centres - centres.mean(0), axis=-1)))
    return dict(
        gt=gt,
        views=views,
        train_ids=train_ids,
        test_ids=test_ids,
        sharp=sharp,
        blurry=blurry,
        blur_cameras=blur_cameras,
        focus=focus,
        extent=max(extent, 1e-3),
    )


def require_complete(
    overflow: Any, counts: Any, raster: RasterSettings, what: str
) -> None:
    """Raises ``OverflowError`` if any of ``what`` overflowed the workspace.

    Args:
      overflow: ``(...)`` bools, one per render.
      counts: ``(...)`` intersections each render needed.
      raster: the workspace (``capacity`` and ``max_per_tile``).
      what: names the renders in the message.
    """
    flows = np.asarray(jax.device_get(overflow))
    if not flows.any():
        return
    needed = int(np.max(np.asarray(jax.device_get(counts))))
    raise binning.OverflowError(
        f"{int(flows.sum())} of {flows.size} {what} overflowed the rasteriser's "
        f"workspace (up to {needed} tile intersections for capacity="
        f"{raster.capacity}, or more than max_per_tile={raster.max_per_tile} "
        "(gt_max_per_tile for the ground truth) "
        "Gaussians in one tile), so they are incomplete. Raise capacity (to at "
        f"least {needed}) or max_per_tile."
    )


def _blur_cameras(
    settings: DataSettings, views: scenes.Views, key: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Sharp cameras, then per blur type ``blur_samples`` sub-cameras per view.

    Returns ``(poses (V (1 + B S), 4, 4), intrinsics (V (1 + B S), 3, 3),
    focus (V,))`` for ``V`` views, ``B`` blur types and ``S`` samples; ``focus``
    holds the defocus views' focus depths.
    """
    s = settings
    nsub, nv = s.blur_samples, s.num_views
    focus = jax.random.uniform(
        jax.random.fold_in(key, 1),
        (nv,),
        minval=s.focus_min,
        maxval=s.focus_max,
    )
    poses = [views.c2w]
    ks = [jnp.broadcast_to(views.K, (nv, 3, 3))]
    for blur in s.blur_types:
        if blur == "defocus":
            p, k = jax.vmap(
                lambda c, f: scenes.defocus_cameras(c, views.K, s.aperture, f, nsub)
            )(views.c2w, focus)
        elif blur == "motion":
            p = jax.vmap(
                lambda k, c: scenes.motion_cameras(
                    k, c, s.motion_angle_deg, s.motion_shift, nsub
                )
            )(jax.random.split(key, nv), views.c2w)
            k = jnp.broadcast_to(views.K, (nv, nsub, 3, 3))
        else:
            raise ValueError(f"Unknown blur type {blur!r}.")
        poses.append(p.reshape(-1, 4, 4))
        ks.append(k.reshape(-1, 3, 3))
    return jnp.concatenate(poses), jnp.concatenate(ks), focus


def initial_gaussians(
    settings: DataSettings, gt: gl.Gaussians, *, sh_degree: int
) -> gl.Gaussians:
    """A noisy, sparse "SfM" point cloud drawn from the ground-truth surfaces.

    Args:
      settings: ``seed``, ``num_gaussians`` (``n``), ``init_noise`` (and
        ``scene_detail``, named when ``n`` exceeds the scene's points).
      gt: the ground truth (``make_data``'s ``gt``).
      sh_degree: the largest SH degree the training will use.

    Returns:
      ``n`` Gaussians (``means`` ``(n, 3)`` ...).
    """
    s = settings
    key = jax.random.PRNGKey(s.seed)
    k1, k2, k3 = jax.random.split(key, 3)
    if s.num_gaussians > gt.num:
        raise ValueError(
            f"num_gaussians={s.num_gaussians} exceeds the {gt.num} points of "
            f"the scene at scene_detail={s.scene_detail}; lower it or raise "
            "scene_detail."
        )
    idx = jax.random.choice(k1, gt.num, (s.num_gaussians,), replace=False)
    pts = gt.means[idx] + s.init_noise * jax.random.normal(k2, (len(idx), 3))
    rgb = gl.sh_to_rgb(gt.sh[idx, 0]) + 0.1 * jax.random.normal(k3, (len(idx), 3))
    # At least one SH band is stored (checkpoints cannot hold empty arrays);
    # the active degree never exceeds sh_degree.
    return gl.init_from_points(
        key, pts, jnp.clip(rgb, 0.0, 1.0), sh_degree=max(1, sh_degree)
    )
