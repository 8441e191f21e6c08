"""Data of the Deblurring-3DGS experiment: the scene, its blurry views, the points.

``make_data`` renders the procedural ground truth (``scenes``) at every view,
sharp and through each blur type's sub-cameras, and averages the sub-frames
(it raises ``OverflowError`` if any of those renders overflowed the
rasteriser's workspace, since the ground truth would then be wrong);
``initial_gaussians`` draws the noisy sparse point cloud every method starts
from.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxsuite.kernels.splatting import binning
from jaxsuite.splat import gaussians as gl
from jaxsuite.splat import scenes


def raster_kwargs(config: Any) -> dict:
    return dict(
        capacity=config.capacity,
        max_per_tile=config.max_per_tile,
        tile=config.tile,
        implementation=config.implementation or None,
    )


def make_data(config: Any) -> dict[str, Any]:
    """Ground truth, cameras, sharp images and blurry images per blur type."""
    if config.scene == "detailed":
        gt = scenes.make_detailed_scene(config.scene_detail)
    else:
        gt = scenes.make_scene(config.scene_detail, tuple(config.wall_half))
    views = scenes.make_views(config.num_views, config.image_size, config.fov_deg)
    train_ids, test_ids = scenes.split(config.num_views, config.test_every)
    size = config.image_size
    # The ground truth is denser than any trained model: its renders may get
    # a longer per-tile list (gt_max_per_tile; 0: max_per_tile).
    kw = dict(
        raster_kwargs(config),
        max_per_tile=config.gt_max_per_tile or config.max_per_tile,
    )

    @jax.jit
    def render_batch(poses, ks):
        fn = lambda p, k: scenes.render_sharp(
            gt, p, k, size, size, with_overflow=True, **kw
        )
        return jax.lax.map(lambda pk: fn(*pk), (poses, ks))

    nsub, nv = config.blur_samples, config.num_views
    key = jax.random.PRNGKey(config.seed + 1)
    poses, ks, focus = jax.jit(lambda k: _blur_cameras(config, views, k))(key)
    images, counts, overflow = render_batch(poses, ks)
    require_complete(
        overflow,
        counts,
        config,
        "ground-truth renders (sharp views and blur sub-frames)",
    )
    sharp = images[:nv]
    blurry, blur_cameras = {}, {}
    for i, blur in enumerate(config.blur_types):
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


def require_complete(overflow: Any, counts: Any, config: Any, what: str) -> None:
    """Raises ``OverflowError`` if any of ``what`` overflowed the workspace.

    Args:
      overflow: ``(...)`` bools, one per render.
      counts: ``(...)`` intersections each render needed.
      config: holds ``capacity`` and ``max_per_tile``.
      what: names the renders in the message.
    """
    flows = np.asarray(jax.device_get(overflow))
    if not flows.any():
        return
    needed = int(np.max(np.asarray(jax.device_get(counts))))
    raise binning.OverflowError(
        f"{int(flows.sum())} of {flows.size} {what} overflowed the rasteriser's "
        f"workspace (up to {needed} tile intersections for capacity="
        f"{config.capacity}, or more than max_per_tile={config.max_per_tile} "
        "(gt_max_per_tile for the ground truth) "
        "Gaussians in one tile), so they are incomplete. Raise capacity (to at "
        f"least {needed}) or max_per_tile."
    )


def _blur_cameras(config, views, key):
    """Sharp cameras, then per blur type ``blur_samples`` sub-cameras per view.

    Returns ``(poses (V (1 + B S), 4, 4), intrinsics (V (1 + B S), 3, 3),
    focus (V,))`` for ``V`` views, ``B`` blur types and ``S`` samples; ``focus``
    holds the defocus views' focus depths.
    """
    nsub, nv = config.blur_samples, config.num_views
    focus = jax.random.uniform(
        jax.random.fold_in(key, 1),
        (nv,),
        minval=config.focus_min,
        maxval=config.focus_max,
    )
    poses = [views.c2w]
    ks = [jnp.broadcast_to(views.K, (nv, 3, 3))]
    for blur in config.blur_types:
        if blur == "defocus":
            p, k = jax.vmap(
                lambda c, f: scenes.defocus_cameras(
                    c, views.K, config.aperture, f, nsub
                )
            )(views.c2w, focus)
        elif blur == "motion":
            p = jax.vmap(
                lambda k, c: scenes.motion_cameras(
                    k, c, config.motion_angle_deg, config.motion_shift, nsub
                )
            )(jax.random.split(key, nv), views.c2w)
            k = jnp.broadcast_to(views.K, (nv, nsub, 3, 3))
        else:
            raise ValueError(f"Unknown blur type {blur!r}.")
        poses.append(p.reshape(-1, 4, 4))
        ks.append(k.reshape(-1, 3, 3))
    return jnp.concatenate(poses), jnp.concatenate(ks), focus


def initial_gaussians(config: Any, gt: gl.Gaussians) -> gl.Gaussians:
    """A noisy, sparse "SfM" point cloud drawn from the ground-truth surfaces."""
    key = jax.random.PRNGKey(config.seed)
    k1, k2, k3 = jax.random.split(key, 3)
    if config.num_gaussians > gt.num:
        raise ValueError(
            f"num_gaussians={config.num_gaussians} exceeds the {gt.num} points of "
            f"the scene at scene_detail={config.scene_detail}; lower it or raise "
            "scene_detail."
        )
    idx = jax.random.choice(k1, gt.num, (config.num_gaussians,), replace=False)
    pts = gt.means[idx] + config.init_noise * jax.random.normal(k2, (len(idx), 3))
    rgb = gl.sh_to_rgb(gt.sh[idx, 0]) + 0.1 * jax.random.normal(k3, (len(idx), 3))
    # At least one SH band is stored (checkpoints cannot hold empty arrays);
    # the active degree never exceeds config.sh_degree.
    return gl.init_from_points(
        key, pts, jnp.clip(rgb, 0.0, 1.0), sh_degree=max(1, config.sh_degree)
    )
