"""Tests for workdirs, checkpoints, exact resume and progress output."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxsuite.core import train as train_lib

ROOT = pathlib.Path(__file__).parents[2]


def _step_fn(state, step):
    """A pure step: the update depends only on (state, step)."""
    g = jax.random.normal(jax.random.fold_in(jax.random.PRNGKey(0), step), (4,))
    new = {"w": state["w"] * 0.9 + g, "count": state["count"] + 1}
    return new, {"norm": jnp.linalg.norm(new["w"])}


def _init():
    return {"w": jnp.zeros((4,)), "count": jnp.zeros((), jnp.int32)}


def test_prepare_workdir_refuses_a_different_config(tmp_path):
    cfg = ml_collections.ConfigDict({"lr": 0.1, "preset": "smoke", "log_every": 5})
    assert train_lib.prepare_workdir(str(tmp_path), cfg) is False
    assert train_lib.prepare_workdir(str(tmp_path), cfg) is True
    # Fields that only name or pace the run may change.
    same = ml_collections.ConfigDict({"lr": 0.1, "preset": "smoke,x", "log_every": 9})
    assert train_lib.prepare_workdir(str(tmp_path), same) is True
    other = ml_collections.ConfigDict({"lr": 0.2, "preset": "smoke", "log_every": 5})
    with pytest.raises(train_lib.ConfigMismatchError, match="lr: workdir has 0.1"):
        train_lib.prepare_workdir(str(tmp_path), other)


def test_train_loop_resumes_exactly(tmp_path):
    straight = train_lib.train_loop(
        _init(), _step_fn, num_steps=12, workdir=str(tmp_path / "a"), checkpoint_every=4
    )
    # Stop after step 6 (last checkpoint at 4 plus the forced final one at 6),
    # then continue to 12 in a new loop on the same workdir.
    wd = str(tmp_path / "b")
    train_lib.train_loop(_init(), _step_fn, num_steps=6, workdir=wd, checkpoint_every=4)
    seen = []
    resumed = train_lib.train_loop(
        _init(),
        _step_fn,
        num_steps=12,
        workdir=wd,
        checkpoint_every=4,
        hooks=(lambda step, state: seen.append(step),),
    )
    assert seen == list(range(7, 13))
    assert int(resumed["count"]) == 12
    np.testing.assert_array_equal(np.asarray(resumed["w"]), np.asarray(straight["w"]))


def test_checkpointer_keeps_latest_and_rejects_bad_interval(tmp_path):
    ckpt = train_lib.Checkpointer(str(tmp_path), every=2, max_to_keep=2)
    state = _init()
    saved = [ckpt.save(s, state) for s in range(1, 6)]
    ckpt.close()
    # Orbax always saves the first step it sees, then every ``every`` steps.
    assert saved == [True, True, False, True, False]
    assert train_lib.Checkpointer(str(tmp_path), every=2).latest_step() == 4
    with pytest.raises(ValueError, match="positive"):
        train_lib.Checkpointer(str(tmp_path), every=0)


def test_progress_reports_rate_eta_and_metrics():
    lines = []
    progress = train_lib.Progress(100, start=50, interval=0.0, printer=lines.append)
    time.sleep(0.05)
    line = progress.update(60, {"loss": 0.5})
    assert line == lines[-1]
    assert line.startswith("train step 60/100 | ")
    assert "steps/s" in line and "ETA" in line and "loss=0.5" in line
    rate = float(line.split("|")[1].split()[0])
    assert 0 < rate <= 10 / 0.05
    quiet = train_lib.Progress(100, interval=1e9, printer=lines.append)
    assert quiet.update(1) is not None  # the first line always prints
    assert quiet.update(2) is None
    assert quiet.update(100) is not None  # and so does the last


def _launch(workdir, extra=""):
    cmd = [
        sys.executable,
        "-m",
        "launch.example",
        f"--config=configs/example.py:smoke,steps=120,checkpoint_every=20{extra}",
        f"--workdir={workdir}",
    ]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finished_steps(ckpt_dir):
    if not ckpt_dir.exists():
        return []
    return sorted(int(p.name) for p in ckpt_dir.iterdir() if p.name.isdigit())


@pytest.mark.slow
def test_sigkill_then_resume_is_bitwise_equal_to_uninterrupted(tmp_path):
    straight = _launch(tmp_path / "straight")
    out, _ = straight.communicate(timeout=300)
    assert straight.returncode == 0, out

    wd = tmp_path / "killed"
    proc = _launch(wd, extra=",step_delay=0.05")
    ckpt_dir = wd / "checkpoints" / "train"
    deadline = time.time() + 240
    try:
        while not any(s >= 40 for s in _finished_steps(ckpt_dir)):
            assert proc.poll() is None, proc.communicate()[0]
            assert time.time() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert not (wd / "results.json").exists()
    assert max(_finished_steps(ckpt_dir)) < 120

    resumed = _launch(wd)
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    assert "Resumed from the checkpoint at step" in out
    a = np.load(tmp_path / "straight" / "final_params.npy")
    b = np.load(wd / "final_params.npy")
    assert a.dtype == b.dtype == np.float32
    np.testing.assert_array_equal(a, b)
