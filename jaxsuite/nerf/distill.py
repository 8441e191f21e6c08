"""Progressive volume distillation (PVD) from any architecture into any other.

Training data comes from the teacher, not from images. Each epoch draws
``poses_per_epoch`` random cameras on a sphere of radius ``radius`` looking
at the origin; each step takes ``B`` random pixels of those cameras, marches
the rays with the student's occupancy grid (inherited from the teacher and not
updated), and evaluates the teacher at exactly the student's sample points,
directions and interval lengths. The loss grows in three stages (``step`` is
the 1-based step):

1. ``step <= stage1_steps``: ``lam_fea(step) * ||F_s - F_t||`` on the 16-d
   aligned feature at every valid sample (skipped when either side is the
   dense grid, which has no aligned feature: stage 2 then starts at once);
2. ``step <= stage2_steps``: plus ``w_sigma ||logsig_s - logsig_t|| + w_color
   ||c_s - c_t||``, densities compared as clamped pre-activations in
   ``[-2, 7]`` (log space), colours per point after the sigmoid;
3. afterwards: plus ``w_rgb ||RGB_s - RGB_t||`` on the rendered rays (each ray
   over its own random background colour, the same for both) and, for a VM
   student, ``vm_l1`` times the mean absolute value of its density planes and
   lines.

``||.||`` is the un-squared, un-averaged L2 norm over all valid samples (or
rays), as PVD's default ``normL2`` loss; ``lam_fea(step) = 2e-3 * 0.995^step``.
Before training, every student tensor whose name and shape match a teacher
tensor is copied from the teacher (``sigma_net`` between hash and MLP,
``color_net`` among hash, MLP and VM), as is the occupancy grid.

Deviations from the official code (megvii-research/AAAI2023-PVD):

* Fixed-shape sampling: ``S`` stratified samples per ray inside the scene
  cube; samples in empty cells are skipped by compacting the occupied ones
  into fixed-size buckets (``renderer``, ``buckets``) instead of CUDA ray
  marching with step ``2 sqrt(3) / 1024`` that only emits occupied samples.
* One compiled step serves all three stages (stage weights are traced), so
  stages 1 and 2 cost as much as stage 3; the official code stops the forward
  pass after the feature (stage 1) or before rendering (stage 2).
* Poses are uniform by area between two elevations (``jaxsuite.core.cameras.
  random_poses``) rather than PVD's 80 elevation bands of ``(90 - a) // 15 + 1``
  poses each; the number of poses per epoch is a parameter (PVD: 312).
* Adam with two cosine-decayed learning rates (grids vs networks) instead of
  AdamW with weight decay 0.01; float32 instead of fp16 autocast. With a
  wall-time budget the cosine follows the fraction of the budget spent rather
  than of the iterations (the same schedule at a constant step time).
* The norm is ``sqrt(sum sq + 1e-12)`` so that its gradient stays finite when a
  difference vanishes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxsuite.core import cameras
from jaxsuite.nerf import fields, loop, occupancy, renderer, trainer
from jaxsuite.nerf.scenes import PosedImages


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """Stage boundaries, loss weights and the random-pose data."""

    total_steps: int = 1000
    stage1_steps: int = 100
    stage2_steps: int = 300
    lam_fea: float = 2e-3
    fea_decay: float = 0.995
    w_sigma: float = 2e-3
    w_color: float = 2e-3
    w_rgb: float = 1.0
    vm_l1: float = 1e-4
    batch_rays: int = 1024
    num_samples: int = 64
    poses_per_epoch: int = 64
    steps_per_epoch: int = 50
    radius: float = 4.0
    elevation_range_deg: tuple[float, float] = (5.0, 75.0)
    image_size: int = 64
    buckets: int = 1
    final_lr_factor: float = 0.01


class DistillState(NamedTuple):
    """The student's parameters and its optax optimiser state."""

    params: fields.Params
    opt_state: Any


