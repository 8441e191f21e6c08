"""PVD experiment: teachers, any-to-any distillation, from-scratch baselines.

1. Render an analytic scene (``jaxsuite.nerf.scenes``): posed train images and
   held-out test views, exact.
2. Train every architecture in ``config.archs`` from scratch on the train
   images for ``config.scratch_seconds`` seconds of optimisation (a wall-time
   budget; ``config.steps`` caps the steps), recording test PSNR at fixed
   wall-time marks. These runs are both the from-scratch baselines and the
   teachers.
3. Distil each teacher in ``config.teachers`` into every other architecture
   for ``config.distill.seconds`` seconds, evaluating the student (against
   ground truth) at the same wall-time marks.
4. Per ordered pair (``jaxsuite.nerf.compare``): the times from scratch and
   by distillation to come within 1 dB of the teacher, their ratio with the
   step-count ratio beside it and its range over repeated timings of both
   step functions, and the from-scratch PSNR at equal measured time. Times
   exclude compilation and evaluation, and distillation time excludes
   training the teacher (as in the paper's comparison).
5. Metrics, tables, the verdict and the figures (``jaxsuite.nerf.report``).

``run`` reads the config once into ``settings.Settings`` and only wires
these: ``train_scratch`` and ``distill_pair`` are the phases (they take the
settings, never the config), ``render_view`` the rendered evaluation behind
the figures (PSNR curves are evaluated inside the phases,
``trainer.evaluate``).

All rendering uses empty-space skipping (``config.buckets`` compaction
buckets, ``jaxsuite.nerf.renderer``); the fraction of samples evaluated is
recorded. Each finished phase is saved under ``workdir/phases``
(``jaxsuite.core.phases.PhaseCache``: a summary written atomically, with an
Orbax checkpoint of a teacher and the render of a student), so an
interrupted run resumes at the phase it was in. A loss or gradient norm
that turns NaN stops the run (``NonFiniteError``, naming the phase and the
step) before that phase is saved; a time or ratio that cannot be computed is
reported as ``"not reached within N s"``, so ``results.json`` is strict JSON.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import jax
import numpy as np
from absl import logging

from jaxsuite.core import metrics as metrics_lib
from jaxsuite.core import phases as phases_lib
from jaxsuite.core import train as train_lib
from jaxsuite.nerf import (
    compare,
    distill,
    fields,
    loop,
    occupancy,
    report,
    scenes,
    trainer,
)
from jaxsuite.nerf import settings as settings_lib
from jaxsuite.nerf.settings import Settings

# -- The settings, translated into the parts' arguments. --


def optim_config(settings: Settings, arch: str, steps: int) -> trainer.OptimConfig:
    """``arch``'s two learning rates, decayed over at most ``steps`` steps."""
    return trainer.OptimConfig(
        lr_grid=float(settings.lr_grid[arch]),
        lr_net=float(settings.lr_net[arch]),
        total_steps=steps,
    )


def distill_config(settings: Settings) -> distill.DistillConfig:
    """Stages, batch and random-pose data of every distillation."""
    d = settings.distill
    return distill.DistillConfig(
        total_steps=d.steps,
        stage1_steps=d.stage1_steps,
        stage2_steps=d.stage2_steps,
        batch_rays=settings.batch_rays,
        num_samples=settings.num_samples,
        poses_per_epoch=d.poses_per_epoch,
        steps_per_epoch=d.steps_per_epoch,
        radius=scenes.BLENDER_RADIUS,
        elevation_range_deg=settings.scene.elevation_range_deg,
        image_size=settings.scene.size,
        buckets=settings.buckets,
    )


