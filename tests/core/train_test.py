"""Tests for workdirs, checkpoints, exact resume and progress output."""

import json
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

from jaxsuite.core import finite
from jaxsuite.core import metrics as metrics_lib
from jaxsuite.core import train as train_lib
from jaxsuite.core import workdir as workdir_lib

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
    (tmp_path / "checkpoints" / "train" / "4").mkdir(parents=True)  # run state
    # Fields that only name or pace the run may change.
    same = ml_collections.ConfigDict({"lr": 0.1, "preset": "smoke,x", "log_every": 9})
    assert train_lib.prepare_workdir(str(tmp_path), same) is True
    other = ml_collections.ConfigDict({"lr": 0.2, "preset": "smoke", "log_every": 5})
    with pytest.raises(train_lib.ConfigMismatchError, match="lr: workdir has 0.1"):
        train_lib.prepare_workdir(str(tmp_path), other)


def test_workdir_with_nothing_computed_takes_a_corrected_config(tmp_path):
    # A run that failed before computing anything leaves config.json (and an
    # hparams row); rerunning with a corrected config must not be refused.
    bad = ml_collections.ConfigDict({"steps": 10, "lr": 1e6})
    good = ml_collections.ConfigDict({"steps": 10, "lr": 1e-3})
    wd = str(tmp_path)
    train_lib.prepare_workdir(wd, bad)
    with metrics_lib.MetricWriter(wd) as w:
        w.write_hparams(bad)
    (tmp_path / "checkpoints" / "train").mkdir(parents=True)  # made, never saved
    assert train_lib.prepare_workdir(wd, good) is False
    assert json.loads((tmp_path / "config.json").read_text())["lr"] == 1e-3
    assert not (tmp_path / "metrics.jsonl").exists()  # the bad hparams row is gone
    # Once something was computed, the config is fixed.
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(train_lib.ConfigMismatchError):
        train_lib.prepare_workdir(wd, bad)


def test_workdir_that_is_a_file_is_named(tmp_path):
    path = tmp_path / "oops"
    path.write_text("x")
    cfg = ml_collections.ConfigDict({"lr": 0.1})
    with pytest.raises(train_lib.WorkdirError, match="oops is a file, not a folder"):
        train_lib.prepare_workdir(str(path), cfg)


def _nan_at(bad_step, where="loss"):
    def step_fn(state, step):
        state, scalars = _step_fn(state, step)
        if step >= bad_step and where == "loss":
            scalars = {"loss": jnp.float32(np.nan), **scalars}
        if where == "state":
            if step >= bad_step:
                state = dict(state, w=state["w"].at[2].set(jnp.inf))
            scalars = {"count": state["count"]}  # nothing a float can flag
        return state, scalars

    return step_fn


def test_nonfinite_loss_stops_before_it_is_checkpointed(tmp_path):
    wd = str(tmp_path)
    seen = []
    with pytest.raises(train_lib.NonFiniteError) as info:
        train_lib.train_loop(
            _init(),
            _nan_at(7),
            num_steps=12,
            workdir=wd,
            checkpoint_every=3,
            hooks=(lambda step, state: seen.append(step),),
        )
    msg = str(info.value)
    assert "loss is nan at step 7" in msg and "'train'" in msg
    assert "last good checkpoint, step 6" in msg
    assert info.value.step == 7 and info.value.quantity == "loss"
    assert seen == list(range(1, 7))  # no hook saw the bad state
    ckpt = train_lib.Checkpointer(os.path.join(wd, "checkpoints", "train"), every=3)
    assert ckpt.latest_step() == 6
    ckpt.close()


def test_nonfinite_state_is_not_checkpointed(tmp_path):
    # The scalars stay finite; the state goes bad at step 5 and is caught when
    # the checkpoint of step 6 is due (the step-3 checkpoint stays the latest).
    wd = str(tmp_path)
    with pytest.raises(train_lib.NonFiniteError, match=r"state\['w'\] is not finite"):
        train_lib.train_loop(
            _init(), _nan_at(5, "state"), num_steps=12, workdir=wd, checkpoint_every=3
        )
    ckpt = train_lib.Checkpointer(os.path.join(wd, "checkpoints", "train"), every=3)
    assert ckpt.latest_step() == 3
    ckpt.close()


def test_finite_watch_names_the_first_bad_step_without_syncing():
    watch = finite.FiniteWatch("distill")
    for step in range(1, 6):
        loss = np.float32(np.inf) if step >= 4 else np.float32(step)
        norm = np.float32(np.nan) if step == 5 else np.float32(1.0)
        watch.update(step, {"loss": loss, "grad_norm": norm, "count": step})
    with pytest.raises(finite.NonFiniteError, match="loss was not finite at step 4"):
        watch.check()
    finite.FiniteWatch().check()  # nothing seen: nothing to report


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


