"""Metric logging and the ``results.json`` every experiment ends with.

``MetricWriter`` follows clu's method names (``write_scalars``,
``write_hparams``, ``flush``, ``close``) and writes, on process 0 only:

* ``workdir/metrics.jsonl``: one JSON object per call, ``{"step", ...}``,
  flushed at once, so a killed run loses no logged row;
* TensorBoard event files under ``workdir/tb`` (no TensorFlow needed).

A writer opened on a workdir that already has ``metrics.jsonl`` (a resumed
run) appends to it, drops a last line cut by a kill, and skips rows it
already holds: a scalar row with the same step and names, or an identical
hparams row, so a resumed run does not repeat what its first part logged.

``write_results`` writes the shared ``results.json`` contract that the suite
reads: ``{"paper", "preset", "metrics": {name: {"value", "unit"}}, "tables",
"claim", "verdict", "config", "env", "wall_seconds"}``, as strict JSON: a value
that cannot be computed is a string that says why (``"not reached within 300
s"``), never NaN.
"""

from __future__ import annotations

import json
import math
import os
import platform
import socket
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from absl import logging

from jaxsuite.core import atomic
from jaxsuite.core import config as config_lib
from jaxsuite.core import tensorboard as tb_events
from jaxsuite.core import workdir as workdir_lib

RESULTS_FILE = "results.json"
METRICS_FILE = "metrics.jsonl"


def _repair_tail(path: str) -> list[dict[str, Any]]:
    """The rows of ``path``; a last line cut mid-write is removed from the file."""
    with open(path, "rb") as f:
        data = f.read()
    end = len(data)
    if data and not data.endswith(b"\n"):
        end = data.rfind(b"\n") + 1
        logging.warning("%s: dropping a cut last line %r.", path, data[end:][:80])
        os.truncate(path, end)
    rows = []
    for i, line in enumerate(data[:end].decode("utf-8", "replace").splitlines()):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError as e:
            raise ValueError(f"{path}, line {i + 1}: not a JSON row ({e}).") from None
    return rows


