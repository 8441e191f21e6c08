"""Tables, figures, headline metrics and the verdict of the S3T experiment.

:func:`theory_tables` runs the Monte Carlo of the truncation rule;
:func:`summarise` builds ``results.json``'s metrics and tables from the
trained and deleted-from runs (one :func:`method_row` and
:func:`method_metrics` per run, then the :class:`Headline` comparison of
S3T at its largest budget against SISA, its :func:`verdict`) and draws the
two figures.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from jaxsuite.core import figures
from jaxsuite.unlearn import sequences as seq_lib
from jaxsuite.unlearn import theory
from jaxsuite.unlearn.settings import Settings

CLAIM = (
    "Training each shard on several slice sequences lets S3T serve many more "
    "deletions than SISA without retraining, at similar accuracy."
)
TARGET_RATIO = 2.0
ACCURACY_MARGIN = 0.03  # "similar accuracy": within 3 points of SISA's


def directory_bytes(path: str) -> int:
    """Bytes of every file under ``path`` (0 if absent)."""
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def linear_prior(num_slices: int) -> np.ndarray:
    """Slice ``j`` deleted with probability proportional to ``L - j``."""
    p = np.arange(num_slices, 0, -1, dtype=np.float64)
    return p / p.sum()


def _rate_row(
    name: str, spec: dict[str, Any], m: int, num_slices: int, trials: int, seed: int
) -> dict[str, Any]:
    """Monte Carlo of one run's truncation rule beside ``m L H_{m B'}``."""
    seqs = spec["seqs"]
    b_prime = theory.distinct_first_slices(seqs)
    sim = theory.simulate(seqs, m, num_slices, trials=trials, seed=seed)
    served, served_se = theory.mean_and_se(sim["first_death"] - 1)
    dead, dead_se = theory.mean_and_se(sim["all_dead"])
    closed = theory.closed_form_all_dead(m, num_slices, b_prime)
    return {
        "method": name,
        "B": spec["budget"],
        "B_prime": b_prime,
        "mc_served_before_retraining": served,
        "mc_served_before_retraining_se": served_se,
        "mc_requests_until_all_dead": dead,
        "mc_requests_until_all_dead_se": dead_se,
        "closed_form_m_L_H_mB'": closed,
        "z_score": (dead - closed) / dead_se if dead_se > 0 else "se is 0",
    }


def _prior_rows(s: Settings, probs: np.ndarray) -> list[dict[str, Any]]:
    """Cyclic, BMS and prior-aware BMS selection under the deletion prior ``probs``.

    Args:
      s: the run's settings (shards, slices, Monte Carlo trials and budget).
      probs: (L,) probability that a deletion hits each slice.
    """
    m, num_slices = s.num_shards, s.num_slices
    budget = min(s.monte_carlo.prior_budget, num_slices)
    rows = []
    for j, method in enumerate(("cyclic", "bms", "prior_bms")):
        seqs = seq_lib.select(method, num_slices, budget, probs)
        sim = theory.simulate(
            seqs,
            m,
            num_slices,
            trials=s.monte_carlo.trials,
            seed=s.seed + 100 + j,
            probs=probs,
        )
        served, served_se = theory.mean_and_se(sim["first_death"] - 1)
        dead, dead_se = theory.mean_and_se(sim["all_dead"])
        rows.append(
            {
                "selection": method,
                "B": budget,
                "first_slices": sorted({int(q[0]) for q in seqs}),
                "mc_served_before_retraining": served,
                "mc_served_before_retraining_se": served_se,
                "mc_requests_until_all_dead": dead,
                "mc_requests_until_all_dead_se": dead_se,
            }
        )
    return rows


def theory_tables(s: Settings, methods: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Monte Carlo of the truncation rule vs ``m L H_{m B'}``; prior-aware selection.

    Returns:
      ``{"deletion_rate": one row per run, "prior_selection": one row per
      selection rule, "prior": the (L,) slice prior, rounded}``.
    """
    rate = [
        _rate_row(
            name,
            spec,
            s.num_shards,
            s.num_slices,
            s.monte_carlo.trials,
            s.seed + i,
        )
        for i, (name, spec) in enumerate(methods.items())
    ]
    probs = linear_prior(s.num_slices)
    return {
        "deletion_rate": rate,
        "prior_selection": _prior_rows(s, probs),
        "prior": [round(float(p), 4) for p in probs],
    }