def inherit(
    student: fields.Params, teacher: fields.Params
) -> tuple[fields.Params, list[str]]:
    """Copies teacher tensors into ``student`` wherever path and shape match.

    Returns:
      ``(params, copied)``: the student's parameters and the ``/``-joined
      paths copied (PVD's ``load_state_dict(strict=False)``).
    """
    flat_t = {
        "/".join(str(getattr(k, "key", k)) for k in path): leaf
        for path, leaf in jax.tree_util.tree_leaves_with_path(teacher)
    }
    copied = []

    def pick(path, leaf):
        name = "/".join(str(getattr(k, "key", k)) for k in path)
        src = flat_t.get(name)
        if src is not None and src.shape == leaf.shape:
            copied.append(name)
            return src
        return leaf

    return jax.tree_util.tree_map_with_path(pick, student), sorted(copied)


def stage_boundaries(
    teacher_arch: str, student_arch: str, dc: DistillConfig
) -> tuple[int, int]:
    """``(stage1_end, stage2_end)``; stage 1 is empty without aligned features."""
    if "dense" in (teacher_arch, student_arch):
        return 0, max(dc.stage2_steps - dc.stage1_steps, 0)
    return dc.stage1_steps, dc.stage2_steps


def random_rays(
    key: jax.Array, poses: jax.Array, K: jax.Array, size: int, n: int
) -> tuple[jax.Array, jax.Array]:
    """``n`` rays through random pixel centres of random cameras ``poses (P, 4, 4)``."""
    k_p, k_u = jax.random.split(key)
    idx = jax.random.randint(k_p, (n,), 0, poses.shape[0])
    uv = jnp.floor(jax.random.uniform(k_u, (n, 2), maxval=size)) + 0.5
    d_cam = cameras.camera_directions(uv, K)
    c2w = poses[idx]
    d = jnp.einsum("nij,nj->ni", c2w[:, :3, :3], d_cam)
    d = d / jnp.linalg.norm(d, axis=-1, keepdims=True)
    return c2w[:, :3, 3], d


def _norm(x: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.sum(jnp.square(x)) + 1e-12)


def distill_losses(
    s_out: fields.FieldOutput,
    t_out: fields.FieldOutput,
    s_rgb: jax.Array,
    t_rgb: jax.Array,
    valid: jax.Array,
) -> dict[str, jax.Array]:
    """The four un-weighted PVD terms over valid samples ``valid (N, S)``."""
    v = valid[..., None]
    out = {
        "sigma": _norm(jnp.where(valid, s_out.log_sigma - t_out.log_sigma, 0.0)),
        "color": _norm(jnp.where(v, s_out.rgb - t_out.rgb, 0.0)),
        "rgb": _norm(s_rgb - t_rgb),
    }
    if s_out.feature is not None and t_out.feature is not None:
        out["feature"] = _norm(jnp.where(v, s_out.feature - t_out.feature, 0.0))
    else:
        out["feature"] = jnp.zeros(())
    return out


