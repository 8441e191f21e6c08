"""The S3T report: per-run rows from deletion curves, headline and verdict."""

from __future__ import annotations

import dataclasses

from configs import s3t as s3t_config
from jaxsuite.unlearn import report, settings


def _rows(died_at, dead_at, accuracy=0.9, n=8):
    rows = [{"k": 0, "live_shards": 2, "accuracy": accuracy}]
    for k in range(1, n + 1):
        live = 0 if dead_at and k >= dead_at else (1 if k >= died_at else 2)
        rows.append(
            {
                "k": k,
                "shard_died": k in (died_at, dead_at),
                "seconds": 0.002,
                "live_shards": live,
                "accuracy": None if live == 0 else accuracy,
            }
        )
    return rows


def _spec(method, budget, rows, **extra):
    train = {"nodes": 4, "seconds": 1.0}
    return {
        "method": method,
        "budget": budget,
        "rows": rows,
        "train": train,
        "storage_bytes": 2_000_000,
        **extra,
    }


def test_rows_metrics_and_verdict_follow_the_curves():
    s = settings.from_config(s3t_config.get_config("smoke"))
    s3t = _spec("s3t", 2, _rows(died_at=5, dead_at=7))
    sisa = _spec(
        "sisa", 1, _rows(died_at=99, dead_at=None, accuracy=0.92), truncation_served=2
    )
    mc_s3t = {"mc_served_before_retraining": 6.0, "mc_served_before_retraining_se": 0.1}
    mc_sisa = {
        "mc_served_before_retraining": 2.0,
        "mc_served_before_retraining_se": 0.1,
    }
    row = report.method_row("s3t_B2", s3t, mc_s3t, s)
    assert row["served_before_retraining"] == 4  # the 5th request killed a shard
    assert row["all_shards_dead_at"] == 7
    assert row["accuracy_after_8"] == "no model survives"
    assert row["stage_checkpoints_m_B_L"] == 2 * 2 * 2
    assert report.method_row("sisa", sisa, mc_sisa, s)["served_before_retraining"] == 2
    metrics = report.method_metrics("s3t_B2", s3t, mc_s3t, s.deletions)
    assert metrics["s3t_B2_mean_deletion_ms"]["value"] == 2.0
    sisa_row = report.method_row("sisa", sisa, mc_sisa, s)
    methods = {"s3t_B2": s3t, "sisa": sisa}
    mc = {"s3t_B2": mc_s3t, "sisa": mc_sisa}
    h = report.headline(methods, mc, metrics, sisa_row, 0.2, None)
    assert (h.best, h.ratio, h.stream_best, h.stream_sisa) == ("s3t_B2", 3.0, 4.0, 2)
    assert report.shortfalls(h) == []  # within 3 points of SISA, 3x capacity
    assert report.verdict(h, s, 1).startswith("Reproduced at this scale: S3T")
    worse = dataclasses.replace(h, acc_best=0.85, mc_best=3.0)
    assert report.shortfalls(worse) == [
        "capacity below the target",
        "accuracy not within 3 points of SISA's",
    ]
    assert "Not reproduced at this scale (capacity below" in report.verdict(worse, s, 1)
