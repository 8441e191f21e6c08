"""Launchers run from the command line as a user runs them."""

import json
import pathlib
import subprocess
import sys

import pytest

# One worker runs every test of this paper's smoke run (here and in
# tests/notebooks_test.py), so later runs reuse its compiled programs.
pytestmark = pytest.mark.xdist_group("hecate")

ROOT = pathlib.Path(__file__).parents[1]


def test_multi_device_launcher_emulates_its_devices_on_cpu(tmp_path):
    """A fresh process sees 1 CPU device unless the launcher asks for 8."""
    workdir = tmp_path / "hecate"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "launch.hecate",
            "--config=configs/hecate.py:smoke",
            f"--workdir={workdir}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((workdir / "results.json").read_text())
    assert results["env"]["device_count"] == 8
    assert results["preset"] == "smoke"
