"""The one-command kernel-speed study runs where only JAX is installed.

``benchmarks/kernel_speed.py --preset=tiny`` is run as a new process whose
interpreter cannot import the packages a bare JAX-with-CUDA machine lacks
(a ``sitecustomize`` on ``PYTHONPATH`` blocks them), so a missing or eager
import in any section fails here, on CPU, rather than on the GPU.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
# Installed here by the test extra, absent where only JAX with CUDA, flax,
# optax, orbax, chex, absl and xarray are.
ABSENT = (
    "ml_collections",
    "jraph",
    "shap",
    "tensorboardX",
    "matplotlib",
    "sklearn",
    "safetensors",
)
BLOCKER = f"""
import importlib.abc, sys

class _Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {ABSENT!r}:
            raise ImportError(f"{{name}} is not installed on the GPU machine")
        return None

sys.meta_path.insert(0, _Absent())
"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kernel_speed")
    site = tmp / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)])
    env["JAX_PLATFORMS"] = "cpu"
    out = tmp / "out"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "kernel_speed.py"),
            "--preset=tiny",
            f"--out_dir={out}",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp,
        timeout=600,
    )
    return proc, out


@pytest.mark.slow
def test_blocker_blocks(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-c", "import ml_collections"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode != 0
    assert "not installed on the GPU machine" in proc.stderr


@pytest.mark.slow
def test_every_section_runs_without_the_extras(tiny_run):
    proc, out = tiny_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "kernel_speed_cpu.json").read_text())
    assert summary["env"]["backend"] == "cpu"
    names = [s["section"] for s in summary["sections"]]
    assert names == ["gpu_check", "hash_profile", "splat_profile"]
    for section in summary["sections"]:
        assert section["status"] == "ok", section["log_tail"]
        assert section["result"] is not None
        assert (out / f"{section['section']}_cpu.json").exists()


@pytest.mark.slow
def test_kernels_agree_with_references(tiny_run):
    _, out = tiny_run
    check = json.loads((out / "gpu_check_cpu.json").read_text())
    assert check["rows"] and all(r["ok"] for r in check["rows"])
