"""What the PVD run reports: headline metrics, tables, the verdict and figures.

Inputs are the phase summaries of ``jaxsuite.nerf.experiment`` and the
comparison rows of ``jaxsuite.nerf.compare.pair_row``:

* ``scratch``: ``{arch: summary}``, each summary ``{"curve":
  loop.Curve.to_dict(), "step_seconds": [...], "params": int,
  "wall_seconds": float}`` of a from-scratch run (the teachers);
* ``rows``: one ``pair_row`` dict per ordered (teacher, student) pair, in
  run order;
* ``renders``: ``{label: (H, W, 3) float image}`` of the first test view
  (``"ground truth"``, ``"{arch} scratch"``, ``"{student} from
  {teacher}"``).

Nothing here trains or renders; every number comes from those inputs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxsuite.core import figures
from jaxsuite.core import metrics as metrics_lib
from jaxsuite.nerf import compare
from jaxsuite.nerf.compare import unreached

CLAIM = (
    "An MLP NeRF distilled from an Instant-NGP hash grid is 10-20x faster to "
    "obtain than training NeRF from scratch, at superior quality (PVD abstract)."
)


def final_psnr(summary: dict[str, Any]) -> float:
    """Last test PSNR (dB) of a phase summary's curve."""
    return summary["curve"]["psnr"][-1]


def _speed(r: dict[str, Any]) -> str:
    if r["time_ratio_to_bar"] is not None:
        text = f"{r['time_ratio_to_bar']:.1f}x faster to the bar"
        if r["step_ratio_to_bar"] is not None:
            text += f" ({r['step_ratio_to_bar']:.1f}x fewer steps"
            rt = r.get("time_ratio_retimed")
            if rt:
                text += f"; {rt[0]:.1f}-{rt[2]:.1f}x over re-timings"
            text += ")"
        return text
    if r["time_ratio_lower_bound"] is not None:
        return (
            f"at least {r['time_ratio_lower_bound']:.1f}x faster to the bar "
            f"(from scratch not reached within {r['scratch_seconds']:.0f} s)"
        )
    return f"the bar was {unreached(r)}"


def _best_ratio(r: dict[str, Any]) -> float:
    return max(r["time_ratio_to_bar"] or 0.0, r["time_ratio_lower_bound"] or 0.0)


def _headline_pair(r: dict[str, Any]) -> str:
    """The sentences on the paper's pair, hash -> MLP."""
    text = (
        f"The paper's pair, hash -> MLP: {r['student_psnr']:.2f} dB distilled "
        f"(teacher {r['teacher_psnr']:.2f} dB) vs "
        f"{r['scratch_psnr_equal_time']:.2f} dB from scratch at equal time, "
        f"{_speed(r)}. "
    )
    ratio = _best_ratio(r)
    if ratio >= 10.0 and r["student_psnr"] >= r["scratch_psnr_equal_time"]:
        text += "The 10-20x claim is reproduced for this pair at this scale. "
    elif r["distill_seconds_to_bar"] is None:
        text += (
            "The 10-20x claim is not reproduced at this scale: the distilled "
            "MLP did not come within 1 dB of the teacher in its budget. "
        )
    else:
        text += f"The 10-20x claim is not reproduced at this scale ({ratio:.1f}x). "
    return text


def verdict(
    rows: list[dict[str, Any]], distill_seconds: float, scratch_seconds: float
) -> str:
    """What the numbers say about the claim (hash -> MLP is the paper's pair).

    ``distill_seconds`` and ``scratch_seconds`` are the wall-time budgets
    of a distillation and of a from-scratch run.
    """
    reached = [r for r in rows if r["distill_seconds_to_bar"] is not None]
    scratch_reached = [r for r in rows if r["scratch_seconds_to_bar"] is not None]
    better = [r for r in rows if r["student_psnr"] > r["scratch_psnr_equal_time"]]
    fast = [r for r in rows if _best_ratio(r) >= 10.0]
    text = (
        f"Over {len(rows)} ordered pairs, distillation came within 1 dB of its "
        f"teacher in {len(reached)} within {distill_seconds:.0f} s, "
        f"training the student from scratch did in {len(scratch_reached)} within "
        f"{scratch_seconds:.0f} s, distillation beat training from scratch "
        f"at equal measured time in {len(better)}, and was 10x or more faster to "
        f"the bar in {len(fast)}. "
    )
    head = [r for r in rows if r["teacher"] == "hash" and r["student"] == "mlp"]
    if head:
        text += _headline_pair(head[0])
    text += (
        "Small CPU models on one analytic scene, timed on a shared 2-core CPU; "
        "PSNRs are not comparable to NeRF-Synthetic numbers."
    )
    return text