def make_distill_step(
    teacher_arch: str,
    teacher_params: fields.Params,
    student_arch: str,
    cfg: fields.FieldConfig,
    tx: optax.GradientTransformation,
    occ_mask: jax.Array,
    K: jax.Array,
    key: jax.Array,
    dc: DistillConfig,
) -> Callable[..., tuple[DistillState, dict[str, jax.Array]]]:
    """A jitted ``step(state, step, progress=0.0) -> (state, scalars)`` for one
    ordered pair (``progress`` in ``[0, 1]`` decays the learning rates, see
    ``trainer.lr_factor``)."""
    k_pose, k_step = jax.random.split(key)
    s1, s2 = stage_boundaries(teacher_arch, student_arch, dc)

    @jax.jit
    def step_fn(state: DistillState, step: jax.Array, progress=0.0):
        epoch = (step - 1) // dc.steps_per_epoch
        poses = cameras.random_poses(
            jax.random.fold_in(k_pose, epoch),
            dc.poses_per_epoch,
            dc.radius,
            elevation_range_deg=dc.elevation_range_deg,
        )
        k_ray, k_march, k_bg = jax.random.split(jax.random.fold_in(k_step, step), 3)
        o, d = random_rays(k_ray, poses, K, dc.image_size, dc.batch_rays)
        bg = jax.random.uniform(k_bg, (dc.batch_rays, 3))
        samples = renderer.march(k_march, o, d, occ_mask, dc.num_samples, cfg.bound)
        t_out = renderer.query_samples(
            teacher_params, teacher_arch, cfg, samples, dc.buckets
        )
        t_out = jax.tree.map(jax.lax.stop_gradient, t_out)
        t_rgb = renderer.composite(t_out.log_sigma, t_out.rgb, samples, bg).rgb
        stage2 = (step > s1).astype(jnp.float32)
        stage3 = (step > s2).astype(jnp.float32)
        lam = dc.lam_fea * dc.fea_decay ** step.astype(jnp.float32)

        def loss_fn(p):
            s_out = renderer.query_samples(p, student_arch, cfg, samples, dc.buckets)
            s_rgb = renderer.composite(s_out.log_sigma, s_out.rgb, samples, bg).rgb
            terms = distill_losses(s_out, t_out, s_rgb, t_rgb, samples.valid)
            loss = lam * terms["feature"] + stage2 * (
                dc.w_sigma * terms["sigma"] + dc.w_color * terms["color"]
            )
            loss = loss + stage3 * dc.w_rgb * terms["rgb"]
            if student_arch == "vm":
                enc = p["encoder"]
                l1 = 0.5 * (
                    jnp.mean(jnp.abs(enc["sigma_planes"]))
                    + jnp.mean(jnp.abs(enc["sigma_lines"]))
                )
                loss = loss + stage3 * dc.vm_l1 * l1
            return loss, terms

        (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        params, opt_state = trainer.apply_updates(
            state.params, grads, state.opt_state, tx, progress, dc.final_lr_factor
        )
        frac = jnp.mean(samples.valid.astype(jnp.float32))
        scalars = {
            "loss": loss,
            "grad_norm": optax.tree.norm(grads),
            "valid_fraction": frac,
            **terms,
        }
        return DistillState(params, opt_state), scalars

    return step_fn


class Distilled(NamedTuple):
    """A distillation run: the student's final state, its curve of test PSNR
    over distillation time, the inherited parameter names and the re-timed
    seconds per step (``loop.retime``; empty when not re-timed)."""

    state: DistillState
    curve: loop.Curve
    inherited: list[str]
    step_seconds: list[float]


def distill(
    key: jax.Array,
    teacher_arch: str,
    teacher_params: fields.Params,
    teacher_occ: occupancy.OccupancyGrid,
    student_arch: str,
    cfg: fields.FieldConfig,
    oc: trainer.OptimConfig,
    dc: DistillConfig,
    test: PosedImages,
    *,
    schedule: loop.Schedule,
    background: float = 1.0,
    log: Callable[[str], None] | None = None,
) -> Distilled:
    """Distils ``teacher_arch`` into ``student_arch`` for ``dc.total_steps``
    steps or ``schedule.budget_s`` seconds of optimisation, whichever comes
    first; the student is evaluated on ``test`` (images ``(N, H, W, 3)``) and
    re-timed as ``schedule`` says."""
    k_init, k_run = jax.random.split(key)
    params, copied = inherit(fields.init(k_init, student_arch, cfg), teacher_params)
    tx = trainer.make_optimizer(params, student_arch, oc)
    state = DistillState(params, tx.init(params))
    step_fn = make_distill_step(
        teacher_arch,
        teacher_params,
        student_arch,
        cfg,
        tx,
        teacher_occ.mask,
        test.K,
        k_run,
        dc,
    )

    def eval_fn(state: DistillState) -> float:
        return trainer.evaluate(
            state.params,
            student_arch,
            cfg,
            teacher_occ.mask,
            test,
            dc.num_samples,
            background,
            buckets=dc.buckets,
        )[0]

    state, curve, timings = loop.scheduled_run(
        state,
        step_fn,
        schedule,
        num_steps=dc.total_steps,
        eval_fn=eval_fn,
        log=log,
        name=f"distillation {teacher_arch} -> {student_arch}",
    )
    return Distilled(state, curve, copied, timings)
