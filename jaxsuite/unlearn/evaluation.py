"""Accuracy of a run's served ensemble as a stream of deletions is applied.

:class:`Evaluator` scores the ensemble a ledger serves (per-node logits are
cached); :func:`deletion_phase` applies a deletion stream to one run a
request at a time and records, after each, the live shards and the test
accuracy in ``run_dir/curve.jsonl``. The phase resumes: requests already in
the ledger are skipped and a row cut by a crash is rebuilt from the ledger.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from absl import logging

from jaxsuite.core import atomic
from jaxsuite.unlearn import ledger, runs
from jaxsuite.unlearn import model as model_lib

CURVE_FILE = "curve.jsonl"
DeleteFn = Callable[[int], tuple[dict[str, Any], float | None]]
BodyFn = Callable[[], dict[str, Any]]


class Evaluator:
    """Test accuracy of a run's served ensemble, with per-node logits cached.

    Args:
      setup: the runs' shared pieces (nodes are read through it).
      x: (N_test, d) test images; y: (N_test,) labels.
    """

    def __init__(self, setup: runs.Setup, x: np.ndarray, y: np.ndarray):
        self.setup, self.x, self.y = setup, x, y
        self._cache: dict[Any, jax.Array] = {}

    def accuracy(self, run_dir: str, body: dict[str, Any]) -> float | None:
        """Accuracy of the mean logits of the live shards; None if all are dead."""
        logits = []
        for shard, prefix in ledger.served(body).items():
            if prefix is None:
                continue
            key = (run_dir, shard, prefix, body["state"]["retrained"][shard])
            if key not in self._cache:
                self._cache[key] = self.setup.node_logits(
                    run_dir, shard, prefix, self.x
                )
            logits.append(self._cache[key])
        if not logits:
            return None
        return model_lib.accuracy(np.mean(np.stack(logits), axis=0), self.y)


def deletion_rows(run_dir: str) -> list[dict[str, Any]]:
    """Rows recorded so far by :func:`deletion_phase` for ``run_dir``."""
    return read_rows(os.path.join(run_dir, CURVE_FILE))


def read_rows(path: str) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file; a last line cut by a crash is dropped."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        lines = [line for line in f.read().split("\n") if line.strip()]
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except ValueError:
            if i != len(lines) - 1:
                raise
            atomic.write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
    return rows


def append_row(path: str, row: dict[str, Any]) -> None:
    """Appends ``row`` as one JSON line to ``path``."""
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def _replayed_effect(
    body: dict[str, Any], sample: int, live_before: int
) -> dict[str, Any]:
    """The effect of a deletion the ledger holds but whose row was not written.

    It was the last deletion before an interruption, so the ledger's current
    state is its outcome; ``live_before`` is the live shards of the last row.
    """
    shard, slc = ledger.locate(body, sample)
    died = ledger.served(body)[shard] is None and live_before > len(
        ledger.live_shards(body)
    )
    return {"shard": shard, "slice": slc, "shard_died": died}


def _row(
    k: int,
    sample: int,
    effect: dict[str, Any],
    seconds: float | None,
    body: dict[str, Any],
    accuracy: float | None,
) -> dict[str, Any]:
    """The curve's row after deletion ``k`` (``sample``) left ledger ``body``."""
    return {
        "k": k,
        "sample": int(sample),
        "shard": effect.get("shard"),
        "slice": effect.get("slice"),
        "shard_died": bool(effect.get("shard_died", False)),
        "seconds": seconds,
        "live_shards": len(ledger.live_shards(body)),
        "accuracy": accuracy,
    }


def deletion_phase(
    name: str,
    run_dir: str,
    stream: list[int],
    evaluator: Evaluator,
    delete_fn: DeleteFn,
    body_fn: BodyFn,
) -> list[dict[str, Any]]:
    """Applies ``stream`` to a run one request at a time, recording accuracy.

    Resumes: requests already in the ledger are skipped; rows live in
    ``run_dir/curve.jsonl`` (row ``k`` = state after ``k`` deletions).

    Args:
      name: the run's label (progress lines).
      run_dir: the trained run.
      stream: sample ids to delete, in order.
      evaluator: accuracy of a served state.
      delete_fn: ``sample -> (effect, seconds)``.
      body_fn: ``() -> ledger body`` of the current state.

    Returns:
      ``len(stream) + 1`` rows, row ``k`` after ``k`` deletions.
    """
    path = os.path.join(run_dir, CURVE_FILE)
    rows = read_rows(path)
    if not rows:
        body = body_fn()
        rows.append(
            {
                "k": 0,
                "live_shards": len(ledger.live_shards(body)),
                "accuracy": evaluator.accuracy(run_dir, body),
            }
        )
        append_row(path, rows[0])
    done = set(body_fn()["state"]["deleted"])
    t0 = time.perf_counter()
    for k, sample in enumerate(stream, start=1):
        if k < len(rows):
            continue
        if sample in done:  # Deleted before an interruption, row not written:
            effect = _replayed_effect(body_fn(), sample, rows[-1]["live_shards"])
            seconds = None  # Not timed.
        else:
            effect, seconds = delete_fn(sample)
        body = body_fn()
        row = _row(k, sample, effect, seconds, body, evaluator.accuracy(run_dir, body))
        rows.append(row)
        append_row(path, row)
        if k % 20 == 0 or k == len(stream):
            logging.info(
                "%s",
                f"{name}: {k}/{len(stream)} deletions, live shards "
                f"{row['live_shards']}, accuracy {row['accuracy']} "
                f"({time.perf_counter() - t0:.1f} s)",
            )
    return rows
