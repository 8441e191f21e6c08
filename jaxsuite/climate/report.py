"""Figures, headline metrics, verdict and tables of the blocking experiment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from jaxsuite.climate import blocking, plots
from jaxsuite.climate.evaluation import Skill
from jaxsuite.climate.settings import Settings
from jaxsuite.climate.stages import OnsetData, metric_or_note, side_by_side
from jaxsuite.climate.training import SourceFit
from jaxsuite.core import metrics as metrics_lib

CLAIM = (
    "A CNN trained on the MM93 QG model predicts whether Atlantic blocking "
    "persists; SHAP shows upstream highs and a trough; pre-training on the QG "
    "model then fine-tuning beats direct training on scarce target data."
)


def blocking_frequency_figure(
    path: str,
    fields: Mapping[str, np.ndarray],
    lat: np.ndarray,
    lon: np.ndarray,
    spec: blocking.OnsetSpec,
) -> str:
    """Davini 2-D blocking and persistent-high frequencies of each run.

    Args:
      path: the PNG written.
      fields: run name -> (members, days, nlat, nlon) daily Z500.
      lat, lon: (nlat,), (nlon,) grid coordinates.
      spec: threshold and persistence of the persistent-anomaly panels.
    """
    panels = {}
    for name, z in fields.items():
        b, lats = blocking.davini(z, lat)
        panels[f"{name}: 2-D blocked days (Davini), %"] = (b.mean(axis=(0, 1)), lats)
        nh = lat >= 20
        pa = blocking.persistent_anomaly_frequency(
            z[..., nh, :], spec.threshold, spec.persistence_days
        )
        title = f"{name}: days in >={spec.persistence_days} d high anomaly, %"
        panels[title] = (pa, lat[nh])
    return plots.blocking_frequency(path, panels, lon)


def attribution_figure(
    path: str,
    map_src: np.ndarray,
    before: np.ndarray,
    after: np.ndarray,
    n_max: int,
    lat_in: np.ndarray,
    lon: np.ndarray,
) -> str:
    """The three mean (H, W) attribution maps on (H,) ``lat_in`` and ``lon``."""
    maps = {
        "source CNN on source test (mean expected gradients)": map_src,
        "source CNN on target test (before transfer)": before,
        f"fine-tuned CNN on target test (after transfer, n={n_max})": after,
    }
    return plots.attribution_maps(path, maps, lat_in, lon)


def throughput(s: Settings, rate_src: float, rate_tgt: float) -> dict[str, float]:
    """Member-days/s of both runs, plus the pyshqg comparison when it is installed."""
    tput = {"source_member_days_per_s": rate_src, "target_member_days_per_s": rate_tgt}
    if s.pyshqg_python and os.path.exists(s.pyshqg_python):
        tput.update(side_by_side(s.pyshqg_python, s.throughput_days))
    return tput


class Outcome(NamedTuple):
    """What the run measured, as ``report``'s functions read it.

    Attributes:
      stats: run name -> ``blocking.event_statistics``.
      data: the onsets and their split.
      source: the source CNNs' split (``SourceFit``).
      source_skill: the source CNNs' bootstrap skill.
      rho: (explain_samples,) SHAP vs expected-gradients rank correlations.
      block: SHAP superpixel size.
      sparse: a row per sparse fraction (``evaluation.sparse_models``).
      sparse_all: the row of the model on every pixel.
      transfer: ``evaluation.transfer_rows``.
      sizes: the target sizes trained, ascending as configured.
      map_corr: correlation of the attribution maps before/after transfer.
      tput: ``throughput``.
    """

    stats: dict[str, dict[str, float]]
    data: OnsetData
    source: SourceFit
    source_skill: Skill
    rho: np.ndarray
    block: tuple[int, int]
    sparse: list[dict[str, Any]]
    sparse_all: dict[str, Any]
    transfer: list[dict[str, Any]]
    sizes: list[int]
    map_corr: float
    tput: dict[str, float]


def _row(o: Outcome, regime: str, n: int) -> dict[str, Any]:
    """The transfer row of ``regime`` at ``n`` training onsets."""
    return next(r for r in o.transfer if r["regime"] == regime and r["n_train"] == n)


def _ci_metric(mean: float, lo: float, hi: float, unit: str) -> dict[str, Any]:
    """A metric in ``unit`` with its 95% interval ``[lo, hi]``."""
    return metrics_lib.metric(mean, unit, ci95=[lo, hi])


def metrics(o: Outcome) -> dict[str, Any]:
    """The headline numbers of ``results.json``, each with its unit."""
    sk = o.source_skill
    n0 = o.sizes[0]
    d0, f0 = _row(o, "direct", n0), _row(o, "fine-tune", n0)
    h0 = _row(o, "head-only", n0)
    out = {}
    for key, unit in (
        ("auc", "ROC-AUC"),
        ("bss", "BSS"),
        ("bacc", "balanced accuracy"),
    ):
        v = sk[key]
        out[f"source_{key}"] = _ci_metric(v["mean"], v["lo"], v["hi"], unit)
    out["shap_eg_rank_corr"] = metrics_lib.metric(
        float(np.nanmean(o.rho)), "Spearman rho", samples=int(len(o.rho))
    )
    out["sparse_skill_retained"] = metric_or_note(
        o.sparse[-1]["skill_retained"],
        "fraction of (AUC-0.5)",
        pixels_fraction=o.sparse[-1]["fraction"],
    )
    for name, r in (("direct", d0), ("finetune", f0), ("headonly", h0)):
        out[f"{name}_auc_n{n0}"] = _ci_metric(
            r["auc_mean"], r["auc_lo"], r["auc_hi"], "ROC-AUC"
        )
    out["shap_map_corr_before_after_transfer"] = metrics_lib.metric(
        o.map_corr, "Pearson r"
    )
    out["model_member_days_per_s"] = metrics_lib.metric(
        o.tput["source_member_days_per_s"], "member-days/s"
    )
    for k, v in o.tput.items():
        if k.startswith(("pyshqg", "ratio", "jax")):
            out[k] = metrics_lib.metric(
                v, "ratio" if k.startswith("ratio") else "model-days/s"
            )
    return out


def verdict(o: Outcome) -> str:
    """Source skill, and whether transfer beats direct training at the first size."""
    auc = o.source_skill["auc"]
    n0 = o.sizes[0]
    d0 = _row(o, "direct", n0)
    best = max((_row(o, "fine-tune", n0), _row(o, "head-only", n0)), key=_auc)
    non_overlap = best["auc_lo"] > d0["auc_hi"]
    return (
        f"Source CNN ROC-AUC {auc['mean']:.3f} [{auc['lo']:.3f}, {auc['hi']:.3f}] "
        "on held-out members. "
        f"At n={n0} target onsets, best transfer ({best['regime']}) AUC "
        f"{best['auc_mean']:.3f} [{best['auc_lo']:.3f}, {best['auc_hi']:.3f}] vs "
        f"direct {d0['auc_mean']:.3f} [{d0['auc_lo']:.3f}, {d0['auc_hi']:.3f}]: "
        + (
            "transfer beats direct training with non-overlapping CIs."
            if non_overlap
            else "CIs overlap, so 'transfer beats direct' is not reproduced "
            "at this scale."
        )
        + " The target is a model configuration with structural differences, not ERA5;"
        " the paper's exact index, threshold and CNN are unknown, so these are this"
        " package's choices."
    )


def _auc(row: dict[str, Any]) -> float:
    """The seed-mean ROC-AUC of a transfer row."""
    return row["auc_mean"]


def tables(o: Outcome) -> dict[str, list[dict[str, Any]]]:
    """The tables of ``results.json``."""
    d, fit = o.data, o.source
    return {
        "blocking_statistics": [dict(config=k, **v) for k, v in o.stats.items()],
        "source_skill": [dict(metric=k, **v) for k, v in o.source_skill.items()],
        "transfer": o.transfer,
        "sparse_model": o.sparse + [o.sparse_all],
        "throughput": [o.tput],
        "shap_agreement": [
            {
                "samples": int(len(o.rho)),
                "spearman_mean": float(np.nanmean(o.rho)),
                "spearman_min": float(np.nanmin(o.rho)),
                "superpixel_block": list(o.block),
            }
        ],
        "datasets": [
            {
                "config": "source",
                "onsets": int(len(d.ys)),
                "persistent_fraction": float(d.ys.mean()),
                "train": int(len(fit.train)),
                "val": int(len(fit.val)),
                "test": int(len(d.src_test)),
            },
            {
                "config": "target",
                "onsets": int(len(d.yt)),
                "persistent_fraction": float(d.yt.mean()),
                "pool": int(len(d.tgt_pool)),
                "test": int(len(d.tgt_test)),
            },
        ],
    }
