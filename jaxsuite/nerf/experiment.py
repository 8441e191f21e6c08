"""PVD experiment: teachers, any-to-any distillation, from-scratch baselines.

1. Render an analytic scene (``jaxsuite.nerf.scenes``): posed train images and
   held-out test views, exact.
2. Train every architecture in ``config.archs`` from scratch on the train
   images for ``config.steps`` steps (``config.teacher_steps`` for the
   teachers, when positive), recording test PSNR against optimisation time.
   These runs are both the from-scratch baselines and the teachers.
3. Distil each teacher in ``config.teachers`` into every other architecture
   for ``config.distill.steps`` steps (the same budget), recording the
   student's test PSNR (against ground truth) against distillation time.
4. Per ordered pair: teacher PSNR, distilled PSNR, distillation seconds, the
   student architecture's from-scratch PSNR at the same time, the ratio of
   the times from scratch and by distillation to come within 1 dB of the
   teacher (a lower bound when only distillation gets there), and the ratio
   of the times to reach the best PSNR the from-scratch run reached (equal
   quality). Times exclude compilation and evaluation, and distillation time
   excludes training the teacher (as in the paper's comparison).

Each finished phase is saved under ``workdir/phases`` (a JSON summary and an
Orbax checkpoint of the teacher, both written atomically), so an interrupted
run resumes at the phase it was in. A loss or gradient norm that turns NaN
stops the run (``NonFiniteError``, naming the phase and the step) before that
phase is saved; a ratio that cannot be computed (a run that never came within
1 dB of the teacher) is reported as ``"not reached within N s"``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import jax
import numpy as np
from absl import logging

from jaxsuite.core import atomic, figures
from jaxsuite.core import metrics as metrics_lib
from jaxsuite.core import train as train_lib
from jaxsuite.nerf import distill, fields, occupancy, scenes, trainer

CLAIM = (
    "An MLP NeRF distilled from an Instant-NGP hash grid is 10-20x faster to "
    "obtain than training NeRF from scratch, at superior quality (PVD abstract)."
)


def _field_config(config: Any) -> fields.FieldConfig:
    return fields.FieldConfig(**dict(config.field))


def _optim(config: Any, arch: str, steps: int) -> trainer.OptimConfig:
    return trainer.OptimConfig(
        lr_grid=float(config.lr_grid[arch]),
        lr_net=float(config.lr_net[arch]),
        total_steps=steps,
    )


def _distill_config(config: Any) -> distill.DistillConfig:
    d = config.distill
    return distill.DistillConfig(
        total_steps=d.steps,
        stage1_steps=d.stage1_steps,
        stage2_steps=d.stage2_steps,
        batch_rays=config.batch_rays,
        num_samples=config.num_samples,
        poses_per_epoch=d.poses_per_epoch,
        steps_per_epoch=d.steps_per_epoch,
        radius=scenes.BLENDER_RADIUS,
        elevation_range_deg=tuple(config.scene.elevation_range_deg),
        image_size=config.scene.size,
    )


def time_to_reach(
    curve: dict[str, list[float]], target: float, axis: str = "seconds"
) -> float | None:
    """Time (or step, ``axis="steps"``) at which the curve first reaches
    ``psnr >= target``, interpolated linearly between the two evaluations
    around the crossing (None if never)."""
    secs, psnr = curve[axis], curve["psnr"]
    for i, (sec, p) in enumerate(zip(secs, psnr)):
        if p >= target:
            if i == 0:
                return float(sec)
            s0, p0 = secs[i - 1], psnr[i - 1]
            return float(s0 + (sec - s0) * (target - p0) / (p - p0))
    return None


def psnr_at_time(curve: dict[str, list[float]], seconds: float) -> float:
    """Best PSNR evaluated by ``seconds`` (the curve's first value if none)."""
    best = curve["psnr"][0]
    for sec, p in zip(curve["seconds"], curve["psnr"]):
        if sec <= seconds:
            best = max(best, p)
    return float(best)


def pair_row(
    teacher: str, student: str, teacher_psnr: float, dist: dict, scratch: dict
) -> dict[str, Any]:
    """One table row of the comparison (see the module docstring)."""
    target = teacher_psnr - 1.0
    t_d = time_to_reach(dist["curve"], target)
    t_s = time_to_reach(scratch["curve"], target)
    seconds = dist["curve"]["seconds"][-1]
    ratio = t_s / t_d if (t_d and t_s) else None
    # Equal quality = the best the student reached from scratch in its budget.
    q = max(scratch["curve"]["psnr"])
    t_sq, t_dq = time_to_reach(scratch["curve"], q), time_to_reach(dist["curve"], q)
    n_d = time_to_reach(dist["curve"], target, "steps")
    n_s = time_to_reach(scratch["curve"], target, "steps")
    lower = None
    if t_d and t_s is None:  # scratch never got there: a lower bound
        lower = scratch["curve"]["seconds"][-1] / t_d
    return {
        "teacher": teacher,
        "student": student,
        "teacher_psnr": teacher_psnr,
        "student_psnr": dist["curve"]["psnr"][-1],
        "distill_seconds": seconds,
        "scratch_psnr_equal_time": psnr_at_time(scratch["curve"], seconds),
        "scratch_psnr_final": scratch["curve"]["psnr"][-1],
        "scratch_seconds": scratch["curve"]["seconds"][-1],
        "distill_steps": dist["curve"]["steps"][-1],
        "scratch_steps": scratch["curve"]["steps"][-1],
        "distill_seconds_to_1db": t_d,
        "scratch_seconds_to_1db": t_s,
        "time_ratio_to_1db": ratio,
        "time_ratio_lower_bound": lower,
        "scratch_best_psnr": q,
        "scratch_seconds_to_best": t_sq,
        "distill_seconds_to_scratch_best": t_dq,
        "time_ratio_at_scratch_best": t_sq / t_dq if (t_dq and t_sq) else None,
        "distill_steps_to_1db": n_d,
        "scratch_steps_to_1db": n_s,
        "step_ratio_to_1db": n_s / n_d if (n_d and n_s) else None,
        "inherited": dist["inherited"],
    }


def _save_state(path: str, params, occ) -> None:
    ckpt = train_lib.Checkpointer(path, every=1, max_to_keep=1)
    ckpt.save(1, {"params": params, "occ": occ._asdict()}, force=True)
    ckpt.close()


def _load_state(path: str, params, occ):
    ckpt = train_lib.Checkpointer(path, every=1, max_to_keep=1)
    state, _ = ckpt.restore_or({"params": params, "occ": occ._asdict()})
    ckpt.close()
    return state["params"], occupancy.OccupancyGrid(**state["occ"])


def _phase(workdir: str, name: str) -> tuple[str, dict | None]:
    path = os.path.join(workdir, "phases", name + ".json")
    if os.path.exists(path):
        return path, atomic.read_json(path)
    return path, None


def _write_phase(path: str, summary: dict) -> None:
    atomic.write_json(path, summary, indent=None)


def run(config: Any, workdir: str) -> dict[str, Any]:
    """Runs the experiment and writes ``results.json``; returns the results."""
    t_start = time.time()
    train_lib.prepare_workdir(workdir, config)
    key = jax.random.key(config.seed)
    k_data, k_train, k_dist = jax.random.split(key, 3)
    sc = config.scene
    scene = scenes.default_scene(sc.density)
    ds = scenes.make_dataset(
        scene,
        k_data,
        size=sc.size,
        n_train=sc.n_train,
        n_test=sc.n_test,
        elevation_range_deg=tuple(sc.elevation_range_deg),
    )
    cfg = _field_config(config)
    common = dict(
        batch_rays=config.batch_rays,
        num_samples=config.num_samples,
        occ_resolution=config.occ.resolution,
        occ_every=config.occ.every,
        occ_warmup=config.occ.warmup,
        occ_decay=config.occ.decay,
        occ_threshold=config.occ.threshold,
        num_evals=config.num_evals,
    )
    renders: dict[str, np.ndarray] = {"ground truth": np.asarray(ds.test.images[0])}
    scratch: dict[str, dict] = {}
    teachers: dict[str, tuple] = {}
    earlier = 0.0  # wall time of phases done by an interrupted earlier run
    with metrics_lib.MetricWriter(workdir) as writer:
        for i, arch in enumerate(config.archs):
            path, summary = _phase(workdir, f"scratch_{arch}")
            k = jax.random.fold_in(k_train, i)
            template = (
                fields.init(k, arch, cfg),
                occupancy.init_grid(config.occ.resolution),
            )
            ckpt_dir = os.path.join(workdir, "phases", f"scratch_{arch}_ckpt")
            steps = config.steps
            if arch in config.teachers and config.teacher_steps > 0:
                steps = config.teacher_steps
            t_phase = time.time()
            if summary is None:
                logging.info("Training %s from scratch for %d steps.", arch, steps)
                state, curve = trainer.train_from_images(
                    k,
                    arch,
                    cfg,
                    _optim(config, arch, steps),
                    ds.train,
                    ds.test,
                    log=lambda s, a=arch: logging.info("scratch %s: %s", a, s),
                    **common,
                )
                params, occ = state.params, state.occ
                _save_state(ckpt_dir, params, occ)
                summary = {
                    "curve": curve.to_dict(),
                    "params": fields.count_params(params),
                    "wall_seconds": time.time() - t_phase,
                }
                _write_phase(path, summary)
            else:
                params, occ = _load_state(ckpt_dir, *template)
                earlier += summary.get("wall_seconds", 0.0)
            writer.write_scalars(
                i, {f"scratch/{arch}/psnr": summary["curve"]["psnr"][-1]}
            )
            scratch[arch] = summary
            teachers[arch] = (params, occ)
            _, img = trainer.evaluate(
                params, arch, cfg, occ.mask, _first(ds.test), config.num_samples
            )
            renders[f"{arch} scratch"] = np.asarray(img[0])

        dc = _distill_config(config)
        rows = []
        for ti, teacher in enumerate(config.teachers):
            t_params, t_occ = teachers[teacher]
            teacher_psnr = scratch[teacher]["curve"]["psnr"][-1]
            for si, student in enumerate(config.archs):
                if student == teacher:
                    continue
                path, summary = _phase(workdir, f"distill_{teacher}_to_{student}")
                t_phase = time.time()
                if summary is None:
                    logging.info("Distilling %s into %s.", teacher, student)
                    state, curve, copied = distill.distill(
                        jax.random.fold_in(jax.random.fold_in(k_dist, ti), si),
                        teacher,
                        t_params,
                        t_occ,
                        student,
                        cfg,
                        _optim(config, student, dc.total_steps),
                        dc,
                        ds.test,
                        num_evals=config.num_evals,
                        log=lambda s, a=teacher, b=student: logging.info(
                            "distill %s->%s: %s", a, b, s
                        ),
                    )
                    _, img = trainer.evaluate(
                        state.params,
                        student,
                        cfg,
                        t_occ.mask,
                        _first(ds.test),
                        config.num_samples,
                    )
                    atomic.save_npy(
                        path.replace(".json", "_render.npy"), np.asarray(img[0])
                    )
                    summary = {
                        "curve": curve.to_dict(),
                        "inherited": copied,
                        "wall_seconds": time.time() - t_phase,
                    }
                    _write_phase(path, summary)
                else:
                    earlier += summary.get("wall_seconds", 0.0)
                renders[f"{student} from {teacher}"] = np.load(
                    path.replace(".json", "_render.npy")
                )
                row = pair_row(
                    teacher, student, teacher_psnr, summary, scratch[student]
                )
                rows.append(row)
                writer.write_scalars(
                    len(rows),
                    {f"distill/{teacher}_to_{student}/psnr": row["student_psnr"]},
                )
    _figures(workdir, config, renders, scratch, rows)
    return _write(workdir, config, rows, scratch, time.time() - t_start + earlier)


def _first(data: scenes.PosedImages) -> scenes.PosedImages:
    return scenes.PosedImages(data.images[:1], data.poses[:1], data.K)


def _figures(workdir, config, renders, scratch, rows) -> None:
    primary = config.teachers[0]
    names = (
        ["ground truth", f"{primary} scratch"]
        + [f"{r['student']} from {primary}" for r in rows if r["teacher"] == primary]
        + [f"{a} scratch" for a in config.archs if a != primary]
    )
    figures.image_grid(
        os.path.join(workdir, "renders.png"),
        [renders[n] for n in names],
        [n.replace(f"{primary} scratch", f"teacher ({primary})") for n in names],
        ncols=min(len(names), 4),
    )
    curves = {}
    for r in rows:
        if r["teacher"] != primary:
            continue
        s = r["student"]
        c_s = scratch[s]["curve"]
        curves[f"{s} from scratch"] = (c_s["seconds"][1:], c_s["psnr"][1:])
    for r in rows:
        if r["teacher"] == primary:
            s = r["student"]
            path = os.path.join(workdir, "phases", f"distill_{primary}_to_{s}.json")
            c = atomic.read_json(path)["curve"]
            curves[f"{s} distilled from {primary}"] = (c["seconds"][1:], c["psnr"][1:])
    xs = [x for c in curves.values() for x in c[0] if x > 0]
    if xs:
        target = scratch[primary]["curve"]["psnr"][-1] - 1.0
        curves["teacher - 1 dB"] = ([min(xs), max(xs)], [target, target])
    figures.plot_curves(
        os.path.join(workdir, "psnr_vs_time.png"),
        curves,
        xlabel="seconds (optimisation only)",
        ylabel="test PSNR (dB)",
        logx=True,
        title=f"teacher ({primary}): {scratch[primary]['curve']['psnr'][-1]:.2f} dB",
    )


def _verdict(rows: list[dict], primary: str) -> str:
    mine = [r for r in rows if r["teacher"] == primary]
    parts = []
    for r in mine:
        if r["time_ratio_to_1db"] is not None:
            speed = (
                f"{r['time_ratio_to_1db']:.1f}x faster to within 1 dB of the teacher"
            )
        elif r["time_ratio_lower_bound"] is not None:
            speed = (
                f">= {r['time_ratio_lower_bound']:.1f}x faster (from scratch never "
                "came within 1 dB of the teacher)"
            )
        elif r["distill_seconds_to_1db"] is None:
            speed = "distillation did not come within 1 dB of the teacher"
        else:
            speed = "no ratio"
        if r.get("time_ratio_at_scratch_best") is not None:
            speed += (
                f"; it matched the best from-scratch PSNR "
                f"({r['scratch_best_psnr']:.2f} dB) "
                f"{r['time_ratio_at_scratch_best']:.1f}x sooner"
            )
        if r.get("step_ratio_to_1db") is not None:
            speed += f" ({r['step_ratio_to_1db']:.1f}x fewer steps)"
        parts.append(
            f"{r['student']}: {r['student_psnr']:.2f} dB distilled vs "
            f"{r['scratch_psnr_equal_time']:.2f} dB from scratch at equal time, {speed}"
        )

    def best_ratio(r):
        vals = [r["time_ratio_to_1db"], r.get("time_ratio_at_scratch_best")]
        vals = [v for v in vals if v is not None]
        return max(vals) if vals else None

    short = [r for r in mine if (best_ratio(r) or 0.0) < 10.0]
    met = [r for r in mine if (best_ratio(r) or 0.0) >= 10.0]
    text = f"From the {primary} teacher: " + "; ".join(parts) + ". "
    if met:
        text += (
            "A 10x or larger speed-up was measured for "
            + ", ".join(r["student"] for r in met)
            + ". "
        )
    if short:
        text += (
            "The 10-20x claim falls short for "
            + ", ".join(
                r["student"]
                + (
                    f" ({best_ratio(r):.1f}x)"
                    if best_ratio(r) is not None
                    else " (no ratio: the runs did not reach a common quality)"
                )
                for r in short
            )
            + " at this scale. "
        )
    text += (
        "Tiny CPU models on one analytic scene at low resolution, timed on a shared "
        "CPU; teacher training time is excluded as in the paper; PSNRs are not "
        "comparable to NeRF-Synthetic numbers."
    )
    return text


def unreached(row: dict[str, Any], axis: str) -> str:
    """Why a ratio of ``row`` has no value: the run that did not get there.

    ``axis``: ``"s"`` (time to within 1 dB of the teacher), ``"steps"`` (steps
    to within 1 dB) or ``"best"`` (time to the best from-scratch PSNR).
    """
    if axis == "best":
        if row["distill_seconds_to_scratch_best"] is None:
            return f"not reached within {row['distill_seconds']:.0f} s (distillation)"
        return f"not reached within {row['scratch_seconds']:.0f} s (from scratch)"
    if axis == "s":
        d = row["distill_seconds_to_1db"]
        limits = row["distill_seconds"], row["scratch_seconds"]
    else:
        d = row["distill_steps_to_1db"]
        limits = row.get("distill_steps"), row.get("scratch_steps")
    who, limit = (
        ("distillation", limits[0]) if d is None else ("from scratch", limits[1])
    )
    return f"not reached within {limit:.0f} {axis} ({who})"


def _write(workdir, config, rows, scratch, wall) -> dict[str, Any]:
    primary = config.teachers[0]
    mets = {}
    mets["teacher_psnr"] = metrics_lib.metric(
        scratch[primary]["curve"]["psnr"][-1], "dB"
    )
    for r in rows:
        name = f"{r['teacher']}_to_{r['student']}"
        mets[f"{name}/student_psnr"] = metrics_lib.metric(r["student_psnr"], "dB")
        mets[f"{name}/distill_seconds"] = metrics_lib.metric(r["distill_seconds"], "s")
        mets[f"{name}/scratch_psnr_equal_time"] = metrics_lib.metric(
            r["scratch_psnr_equal_time"], "dB"
        )
        ratio = r["time_ratio_to_1db"]
        steps = r["step_ratio_to_1db"]
        mets[f"{name}/step_ratio_to_1db"] = metrics_lib.metric(
            steps if steps is not None else unreached(r, "steps"), "x"
        )
        eq = r["time_ratio_at_scratch_best"]
        mets[f"{name}/time_ratio_at_scratch_best"] = metrics_lib.metric(
            eq if eq is not None else unreached(r, "best"), "x"
        )
        mets[f"{name}/time_ratio_to_1db"] = metrics_lib.metric(
            ratio if ratio is not None else unreached(r, "s"),
            "x",
            lower_bound=r["time_ratio_lower_bound"],
        )
    scratch_rows = [
        {
            "arch": a,
            "params": s["params"],
            "final_psnr": s["curve"]["psnr"][-1],
            "seconds": s["curve"]["seconds"][-1],
        }
        for a, s in scratch.items()
    ]
    path = metrics_lib.write_results(
        workdir,
        paper="pvd",
        config=config,
        metrics=mets,
        tables={"pairs": rows, "scratch": scratch_rows},
        claim=CLAIM,
        verdict=_verdict(rows, primary),
        wall_seconds=wall,
    )
    return metrics_lib.read_results(path)


def summary_table(results: dict[str, Any]) -> str:
    """Markdown table of the pairs in a results dict."""
    lines = [
        "| pair | teacher dB | distilled dB | distill s "
        "| scratch dB @ equal time | time ratio to 1 dB | step ratio to 1 dB "
        "| time ratio at scratch's best |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["tables"]["pairs"]:
        ratio = r["time_ratio_to_1db"]
        if ratio is not None:
            rs = f"{ratio:.1f}x"
        elif r["time_ratio_lower_bound"] is not None:
            rs = f">= {r['time_ratio_lower_bound']:.1f}x"
        else:
            rs = "n/a"
        n = r.get("step_ratio_to_1db")
        steps = "n/a" if n is None else f"{n:.1f}x"
        e = r.get("time_ratio_at_scratch_best")
        best = "n/a" if e is None else f"{e:.1f}x"
        lines.append(
            f"| {r['teacher']} -> {r['student']} | {r['teacher_psnr']:.2f} | "
            f"{r['student_psnr']:.2f} | {r['distill_seconds']:.1f} | "
            f"{r['scratch_psnr_equal_time']:.2f} | {rs} | {steps} | {best} |"
        )
    return "\n".join(lines)
