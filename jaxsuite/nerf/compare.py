"""Comparing distillation with training from scratch: times to a quality bar,
and ratios with their step counts and timing spread (the tables and the
verdict built from these rows are in ``jaxsuite.nerf.report``).

Definitions (all times are measured optimisation seconds, excluding
compilation and evaluation; a distillation's time excludes training its
teacher, as in the paper's comparison):

* bar: the teacher's final test PSNR minus 1 dB;
* time (steps) to the bar: where a run's PSNR curve first reaches the bar,
  interpolated linearly between the two evaluations around the crossing;
* time ratio: from-scratch time to the bar of the student's architecture over
  the distillation's time to the bar; beside it the step ratio, and the range
  of ``step ratio x seconds-per-step ratio`` over repeated timings of both
  step functions (``loop.retime``): the spread that timing noise on the
  machine alone gives the ratio;
* equal time: the from-scratch PSNR at the evaluation nearest in measured
  time to the end of the distillation (both runs evaluate at the same
  wall-time marks, so the two times differ by less than one step).

A value that cannot be computed is a string ``"not reached within N s
(who)"``, never NaN.
"""

from __future__ import annotations

from typing import Any

import numpy as np


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


def nearest_eval(curve: dict[str, list[float]], seconds: float) -> tuple[float, float]:
    """``(psnr, seconds)`` of the evaluation nearest in time to ``seconds``."""
    i = int(np.argmin(np.abs(np.asarray(curve["seconds"]) - seconds)))
    return float(curve["psnr"][i]), float(curve["seconds"][i])


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if (a is not None and b) else None


def retimed_range(
    step_ratio: float | None, scratch_s: list[float], dist_s: list[float]
) -> list[float] | None:
    """``[low, median, high]`` of ``step_ratio * tau_s / tau_d`` over the
    re-timed seconds per step ``tau`` of both runs (None without them)."""
    if step_ratio is None or not scratch_s or not dist_s:
        return None
    s, d = np.asarray(scratch_s), np.asarray(dist_s)
    return [
        float(step_ratio * s.min() / d.max()),
        float(step_ratio * np.median(s) / np.median(d)),
        float(step_ratio * s.max() / d.min()),
    ]


def pair_row(
    teacher: str, student: str, teacher_psnr: float, dist: dict, scratch: dict
) -> dict[str, Any]:
    """One row of the comparison (see the module docstring).

    Args:
      teacher, student: architectures.
      teacher_psnr: the teacher's final test PSNR.
      dist, scratch: phase summaries ``{"curve": Curve.to_dict(),
        "step_seconds": [...]}`` of the distillation and of the student's
        from-scratch run.
    """
    bar = teacher_psnr - 1.0
    dc, sc = dist["curve"], scratch["curve"]
    t_d, t_s = time_to_reach(dc, bar), time_to_reach(sc, bar)
    n_d, n_s = time_to_reach(dc, bar, "steps"), time_to_reach(sc, bar, "steps")
    seconds = dc["seconds"][-1]
    eq_psnr, eq_seconds = nearest_eval(sc, seconds)
    lower = sc["seconds"][-1] / t_d if (t_d and t_s is None) else None
    step_ratio = _ratio(n_s, n_d)
    frac = dc.get("valid_fraction") or [1.0]
    return {
        "teacher": teacher,
        "student": student,
        "teacher_psnr": teacher_psnr,
        "bar_psnr": bar,
        "student_psnr_initial": dc["psnr"][0],
        "student_psnr": dc["psnr"][-1],
        "distill_seconds": seconds,
        "distill_steps": dc["steps"][-1],
        "scratch_psnr_equal_time": eq_psnr,
        "scratch_seconds_equal_time": eq_seconds,
        "scratch_psnr_final": sc["psnr"][-1],
        "scratch_seconds": sc["seconds"][-1],
        "scratch_steps": sc["steps"][-1],
        "distill_seconds_to_bar": t_d,
        "scratch_seconds_to_bar": t_s,
        "distill_steps_to_bar": n_d,
        "scratch_steps_to_bar": n_s,
        "time_ratio_to_bar": _ratio(t_s, t_d),
        "time_ratio_lower_bound": lower,
        "step_ratio_to_bar": step_ratio,
        "time_ratio_retimed": retimed_range(
            step_ratio, scratch.get("step_seconds", []), dist.get("step_seconds", [])
        ),
        "distill_valid_fraction": float(np.mean(frac[1:] or frac)),
        "inherited": dist.get("inherited", []),
    }


def unreached(row: dict[str, Any], axis: str = "s") -> str:
    """Why a ratio of ``row`` has no value: the run that did not get there.

    ``axis``: ``"s"`` (time to the bar) or ``"steps"`` (steps to the bar).
    """
    if axis == "s":
        d, s = row["distill_seconds_to_bar"], row["scratch_seconds_to_bar"]
        limits = row["distill_seconds"], row["scratch_seconds"]
    else:
        d, s = row["distill_steps_to_bar"], row["scratch_steps_to_bar"]
        limits = row["distill_steps"], row["scratch_steps"]
    if d == 0 and s is not None:
        return "undefined: distillation was at the bar at its first evaluation"
    who, limit = (
        ("distillation", limits[0]) if d is None else ("from scratch", limits[1])
    )
    return f"not reached within {limit:.0f} {axis} ({who})"


def seconds_or_why(value: float | None, limit: float) -> float | str:
    """``value``, or ``"not reached within {limit} s"``."""
    return value if value is not None else f"not reached within {limit:.0f} s"