def _served_before_death(rows: list[dict[str, Any]]) -> tuple[int, bool]:
    """(deletions served before the first shard died, whether one died)."""
    for row in rows[1:]:
        if row["shard_died"]:
            return row["k"] - 1, True
    return len(rows) - 1, False


def _all_dead_at(rows: list[dict[str, Any]]) -> int | None:
    for row in rows[1:]:
        if row["live_shards"] == 0:
            return row["k"]
    return None


def _acc(rows: list[dict[str, Any]], k: int) -> Any:
    if k >= len(rows):
        return "not run"
    acc = rows[k]["accuracy"]
    return "no model survives" if acc is None else round(acc, 4)


def _fmt(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def _metric(value: Any, unit: str, **extra: Any) -> dict[str, Any]:
    if isinstance(value, (int, float, np.floating, np.integer)) and np.isfinite(value):
        value = float(value)
    return {"value": value, "unit": unit, **extra}


def _stream_capacity(spec: dict[str, Any], num_deletions: int) -> tuple[int, bool]:
    """(deletions a run served before a retraining, whether one was needed).

    S3T's from its curve; SISA's from its truncation view (S3T's rule with
    ``B = 1``), since SISA itself retrains on every hit.
    """
    if spec["method"] == "s3t":
        return _served_before_death(spec["rows"])
    served = spec["truncation_served"]
    return served, served < num_deletions


def _deletion_seconds(rows: list[dict[str, Any]]) -> list[float]:
    """Timed seconds of each deletion (replayed ones were not timed)."""
    return [r["seconds"] for r in rows[1:] if r["seconds"] is not None]


def method_row(
    name: str, spec: dict[str, Any], mc_row: dict[str, Any], s: Settings
) -> dict[str, Any]:
    """One run's row of the methods table.

    Args:
      name: the run's label; spec: its spec (``experiment.method_specs``,
        trained and deleted from).
      mc_row: its row of ``theory_tables``' ``deletion_rate``.
      s: the run's settings (shards, slices, deletions, ``accuracy_at``).
    """
    rows = spec["rows"]
    served, died = _stream_capacity(spec, s.deletions)
    secs = _deletion_seconds(rows)
    row = {
        "method": name,
        "B": spec["budget"],
        "nodes_stored": spec["train"]["nodes"],
        "stage_checkpoints_m_B_L": s.num_shards * spec["budget"] * s.num_slices,
        "storage_MB": round(spec["storage_bytes"] / 1e6, 3),
        "train_seconds": round(spec["train"]["seconds"], 2),
        "served_before_retraining": served if died else f">={served}",
        "mc_served_before_retraining": round(mc_row["mc_served_before_retraining"], 2),
        "all_shards_dead_at": (
            _all_dead_at(rows) if spec["method"] == "s3t" else "never (retrains)"
        ),
        "deletion_seconds_total": round(float(np.sum(secs)), 3),
        "deletion_seconds_mean": round(float(np.mean(secs)), 4) if secs else None,
    }
    for k in s.accuracy_at:
        row[f"accuracy_after_{k}"] = _acc(rows, k)
    return row


def method_metrics(
    name: str, spec: dict[str, Any], mc_row: dict[str, Any], num_deletions: int
) -> dict[str, Any]:
    """One run's headline metrics (``<name>_...``), as in ``results.json``."""
    served, died = _stream_capacity(spec, num_deletions)
    out = {
        f"{name}_accuracy_before_deletions": _metric(
            spec["rows"][0]["accuracy"], "fraction"
        ),
        f"{name}_deletions_before_retraining": _metric(
            served, "deletions", lower_bound=not died
        ),
        f"{name}_expected_deletions_before_retraining": _metric(
            mc_row["mc_served_before_retraining"],
            "deletions",
            se=mc_row["mc_served_before_retraining_se"],
        ),
        f"{name}_train_seconds": _metric(spec["train"]["seconds"], "s"),
        f"{name}_storage_bytes": _metric(spec["storage_bytes"], "bytes"),
    }
    if spec["method"] == "s3t":
        secs = _deletion_seconds(spec["rows"])
        out[f"{name}_mean_deletion_ms"] = _metric(
            1e3 * float(np.mean(secs)) if secs else "no deletion was timed", "ms"
        )
    return out


@dataclasses.dataclass(frozen=True)
class Headline:
    """The numbers the verdict is read from: S3T at its largest B against SISA.

    Attributes:
      best: label of the S3T run with the largest budget; budget: its B.
      mc_best, mc_sisa: expected deletions before a retraining (Monte Carlo).
      stream_best, stream_sisa: the same on the measured stream.
      acc_best, acc_sisa: test accuracy before any deletion.
      chance: majority-class accuracy of the test set.
      reference_accuracy: one model on all the data (None if not trained).
      sisa_seconds: SISA's total retraining time over the stream.
      deletion_ms: S3T's mean time per deletion (or why it is missing).
    """

    best: str
    budget: int
    mc_best: float
    mc_sisa: float
    stream_best: Any
    stream_sisa: int
    acc_best: float
    acc_sisa: float
    chance: float
    reference_accuracy: float | None
    sisa_seconds: float
    deletion_ms: Any

    @property
    def ratio(self) -> float:
        """Expected capacity of S3T over SISA's."""
        return self.mc_best / self.mc_sisa


def headline(
    methods: dict[str, dict[str, Any]],
    mc: dict[str, dict[str, Any]],
    metrics: dict[str, Any],
    sisa_row: dict[str, Any],
    chance: float,
    reference: dict[str, Any] | None,
) -> Headline:
    """Reads the :class:`Headline` from the runs and their metrics so far."""
    best = max(
        (n for n, spec in methods.items() if spec["method"] == "s3t"),
        key=lambda n: methods[n]["budget"],
    )
    return Headline(
        best=best,
        budget=methods[best]["budget"],
        mc_best=mc[best]["mc_served_before_retraining"],
        mc_sisa=mc["sisa"]["mc_served_before_retraining"],
        stream_best=metrics[f"{best}_deletions_before_retraining"]["value"],
        stream_sisa=methods["sisa"]["truncation_served"],
        acc_best=methods[best]["rows"][0]["accuracy"],
        acc_sisa=methods["sisa"]["rows"][0]["accuracy"],
        chance=chance,
        reference_accuracy=None if reference is None else reference["accuracy"],
        sisa_seconds=sisa_row["deletion_seconds_total"],
        deletion_ms=metrics[f"{best}_mean_deletion_ms"]["value"],
    )


def headline_metrics(
    h: Headline, num_deletions: int, pretrain_accuracy: float
) -> dict[str, Any]:
    """The comparison's metrics: SISA's retraining time, capacity ratios, bars."""
    out = {
        "sisa_retraining_seconds": _metric(
            h.sisa_seconds, "s", deletions=num_deletions
        ),
        "capacity_ratio_expected": _metric(h.ratio, "x", method=h.best),
        "capacity_ratio_on_stream": _metric(
            h.stream_best / h.stream_sisa
            if h.stream_sisa
            else "undefined: SISA's first request already hit a first slice",
            "x",
            method=h.best,
        ),
        "pretrain_accuracy": _metric(pretrain_accuracy, "fraction"),
        "majority_class_accuracy": _metric(h.chance, "fraction"),
    }
    if h.reference_accuracy is not None:
        out["full_training_accuracy"] = _metric(h.reference_accuracy, "fraction")
    return out


def shortfalls(h: Headline) -> list[str]:
    """Why the claim is not reproduced (empty when it is)."""
    similar = h.acc_best >= h.acc_sisa - ACCURACY_MARGIN
    beats_chance = h.acc_best > h.chance + 0.05 and h.acc_sisa > h.chance + 0.05
    return [
        reason
        for reason, bad in (
            ("capacity below the target", h.ratio < TARGET_RATIO),
            ("accuracy not within 3 points of SISA's", not similar),
            ("accuracy does not beat the majority class", not beats_chance),
        )
        if bad
    ]


def verdict(h: Headline, s: Settings, num_devices: int) -> str:
    """The verdict sentence: capacity, accuracy and deletion cost, with the scale."""
    missed = shortfalls(h)
    why = f" ({', '.join(missed)})" if missed else ""
    reference = (
        f", one model on all data {h.reference_accuracy:.3f}"
        if h.reference_accuracy is not None
        else ""
    )
    return (
        f"{'Not reproduced' if missed else 'Reproduced'} at this scale{why}: S3T "
        f"with B={h.budget} is expected to serve {h.mc_best:.1f} uniform "
        f"deletions before any shard needs retraining vs {h.mc_sisa:.1f} "
        f"for SISA ({h.ratio:.1f}x, target >= {TARGET_RATIO:g}x; Monte Carlo of "
        f"the ledger's truncation rule, {s.monte_carlo.trials} streams); on "
        f"the measured stream {h.stream_best} vs {h.stream_sisa}. Accuracy before "
        f"deletions {h.acc_best:.3f} (S3T) vs {h.acc_sisa:.3f} (SISA), chance "
        f"{h.chance:.3f}{reference}. SISA spent {h.sisa_seconds:.1f} s retraining "
        f"for {s.deletions} deletions; S3T served each in about "
        f"{_fmt(h.deletion_ms)} ms. Scale: 8x8 digits, residual-MLP backbone, "
        f"{num_devices} device(s); the paper's transformer and LLM accuracy "
        "numbers are not tested here."
    )


def setup_table(
    s: Settings,
    split: Any,
    prior: list[float],
    num_devices: int,
    node_params: int,
) -> dict[str, Any]:
    """The data split, tuned parameters per node, prior and devices of the run."""
    n = len(split.y_train)
    return {
        "train_samples": int(n),
        "left_out": int(split.left_out),
        "test_samples": int(len(split.y_test)),
        "samples_per_slice": int(n // (s.num_shards * s.num_slices)),
        "tuned_params_per_node": node_params,
        "deletion_prior": prior,
        "devices": num_devices,
    }


def summarise(
    *,
    settings: Settings,
    workdir: str,
    methods: dict[str, dict[str, Any]],
    theory: dict[str, Any],
    reference: dict[str, Any] | None,
    pretrain_accuracy: float,
    split: Any,
    num_devices: int,
    node_params: int,
) -> dict[str, Any]:
    """Builds the results' metrics, tables, figures and verdict.

    Args:
      settings: the run's settings.
      workdir: where the figures go.
      methods: the runs, trained and deleted from (``experiment.method_specs``).
      theory: :func:`theory_tables` of ``methods``.
      reference: ``{"accuracy", "train_seconds"}`` of one model on all the
        data, or None.
      pretrain_accuracy: the backbone's accuracy on digits 0-4.
      split: the ``data.DigitsSplit``.
      num_devices: devices that trained shards in parallel.
      node_params: tuned parameters of one node.

    Returns:
      ``{"metrics", "tables", "verdict"}`` for ``results.json``.
    """
    mc = {r["method"]: r for r in theory["deletion_rate"]}
    table, metrics = [], {}
    for name, spec in methods.items():
        table.append(method_row(name, spec, mc[name], settings))
        metrics.update(method_metrics(name, spec, mc[name], settings.deletions))
    sisa_row = next(r for r in table if r["method"] == "sisa")
    chance = float(np.max(np.bincount(split.y_test)) / len(split.y_test))
    h = headline(methods, mc, metrics, sisa_row, chance, reference)
    metrics.update(headline_metrics(h, settings.deletions, pretrain_accuracy))
    _figures(workdir, methods, mc)
    tables = {
        "methods": table,
        "deletion_rate": theory["deletion_rate"],
        "prior_selection": theory["prior_selection"],
        "accuracy_curves": {
            name: [r["accuracy"] for r in spec["rows"]]
            for name, spec in methods.items()
        },
        "setup": setup_table(
            settings, split, theory["prior"], num_devices, node_params
        ),
    }
    return {
        "metrics": metrics,
        "tables": tables,
        "verdict": verdict(h, settings, num_devices),
    }


def _figures(
    workdir: str, methods: dict[str, dict[str, Any]], mc: dict[str, dict[str, Any]]
) -> None:
    """Accuracy against deletions served, and expected capacity per run (PNGs)."""
    curves = {}
    for name, spec in methods.items():
        pts = [
            (r["k"], r["accuracy"]) for r in spec["rows"] if r["accuracy"] is not None
        ]
        label = "SISA (retrains)" if name == "sisa" else f"S3T B={spec['budget']}"
        curves[label] = tuple(zip(*pts)) if pts else ((), ())
    figures.plot_curves(
        os.path.join(workdir, "s3t_accuracy_vs_deletions.png"),
        curves,
        xlabel="deletions served",
        ylabel="test accuracy (served ensemble)",
        title="Accuracy as deletions accumulate",
    )
    figures.plot_bars(
        os.path.join(workdir, "s3t_deletion_capacity.png"),
        {
            ("SISA" if n == "sisa" else f"S3T B={methods[n]['budget']}"): mc[n][
                "mc_served_before_retraining"
            ]
            for n in methods
        },
        ylabel="expected deletions before a retraining",
        title="Deletion capacity (Monte Carlo of the ledger rule)",
    )