def _pair_metrics(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``results.json`` metrics of one comparison row."""
    name = f"{r['teacher']}_to_{r['student']}"
    ratio, steps = r["time_ratio_to_bar"], r["step_ratio_to_bar"]
    return {
        f"{name}/student_psnr": metrics_lib.metric(r["student_psnr"], "dB"),
        f"{name}/scratch_psnr_equal_time": metrics_lib.metric(
            r["scratch_psnr_equal_time"],
            "dB",
            seconds=r["scratch_seconds_equal_time"],
            distill_seconds=r["distill_seconds"],
        ),
        f"{name}/distill_seconds_to_bar": metrics_lib.metric(
            compare.seconds_or_why(r["distill_seconds_to_bar"], r["distill_seconds"]),
            "s",
        ),
        f"{name}/scratch_seconds_to_bar": metrics_lib.metric(
            compare.seconds_or_why(r["scratch_seconds_to_bar"], r["scratch_seconds"]),
            "s",
        ),
        f"{name}/time_ratio_to_bar": metrics_lib.metric(
            ratio if ratio is not None else unreached(r, "s"),
            "x",
            lower_bound=r["time_ratio_lower_bound"],
            step_ratio=steps if steps is not None else unreached(r, "steps"),
            retimed_low_median_high=r["time_ratio_retimed"],
        ),
    }


def headline_metrics(
    rows: list[dict[str, Any]], scratch: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """``{name: metric}``: each teacher's final PSNR, then five per pair."""
    mets = {
        f"scratch/{a}/psnr": metrics_lib.metric(final_psnr(s), "dB")
        for a, s in scratch.items()
    }
    for r in rows:
        mets.update(_pair_metrics(r))
    return mets


def scratch_table(scratch: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per from-scratch run: size, final PSNR, time, steps, the mean
    fraction of samples evaluated and the re-timed seconds per step."""
    return [
        {
            "arch": a,
            "params": s["params"],
            "final_psnr": final_psnr(s),
            "seconds": s["curve"]["seconds"][-1],
            "steps": s["curve"]["steps"][-1],
            "valid_fraction": float(
                np.mean(s["curve"].get("valid_fraction", [1.0])[1:] or [1.0])
            ),
            "step_seconds": s.get("step_seconds", []),
        }
        for a, s in scratch.items()
    ]


def write(
    workdir: str,
    config_echo: Mapping[str, Any],
    rows: list[dict[str, Any]],
    scratch: dict[str, dict[str, Any]],
    wall: float,
    *,
    distill_seconds: float,
    scratch_seconds: float,
) -> dict[str, Any]:
    """Writes ``workdir/results.json`` (metrics, the ``pairs`` and ``scratch``
    tables, claim and :func:`verdict` with the two budgets in seconds) and
    returns it as read back.

    ``config_echo`` is the run's config as a plain dict (its ``preset`` field
    is recorded), echoed into ``results.json``; ``wall`` is the run's wall
    seconds.
    """
    path = metrics_lib.write_results(
        workdir,
        paper="pvd",
        config=config_echo,
        metrics=headline_metrics(rows, scratch),
        tables={"pairs": rows, "scratch": scratch_table(scratch)},
        claim=CLAIM,
        verdict=verdict(rows, distill_seconds, scratch_seconds),
        wall_seconds=wall,
    )
    return metrics_lib.read_results(path)


def render_figure(
    workdir: str,
    renders: dict[str, np.ndarray],
    rows: list[dict],
    primary: str,
    archs: Sequence[str],
) -> None:
    """``renders.png``: ground truth, the ``primary`` teacher, its students
    and the other architectures of ``archs`` from scratch (each image
    ``(H, W, 3)``)."""
    names = (
        ["ground truth", f"{primary} scratch"]
        + [f"{r['student']} from {primary}" for r in rows if r["teacher"] == primary]
        + [f"{a} scratch" for a in archs if a != primary]
    )
    figures.image_grid(
        os.path.join(workdir, "renders.png"),
        [renders[n] for n in names],
        [n.replace(f"{primary} scratch", f"teacher ({primary})") for n in names],
        ncols=min(len(names), 4),
    )


def curve_figure(
    workdir: str,
    scratch: dict[str, dict],
    distilled: dict[tuple[str, str], dict],
    primary: str,
) -> None:
    """``psnr_vs_time.png``: test PSNR against optimisation seconds of each
    student of the ``primary`` teacher, from scratch (``scratch[arch]``) and
    distilled (``distilled[(teacher, student)]``, phase summaries with a
    ``"curve"``), with the bar (teacher - 1 dB)."""
    students = [s for t, s in distilled if t == primary]
    curves = {}
    for s in students:
        c_s = scratch[s]["curve"]
        curves[f"{s} from scratch"] = (c_s["seconds"][1:], c_s["psnr"][1:])
    for s in students:
        c = distilled[(primary, s)]["curve"]
        curves[f"{s} distilled from {primary}"] = (c["seconds"][1:], c["psnr"][1:])
    teacher_psnr = final_psnr(scratch[primary])
    xs = [x for c in curves.values() for x in c[0] if x > 0]
    if xs:
        target = teacher_psnr - 1.0
        curves["teacher - 1 dB"] = ([min(xs), max(xs)], [target, target])
    figures.plot_curves(
        os.path.join(workdir, "psnr_vs_time.png"),
        curves,
        xlabel="seconds (optimisation only)",
        ylabel="test PSNR (dB)",
        logx=True,
        title=f"teacher ({primary}): {teacher_psnr:.2f} dB",
    )


def _fmt_ratio(r: dict[str, Any]) -> str:
    ratio = r["time_ratio_to_bar"]
    if ratio is None:
        if r["time_ratio_lower_bound"] is not None:
            return f">= {r['time_ratio_lower_bound']:.1f}x"
        return "n/a"
    text = f"{ratio:.1f}x"
    if r.get("step_ratio_to_bar") is not None:
        text += f" (steps {r['step_ratio_to_bar']:.1f}x"
        rt = r.get("time_ratio_retimed")
        if rt:
            text += f"; re-timed {rt[0]:.1f}-{rt[2]:.1f}x"
        text += ")"
    return text


def _s_or(v: float | None, limit: float) -> str:
    return f"{v:.1f}" if v is not None else f"> {limit:.0f}"


def _scratch_reference(scratch: dict[str, dict[str, Any]]) -> str:
    """Markdown table of the ``scratch`` rows of ``results["tables"]``."""
    ref = [
        "**From scratch (reference per student)**",
        "",
        "| student | final dB | seconds | steps | samples evaluated |",
        "|---|---|---|---|---|",
    ]
    for a, s in scratch.items():
        ref.append(
            f"| {a} | {s['final_psnr']:.2f} | {s['seconds']:.1f} | {s['steps']} | "
            f"{100 * s.get('valid_fraction', 1.0):.1f}% |"
        )
    return "\n".join(ref)


def matrix_tables(results: dict[str, Any]) -> str:
    """Markdown 4x4 tables (teacher rows x student columns) of distilled
    PSNR, time to the bar and the ratio, and the from-scratch reference per
    student, from a ``results.json`` dict."""
    pairs = results["tables"]["pairs"]
    scratch = {r["arch"]: r for r in results["tables"]["scratch"]}
    archs = list(scratch)
    cell = {(r["teacher"], r["student"]): r for r in pairs}
    teachers = [a for a in archs if any(r["teacher"] == a for r in pairs)]
    head = "| teacher \\ student | " + " | ".join(archs) + " |"
    sep = "|---" * (len(archs) + 1) + "|"

    def table(title, fmt, diag):
        lines = [f"**{title}**", "", head, sep]
        for t in teachers:
            vals = []
            for s in archs:
                r = cell.get((t, s))
                vals.append(diag(t) if r is None else fmt(r))
            lines.append(f"| {t} | " + " | ".join(vals) + " |")
        return "\n".join(lines)

    teacher_cell = lambda t: f"({scratch[t]['final_psnr']:.2f}, teacher)"
    dash = lambda t: "-"
    out = [
        table(
            "Distilled test PSNR, dB (diagonal: the teacher's own)",
            lambda r: f"{r['student_psnr']:.2f}",
            teacher_cell,
        ),
        table(
            "Seconds to the bar (teacher - 1 dB): distillation / from scratch",
            lambda r: (
                _s_or(r["distill_seconds_to_bar"], r["distill_seconds"])
                + " / "
                + _s_or(r["scratch_seconds_to_bar"], r["scratch_seconds"])
            ),
            dash,
        ),
        table(
            "Time ratio to the bar, from scratch / distillation (step ratio; "
            "range over re-timings)",
            _fmt_ratio,
            dash,
        ),
        table(
            "At equal measured time: distilled dB / from-scratch dB",
            lambda r: f"{r['student_psnr']:.2f} / {r['scratch_psnr_equal_time']:.2f}",
            dash,
        ),
    ]
    return "\n\n".join(out + [_scratch_reference(scratch)])
