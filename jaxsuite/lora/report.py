"""Tables, parameter savings, verdict and figure of the MoS experiment.

``savings`` reads how many LoRA parameters a method's score is worth: the
LoRA rows of a task (several ranks) form a curve of score against
log(trainable parameters), made monotone by a running maximum; a method's
score is located on it by linear interpolation in log-parameters, and the
ratio to the method's own count is its parameter saving. Scores outside the
LoRA curve give a bound, written as a string.

The verdict compares means with two standard errors of their difference
(``n`` seeds each): "above", "tie" or "below".
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from jaxsuite.core import figures
from jaxsuite.core import metrics as metrics_lib
from jaxsuite.lora import adapt
from jaxsuite.lora.settings import Settings


def lora_equivalent(rows: list[dict], score: float) -> float | str:
    """LoRA trainable parameters that reach ``score`` on the LoRA curve."""
    pts = sorted(
        (r["trainable_params"], r["score_mean"])
        for r in rows
        if r["method"].startswith("LoRA ")
    )
    if len(pts) < 2:
        return "needs two LoRA ranks"
    x = np.log([p for p, _ in pts])
    y = np.maximum.accumulate([s for _, s in pts])
    if score < y[0]:
        return f"below LoRA with {pts[0][0]} parameters"
    if score > y[-1]:
        return f"above LoRA with {pts[-1][0]} parameters"
    i = int(np.searchsorted(y, score, side="left"))
    if i == 0 or y[i] == y[i - 1]:
        return float(np.exp(x[i]))
    frac = (score - y[i - 1]) / (y[i] - y[i - 1])
    return float(np.exp(x[i - 1] + frac * (x[i] - x[i - 1])))


def compare(a: dict, b: dict) -> str:
    """'above', 'tie' or 'below': a's mean vs b's, by two standard errors."""
    n_a, n_b = len(a["scores"]), len(b["scores"])
    se = math.sqrt(a["score_std"] ** 2 / n_a + b["score_std"] ** 2 / n_b)
    diff = a["score_mean"] - b["score_mean"]
    if abs(diff) <= 2 * se:
        return "tie"
    return "above" if diff > 0 else "below"


def _label(text: str) -> str:
    """The table label of the method string ``text``."""
    return adapt.parse_method(text, target_modules=("x",), alpha=1.0, dropout=0.0)[0]


def _find(rows: list[dict], prefix: str) -> dict | None:
    hits = [
        r for r in rows if r["method"] == prefix or r["method"].startswith(prefix + " ")
    ]
    return hits[0] if hits else None


def task_verdict(s: Settings, rows: list[dict]) -> tuple[str, dict[str, Any]]:
    """One task's verdict sentence and its headline numbers: the row of
    ``s.headline`` against LoRA at ``s.budget_rank`` e, at 8e and the peers."""
    e = s.budget_rank
    mos = _find(rows, _label(s.headline))
    lora_e = _find(rows, f"LoRA r={e}")
    lora_8e = _find(rows, f"LoRA r={8 * e}")
    tied, pro, vera = (
        _find(rows, "Tied-LoRA"),
        _find(rows, "PRoLoRA"),
        _find(rows, "VeRA"),
    )
    nums: dict[str, Any] = {"mos": mos, "lora_e": lora_e, "lora_8e": lora_8e}
    if mos is None or lora_e is None:
        return "The headline MoS or LoRA(e) row is missing.", nums
    parts = []
    if lora_8e is not None:
        gap = lora_8e["score_mean"] - mos["score_mean"]
        tol = max(mos["score_std"], lora_8e["score_std"])
        matched = gap <= tol
        parts.append(
            f"8x claim {'reproduced' if matched else 'not reproduced at this scale'}: "
            f"MoS(e={e}) {mos['score_mean']:.1f} vs LoRA(8e) "
            f"{lora_8e['score_mean']:.1f} "
            f"(gap {gap:.1f} points, tolerance one std {tol:.1f})."
        )
        nums["matched_8x"] = matched
    equivalent = lora_equivalent(rows, mos["score_mean"])
    if isinstance(equivalent, float):
        saving = equivalent / mos["trainable_params"]
        parts.append(
            f"MoS(e) is worth {equivalent:.0f} LoRA parameters, a {saving:.2f}x saving."
        )
        nums["saving"] = saving
    else:
        parts.append(f"LoRA-equivalent count of MoS(e): {equivalent}.")
        nums["saving"] = equivalent
    versus = []
    for name, other in (
        ("LoRA(e)", lora_e),
        ("Tied-LoRA", tied),
        ("PRoLoRA", pro),
        ("VeRA", vera),
    ):
        if other is not None:
            verdict = compare(mos, other)
            nums[f"vs_{name}"] = verdict
            versus.append(f"{verdict} {name} ({other['score_mean']:.1f})")
    parts.append(
        f"At equal budget MoS ({mos['score_mean']:.1f}) is " + ", ".join(versus) + "."
    )
    return " ".join(parts), nums


def figure(path: str, rows: list[dict], tasks: list[str], units: dict[str, str]) -> str:
    """Score against trainable parameters, one panel per task."""
    plt = figures._pyplot()
    fig, axes = plt.subplots(
        1, len(tasks), figsize=(6.2 * len(tasks), 4.6), squeeze=False
    )
    markers = {"MoS": "o", "VeRA": "^", "Tied-LoRA": "s", "PRoLoRA": "D"}
    for ax, task in zip(axes[0], tasks):
        mine = [r for r in rows if r["task"] == task]
        lora_rows = sorted(
            (r for r in mine if r["method"].startswith("LoRA ")),
            key=lambda r: r["trainable_params"],
        )
        if lora_rows:
            ax.errorbar(
                [r["trainable_params"] for r in lora_rows],
                [r["score_mean"] for r in lora_rows],
                yerr=[r["score_std"] for r in lora_rows],
                color="k",
                marker="x",
                capsize=3,
                label="LoRA (ranks labelled)",
            )
            for r in lora_rows:
                ax.annotate(
                    r["method"].split(" ", 1)[1],
                    (r["trainable_params"], r["score_mean"]),
                    fontsize=7,
                    xytext=(3, -9),
                    textcoords="offset points",
                )
        for r in mine:
            if r["method"].startswith("LoRA "):
                continue
            kind = r["method"].split(" ")[0]
            ax.errorbar(
                r["trainable_params"],
                r["score_mean"],
                yerr=r["score_std"],
                marker=markers.get(kind, "o"),
                capsize=3,
                linestyle="none",
                label=r["method"],
            )
        ax.set_xscale("log")
        ax.set_xlabel("trainable parameters")
        ax.set_ylabel("gap closed (%)")
        ax.set_title(
            f"{task}: 100 (1 - m / m_base), m = {units.get(task, '')}", fontsize=9
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="lower right")
    return figures.save_figure(fig, path)


def _equivalent_fields(equivalent: float | str, params: int) -> dict[str, Any]:
    """A row's LoRA-equivalent parameter count and its saving (or why not)."""
    if isinstance(equivalent, float):
        return {
            "lora_equivalent_params": round(equivalent),
            "saving_vs_lora": round(equivalent / params, 2),
        }
    return {
        "lora_equivalent_params": equivalent,
        "saving_vs_lora": "outside the LoRA curve",
    }