def _cut_files(step_dir):
    """Truncates every file of a checkpoint's state to half its size."""
    cut = 0
    for path in (pathlib.Path(step_dir) / "default").rglob("*"):
        if path.is_file():
            os.truncate(path, path.stat().st_size // 2)
            cut += 1
    assert cut


def test_corrupt_latest_checkpoint_falls_back_to_the_newest_intact(tmp_path, caplog):
    straight = train_lib.train_loop(
        _init(), _step_fn, num_steps=16, workdir=str(tmp_path / "a"), checkpoint_every=4
    )
    wd = str(tmp_path / "b")
    train_lib.train_loop(
        _init(), _step_fn, num_steps=12, workdir=wd, checkpoint_every=4
    )
    ckpt_dir = os.path.join(wd, "checkpoints", "train")
    assert sorted(os.listdir(ckpt_dir)) == ["12", "8"]
    _cut_files(os.path.join(ckpt_dir, "12"))
    seen = []
    with caplog.at_level("WARNING"):
        resumed = train_lib.train_loop(
            _init(),
            _step_fn,
            num_steps=16,
            workdir=wd,
            checkpoint_every=4,
            hooks=(lambda step, state: seen.append(step),),
        )
    assert seen == list(range(9, 17))  # resumed from step 8
    assert "checkpoint at step 12" in caplog.text and "cannot be read" in caplog.text
    assert "older checkpoint at step 8" in caplog.text
    np.testing.assert_array_equal(np.asarray(resumed["w"]), np.asarray(straight["w"]))
    (aside,) = os.listdir(ckpt_dir + ".corrupt")
    assert aside.startswith("12-")


def test_no_readable_checkpoint_is_a_clear_error(tmp_path):
    wd = str(tmp_path)
    train_lib.train_loop(_init(), _step_fn, num_steps=8, workdir=wd, checkpoint_every=4)
    ckpt_dir = os.path.join(wd, "checkpoints", "train")
    for step in os.listdir(ckpt_dir):
        _cut_files(os.path.join(ckpt_dir, step))
    with pytest.raises(train_lib.CheckpointError, match="No checkpoint in .* can be"):
        train_lib.train_loop(
            _init(), _step_fn, num_steps=12, workdir=wd, checkpoint_every=4
        )
    assert sorted(os.listdir(ckpt_dir)) == ["4", "8"]  # nothing moved


def test_workdir_lock_is_reentrant_here_and_names_the_holder_elsewhere(tmp_path):
    wd = str(tmp_path / "run")
    cfg = ml_collections.ConfigDict({"lr": 0.1})
    train_lib.prepare_workdir(wd, cfg)
    train_lib.prepare_workdir(wd, cfg)  # the same process may come back
    # Another process (the workdir module alone, to start fast) is refused.
    code = (
        "import sys\n"
        "from jaxsuite.core import workdir\n"
        "try:\n"
        f"    workdir.lock({wd!r})\n"
        "except workdir.WorkdirBusyError as e:\n"
        "    print(e); sys.exit(3)\n"
    )
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    other = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True
    )
    assert other.returncode == 3, other.stderr
    assert f"in use by another run (pid {os.getpid()} on" in other.stdout
    workdir_lib.unlock(wd)
    free = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True
    )
    assert free.returncode == 0, free.stdout + free.stderr


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
    # The rows logged before the kill survived, none is repeated, and the
    # hparams row is written once: the log equals the uninterrupted run's.
    assert metrics_lib.read_metrics(wd) == metrics_lib.read_metrics(
        tmp_path / "straight"
    )
    with open(wd / "metrics.jsonl") as f:
        assert sum('"hparams"' in line for line in f) == 1
    a = np.load(tmp_path / "straight" / "final_params.npy")
    b = np.load(wd / "final_params.npy")
    assert a.dtype == b.dtype == np.float32
    np.testing.assert_array_equal(a, b)


def test_writing_results_releases_the_workdir(tmp_path):
    wd = str(tmp_path)
    cfg = ml_collections.ConfigDict({"lr": 0.1})
    train_lib.prepare_workdir(wd, cfg)
    assert workdir_lib.is_locked_here(wd)
    metrics_lib.write_results(
        wd, paper="x", config=cfg, metrics={}, claim="c", verdict="v", wall_seconds=0
    )
    assert not workdir_lib.is_locked_here(wd)
