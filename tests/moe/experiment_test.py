"""The launcher's smoke preset runs end to end and its results hold together."""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib

import pytest

from jaxsuite.moe import experiment

_CONFIG = pathlib.Path(__file__).parents[2] / "configs" / "hecate.py"


def _get_config(arg):
    spec = importlib.util.spec_from_file_location("hecate_config", _CONFIG)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


@pytest.mark.slow
def test_smoke_run_writes_consistent_results(tmp_path):
    config = _get_config("smoke")
    workdir = str(tmp_path / "run")
    results = experiment.run(config, workdir)
    assert results["paper"] == "hecate" and results["preset"] == "smoke"
    for name in ("load_imbalance", "bytes_per_step", "speedup_vs_ep"):
        assert os.path.getsize(os.path.join(workdir, f"{name}.png")) > 1000
    rows = {r["strategy"]: r for r in results["tables"]["strategies"]}
    # EP and FSSDP train the same function: identical losses up to rounding.
    assert rows["fssdp"]["max_loss_diff_vs_ep"] < 1e-4
    # FSSDP's compiled step gathers parameters; EP's moves only tokens.
    assert rows["fssdp"]["hlo_bytes_per_step"] > rows["ep"]["hlo_bytes_per_step"]
    modelled = results["tables"]["modelled"]
    for row in modelled:
        if row["strategy"] == "ep":
            assert row["speedup_vs_ep"] == pytest.approx(1.0)
            assert row["param_MB_per_step"] == 0.0
        if row["strategy"] == "fsdp":
            assert row["param_bytes_vs_fsdp"] == pytest.approx(1.0)
    # Skew shows up in the measured loads.
    imb = {r["skew"]: r["load_max_over_mean"] for r in modelled}
    assert imb[3.0] > imb[0.0]
    # Resuming a finished run reuses its traces and reproduces the numbers.
    again = experiment.run(config, workdir)
    assert json.dumps(again["tables"]["modelled"]) == json.dumps(modelled)