def eval_marks(settings: Settings) -> tuple[float, ...]:
    """Wall-time evaluation marks shared by every run: ``num_evals`` from
    ``first_eval_seconds`` to the distillation budget, then ``num_evals // 2``
    more up to the from-scratch budget."""
    d, s = float(settings.distill.seconds), float(settings.scratch_seconds)
    first = loop.eval_marks(d, settings.num_evals, settings.first_eval_seconds)
    later = loop.eval_marks(s, max(settings.num_evals // 2, 2), d) if s > d else ()
    return tuple(sorted(set(first) | set(later)))


def schedule(settings: Settings, budget_s: float) -> loop.Schedule:
    """A run of ``budget_s`` optimisation seconds, evaluated at
    :func:`eval_marks` and re-timed as ``settings.retime`` says."""
    return loop.Schedule(
        budget_s=budget_s,
        eval_seconds=eval_marks(settings),
        num_evals=settings.num_evals,
        retime_steps=settings.retime.steps,
        retime_repeats=settings.retime.repeats,
    )


def make_data(scene: settings_lib.SceneSettings, key: jax.Array) -> scenes.Dataset:
    """The analytic scene's ``n_train`` train and ``n_test`` test views, each
    split ``images (N, size, size, 3)``, ``poses (N, 4, 4)``, ``K (3, 3)``."""
    return scenes.make_dataset(
        scenes.default_scene(scene.density),
        key,
        size=scene.size,
        n_train=scene.n_train,
        n_test=scene.n_test,
        elevation_range_deg=scene.elevation_range_deg,
    )


# -- Evaluation. --


def render_view(
    params: fields.Params,
    arch: str,
    occ_mask: jax.Array,
    test: scenes.PosedImages,
    settings: Settings,
) -> np.ndarray:
    """The first test view rendered by the field, ``(H, W, 3)``, with the
    run's sampling and empty-space skipping (``occ_mask (R, R, R)`` bool)."""
    first = scenes.PosedImages(test.images[:1], test.poses[:1], test.K)
    _, img = trainer.evaluate(
        params,
        arch,
        settings.field,
        occ_mask,
        first,
        settings.num_samples,
        buckets=settings.buckets,
    )
    return np.asarray(img[0])


# -- Phases, each saved under workdir/phases so a rerun resumes. --


def phase_cache(workdir: str) -> phases_lib.PhaseCache:
    """The finished phases of a run: ``workdir/phases``."""
    return phases_lib.PhaseCache(workdir, "phases")


def _save_state(path: str, params, occ) -> None:
    """Orbax checkpoint of a field's parameters and its occupancy grid."""
    ckpt = train_lib.Checkpointer(path, every=1, max_to_keep=1)
    ckpt.save(1, {"params": params, "occ": occ._asdict()}, force=True)
    ckpt.close()


def _load_state(path: str, params, occ):
    """``(params, occ)`` restored from ``path`` into the templates' structure."""
    ckpt = train_lib.Checkpointer(path, every=1, max_to_keep=1)
    state, _ = ckpt.restore_or({"params": params, "occ": occ._asdict()})
    ckpt.close()
    return state["params"], occupancy.OccupancyGrid(**state["occ"])


class Teacher(NamedTuple):
    """A from-scratch run (also a teacher): its phase summary ``{"curve",
    "step_seconds", "params", "wall_seconds"}``, final parameters and
    occupancy grid, and the wall seconds an earlier run spent on it (0 unless
    resumed)."""

    summary: dict[str, Any]
    params: fields.Params
    occ: occupancy.OccupancyGrid
    earlier_seconds: float


class Student(NamedTuple):
    """A distillation: its phase summary ``{"curve", "inherited",
    "step_seconds", "wall_seconds"}``, the student's render of the first test
    view ``(H, W, 3)``, and the wall seconds an earlier run spent on it."""

    summary: dict[str, Any]
    render: np.ndarray
    earlier_seconds: float


def train_scratch(
    settings: Settings, workdir: str, arch: str, key: jax.Array, ds: scenes.Dataset
) -> Teacher:
    """Trains ``arch`` from scratch on ``ds.train`` for ``settings.
    scratch_seconds`` of optimisation (test PSNR on ``ds.test``), or loads the
    run an earlier call saved under ``workdir/phases`` (the summary
    ``scratch_<arch>.json`` beside an Orbax checkpoint ``scratch_<arch>_ckpt``
    of the final field and occupancy grid)."""
    cache, name = phase_cache(workdir), f"scratch_{arch}"
    ckpt_dir = cache.path(name, "_ckpt")
    cfg = settings.field
    summary = cache.load(name)
    if summary is not None:
        template = (
            fields.init(key, arch, cfg),
            occupancy.init_grid(settings.occ.resolution),
        )
        params, occ = _load_state(ckpt_dir, *template)
        return Teacher(summary, params, occ, summary.get("wall_seconds", 0.0))
    t_phase = time.time()
    budget_s = settings.scratch_seconds
    logging.info("Training %s from scratch for %.0f s.", arch, budget_s)
    state, curve, timings = trainer.train_from_images(
        key,
        arch,
        cfg,
        optim_config(settings, arch, settings.steps),
        ds.train,
        ds.test,
        batch_rays=settings.batch_rays,
        num_samples=settings.num_samples,
        occ=settings.occ,
        schedule=schedule(settings, budget_s),
        buckets=settings.buckets,
        log=lambda s: logging.info("scratch %s: %s", arch, s),
    )
    _save_state(ckpt_dir, state.params, state.occ)
    summary = {
        "curve": curve.to_dict(),
        "step_seconds": timings,
        "params": fields.count_params(state.params),
        "wall_seconds": time.time() - t_phase,
    }
    cache.save(name, summary)
    return Teacher(summary, state.params, state.occ, 0.0)


def distill_pair(
    settings: Settings,
    workdir: str,
    teacher_arch: str,
    teacher: Teacher,
    student_arch: str,
    key: jax.Array,
    test: scenes.PosedImages,
) -> Student:
    """Distils ``teacher`` into ``student_arch`` for ``settings.distill.
    seconds`` of optimisation (test PSNR on ``test``), or loads the
    distillation an earlier call saved under ``workdir/phases``
    (``distill_<teacher>_to_<student>.npz``: the summary and the render)."""
    cache = phase_cache(workdir)
    name = f"distill_{teacher_arch}_to_{student_arch}"
    saved = cache.load(name)
    if saved is not None and "render" in saved:
        render = saved.pop("render")
        return Student(saved, render, saved.get("wall_seconds", 0.0))
    t_phase = time.time()
    logging.info("Distilling %s into %s.", teacher_arch, student_arch)
    dc = distill_config(settings)
    state, curve, copied, timings = distill.distill(
        key,
        teacher_arch,
        teacher.params,
        teacher.occ,
        student_arch,
        settings.field,
        optim_config(settings, student_arch, dc.total_steps),
        dc,
        test,
        schedule=schedule(settings, settings.distill.seconds),
        log=lambda s: logging.info("distill %s->%s: %s", teacher_arch, student_arch, s),
    )
    img = render_view(state.params, student_arch, teacher.occ.mask, test, settings)
    summary = {
        "curve": curve.to_dict(),
        "inherited": copied,
        "step_seconds": timings,
        "wall_seconds": time.time() - t_phase,
    }
    cache.save(name, {**summary, "render": img})
    return Student(summary, img, 0.0)


def run(config: Any, workdir: str) -> dict[str, Any]:
    """Runs the experiment and writes ``results.json``; returns the results.

    ``config`` (``configs/pvd.py``) is read once, into
    :class:`settings.Settings` (:func:`settings.from_config`), which the
    phases take; ``results.json`` records ``config`` itself.
    """
    t_start = time.time()
    train_lib.prepare_workdir(workdir, config)
    settings = settings_lib.from_config(config)
    k_data, k_train, k_dist = jax.random.split(jax.random.key(settings.seed), 3)
    ds = make_data(settings.scene, k_data)
    renders: dict[str, np.ndarray] = {"ground truth": np.asarray(ds.test.images[0])}
    teachers: dict[str, Teacher] = {}
    rows: list[dict[str, Any]] = []
    distilled: dict[tuple[str, str], dict[str, Any]] = {}
    earlier = 0.0  # wall time of phases done by an interrupted earlier run
    with metrics_lib.MetricWriter(workdir) as writer:
        for i, arch in enumerate(settings.archs):
            key = jax.random.fold_in(k_train, i)
            t = train_scratch(settings, workdir, arch, key, ds)
            teachers[arch] = t
            earlier += t.earlier_seconds
            psnr = report.final_psnr(t.summary)
            writer.write_scalars(i, {f"scratch/{arch}/psnr": psnr})
            renders[f"{arch} scratch"] = render_view(
                t.params, arch, t.occ.mask, ds.test, settings
            )
        for ti, t_arch in enumerate(settings.teachers):
            for si, s_arch in enumerate(settings.archs):
                if s_arch == t_arch:
                    continue
                key = jax.random.fold_in(jax.random.fold_in(k_dist, ti), si)
                teacher = teachers[t_arch]
                s = distill_pair(
                    settings, workdir, t_arch, teacher, s_arch, key, ds.test
                )
                earlier += s.earlier_seconds
                distilled[(t_arch, s_arch)] = s.summary
                renders[f"{s_arch} from {t_arch}"] = s.render
                row = compare.pair_row(
                    t_arch,
                    s_arch,
                    report.final_psnr(teacher.summary),
                    s.summary,
                    teachers[s_arch].summary,
                )
                rows.append(row)
                name = f"distill/{t_arch}_to_{s_arch}/psnr"
                writer.write_scalars(len(rows), {name: row["student_psnr"]})
    scratch = {a: t.summary for a, t in teachers.items()}
    primary = settings.teachers[0]
    report.render_figure(workdir, renders, rows, primary, settings.archs)
    report.curve_figure(workdir, scratch, distilled, primary)
    return report.write(
        workdir,
        config.to_dict(),
        rows,
        scratch,
        time.time() - t_start + earlier,
        distill_seconds=float(settings.distill.seconds),
        scratch_seconds=float(settings.scratch_seconds),
    )