def task_table(task: str, rows: list[dict]) -> list[dict[str, Any]]:
    """The methods table's rows of one task (``rows``: that task's methods)."""
    table = []
    for r in rows:
        table.append(
            {
                "task": task,
                "method": r["method"],
                "trainable_params": r["trainable_params"],
                "score_mean_pct": round(r["score_mean"], 2),
                "score_std_pct": round(r["score_std"], 2),
                "metric_mean": r["metric_mean"],
                "metric_std": r["metric_std"],
                "learning_rate": r["learning_rate"],
                **_equivalent_fields(
                    lora_equivalent(rows, r["score_mean"]), r["trainable_params"]
                ),
            }
        )
    return table


def task_metrics(
    task: str, nums: dict[str, Any], base_metric: float, unit: str
) -> dict[str, Any]:
    """One task's headline metrics from :func:`task_verdict`'s numbers."""
    out: dict[str, Any] = {}
    for key in ("mos", "lora_e", "lora_8e"):
        if nums.get(key) is not None:
            out[f"{task}_{key}_score"] = metrics_lib.metric(
                nums[key]["score_mean"],
                "% of the base model's gap closed (mean over seeds)",
                std=nums[key]["score_std"],
                trainable_params=nums[key]["trainable_params"],
                method=nums[key]["method"],
            )
    if isinstance(nums.get("saving"), float):
        out[f"{task}_mos_parameter_saving"] = metrics_lib.metric(
            nums["saving"], "x fewer parameters than LoRA at equal score"
        )
    out[f"{task}_base_metric"] = metrics_lib.metric(base_metric, unit)
    return out


def scale_note(s: Settings) -> str:
    """The sentence that ends the verdict: the scale this run works at."""
    return (
        f" Scale: a {s.model.n_layers}-layer, d={s.model.d_model} decoder "
        "on a "
        "procedural language, scores are % of the base model's gap closed over "
        f"{s.seeds} seeds; the paper's instruction-tuning benchmarks on LLaMA2-7B "
        "cannot be run here."
    )


def summarise(
    s: Settings,
    workdir: str,
    rows: list[dict],
    base_info: dict[str, Any],
) -> dict[str, Any]:
    """Writes the figure; returns ``{"metrics", "tables", "verdict"}`` of
    ``results.json``.

    Args:
      s: the run's settings (tasks, budget rank, headline, scale).
      workdir: where the figure goes.
      rows: one dict per (task, method) with its score and metric over seeds.
      base_info: the base model's pretraining excess loss and, per task,
        its metric and unit.
    """
    units = {k: v["unit"] for k, v in base_info["tasks"].items()}
    fig_path = figure(
        os.path.join(workdir, "mos_score_vs_params.png"), rows, list(s.tasks), units
    )
    metrics: dict[str, Any] = {
        "pretrain_excess_loss": metrics_lib.metric(
            base_info["pretrain_excess_loss"], "nats/token above the language entropy"
        )
    }
    verdicts, table = [], []
    for task in s.tasks:
        mine = [r for r in rows if r["task"] == task]
        table.extend(task_table(task, mine))
        text, nums = task_verdict(s, mine)
        verdicts.append(f"[{task}] {text}")
        base_metric = base_info["tasks"][task]["base_metric"]
        metrics.update(task_metrics(task, nums, base_metric, units[task]))
    return {
        "metrics": metrics,
        "tables": {
            "methods": table,
            "base": [base_info | {"figure": os.path.basename(fig_path)}],
        },
        "verdict": " ".join(verdicts) + scale_note(s),
    }
