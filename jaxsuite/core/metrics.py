"""Metric logging and the ``results.json`` every experiment ends with.

``MetricWriter`` follows clu's method names (``write_scalars``,
``write_hparams``, ``flush``, ``close``) and writes, on process 0 only:

* ``workdir/metrics.jsonl``: one JSON object per call, ``{"step", ...}``;
* TensorBoard event files under ``workdir/tb`` (no TensorFlow needed).

``write_results`` writes the shared ``results.json`` contract that the suite
reads: ``{"paper", "preset", "metrics": {name: {"value", "unit"}}, "tables",
"claim", "verdict", "config", "env", "wall_seconds"}``.
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

from jaxsuite.core import config as config_lib
from jaxsuite.core import tensorboard as tb_events

RESULTS_FILE = "results.json"
METRICS_FILE = "metrics.jsonl"


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
        if not self._active:
            return
        os.makedirs(workdir, exist_ok=True)
        self._jsonl = open(os.path.join(workdir, METRICS_FILE), "a")  # noqa: SIM115
        if tensorboard:
            self._tb = tb_events.EventFileWriter(os.path.join(workdir, "tb"))

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        """Records ``scalars`` (name -> number or 0-d array) at ``step``."""
        if not self._active:
            return
        values = {k: _to_float(v) for k, v in scalars.items()}
        row = {"step": int(step)}
        row.update({k: (v if math.isfinite(v) else str(v)) for k, v in values.items()})
        self._jsonl.write(json.dumps(row) + "\n")
        if self._tb is not None:
            self._tb.scalars(int(step), values)
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
        self._jsonl.write(json.dumps({"hparams": flat}) + "\n")
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
    """The scalar rows of ``workdir/metrics.jsonl`` (hparams rows dropped)."""
    path = os.path.join(workdir, METRICS_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
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
    """One headline number: ``{"value": float, "unit": str, ...}``."""
    out = {"value": _to_float(value), "unit": unit}
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
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(results, f, indent=2, default=str)
        os.replace(tmp, path)
    return path


def read_results(path: str) -> dict[str, Any]:
    """Reads and checks a ``results.json`` (a file path or a workdir)."""
    if os.path.isdir(path):
        path = os.path.join(path, RESULTS_FILE)
    with open(path) as f:
        results = json.load(f)
    required = ("paper", "preset", "metrics", "claim", "verdict", "config", "env")
    missing = [k for k in required if k not in results]
    if missing:
        raise ValueError(f"{path} lacks {missing}")
    return results