def _same_run(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Equal hparams up to the fields that only name or pace a run."""
    pace = lambda d: {
        k: v for k, v in d.items() if k.split(".")[-1] not in config_lib.RESUME_IGNORED
    }
    return pace(a) == pace(b)


def _row_key(step: int, names) -> tuple[int, tuple[str, ...]]:
    return int(step), tuple(sorted(names))


def _to_float(value: Any) -> float:
    return float(np.asarray(jax.device_get(value)))


class MetricWriter:
    """Writes scalars to ``metrics.jsonl`` and TensorBoard; a no-op off process 0.

    Args:
      workdir: directory for ``metrics.jsonl`` and ``tb/``.
      tensorboard: also write TensorBoard event files.
      log_every_write: also echo each ``write_scalars`` call to absl logging.
    """

    def __init__(
        self, workdir: str, *, tensorboard: bool = True, log_every_write: bool = False
    ):
        self._active = jax.process_index() == 0
        self._log = log_every_write
        self._jsonl = None
        self._tb = None
        self._seen: set[tuple[int, tuple[str, ...]]] = set()
        self._hparams: list[dict[str, Any]] = []
        if not self._active:
            return
        os.makedirs(workdir, exist_ok=True)
        path = os.path.join(workdir, METRICS_FILE)
        if os.path.exists(path):
            for row in _repair_tail(path):
                if "step" in row:
                    self._seen.add(_row_key(row["step"], set(row) - {"step"}))
                elif "hparams" in row:
                    self._hparams.append(row["hparams"])
        self._jsonl = open(path, "a")  # noqa: SIM115
        if tensorboard:
            self._tb = tb_events.EventFileWriter(os.path.join(workdir, "tb"))

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        """Records ``scalars`` (name -> number or 0-d array) at ``step``."""
        if not self._active:
            return
        key = _row_key(step, scalars)
        if key in self._seen:
            return  # logged before an interruption; the resumed run repeats it
        self._seen.add(key)
        values = {k: _to_float(v) for k, v in scalars.items()}
        row = {"step": int(step)}
        row.update({k: (v if math.isfinite(v) else str(v)) for k, v in values.items()})
        self._jsonl.write(json.dumps(row, allow_nan=False) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            self._tb.scalars(int(step), values)
            self._tb.flush()
        if self._log:
            logging.info(
                "step %d: %s",
                step,
                ", ".join(f"{k}={v:.5g}" for k, v in values.items()),
            )

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        """Records hyperparameters (flattened to dotted keys) once per run."""
        if not self._active:
            return
        flat = flatten_dict(config_lib.to_dict(dict(hparams)))
        if any(_same_run(flat, old) for old in self._hparams):
            return
        self._hparams.append(flat)
        self._jsonl.write(atomic.dumps_json({"hparams": flat}, indent=None) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            table = "| key | value |\n|---|---|\n" + "\n".join(
                f"| {k} | {v} |" for k, v in flat.items()
            )
            self._tb.text(0, "hparams", table)

    def flush(self) -> None:
        if self._jsonl is not None:
            self._jsonl.flush()
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        self.flush()
        if self._jsonl is not None:
            self._jsonl.close()
        if self._tb is not None:
            self._tb.close()

    def __enter__(self) -> MetricWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_metrics(workdir: str) -> list[dict[str, Any]]:
    """The scalar rows of ``workdir/metrics.jsonl`` (hparams rows dropped).

    A last line cut by a kill is ignored; any other line that is not JSON
    raises ``ValueError`` naming the file and the line.
    """
    path = os.path.join(workdir, METRICS_FILE)
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        data = f.read()
    if data and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
    rows = []
    for i, line in enumerate(data.decode("utf-8", "replace").splitlines()):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError as e:
            raise ValueError(f"{path}, line {i + 1}: not a JSON row ({e}).") from None
    return [r for r in rows if "step" in r]


def flatten_dict(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_dict(value, name + "."))
        else:
            out[name] = value
    return out


def env_info() -> dict[str, Any]:
    """What ran the experiment: JAX version, backend, devices, host."""
    devices = jax.devices()
    return {
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device_kind": devices[0].device_kind,
        "device_count": jax.device_count(),
        "process_count": jax.process_count(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }


def metric(value: Any, unit: str, **extra: Any) -> dict[str, Any]:
    """One headline number: ``{"value": float, "unit": str, ...}``.

    ``value`` may be a string saying why there is no number (``"not reached
    within 300 s"``); NaN and infinities are refused by :func:`write_results`.
    """
    out = {"value": value if isinstance(value, str) else _to_float(value), "unit": unit}
    out.update(extra)
    return out


def write_results(
    workdir: str,
    *,
    paper: str,
    config: Any,
    metrics: Mapping[str, Mapping[str, Any]],
    claim: str,
    verdict: str,
    wall_seconds: float,
    tables: Mapping[str, Any] | None = None,
) -> str:
    """Writes ``workdir/results.json`` and returns its path.

    Args:
      workdir: the run's directory.
      paper: the paper's short name (the launcher's module name).
      config: the ``ConfigDict`` that produced the run; its ``preset`` field is
        recorded as the preset.
      metrics: name -> ``{"value", "unit"}`` (see ``metric``).
      claim: the paper's claim in one line.
      verdict: what this run shows about the claim, in one or two sentences,
        including what this scale cannot test.
      wall_seconds: wall time of the whole run.
      tables: name -> list of row dicts (same keys per row).

    Writing the results ends the run: this process's lock on ``workdir``
    (see ``jaxsuite.core.workdir``) is released.

    Raises:
      ValueError: a metric lacks its value or unit, or a value anywhere is
        NaN or infinite (naming where): results are strict JSON.
    """
    for name, entry in metrics.items():
        if "value" not in entry or "unit" not in entry:
            raise ValueError(f"Metric {name!r} needs a 'value' and a 'unit': {entry}")
    cfg = config_lib.to_dict(config)
    results = {
        "paper": paper,
        "preset": cfg.get("preset", ""),
        "metrics": {k: dict(v) for k, v in metrics.items()},
        "tables": config_lib.to_dict(dict(tables or {})),
        "claim": claim,
        "verdict": verdict,
        "config": cfg,
        "env": env_info(),
        "wall_seconds": float(wall_seconds),
    }
    path = os.path.join(workdir, RESULTS_FILE)
    text = atomic.dumps_json(results, indent=2, default=str)  # checks all ranks
    if jax.process_index() == 0:
        atomic.write_text(path, text + "\n")
        workdir_lib.unlock(workdir)  # the run is over (a no-op if not held)
    return path


def read_results(path: str) -> dict[str, Any]:
    """Reads and checks a ``results.json`` (a file path or a workdir)."""
    if os.path.isdir(path):
        path = os.path.join(path, RESULTS_FILE)
    results = atomic.read_json(path)
    required = ("paper", "preset", "metrics", "claim", "verdict", "config", "env")
    missing = [k for k in required if k not in results]
    if missing:
        raise ValueError(f"{path} lacks {missing}")
    return results
