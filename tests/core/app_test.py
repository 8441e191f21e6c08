"""The launcher's exit on faults: status 1 and the reason, no traceback."""

import os
import pathlib
import subprocess
import sys

from jaxsuite.core import workdir as workdir_lib

ROOT = pathlib.Path(__file__).parents[2]

# A launcher whose loss turns NaN at step 3 (checkpoints every 2 steps).
DIVERGING = """
import jax.numpy as jnp
from jaxsuite.core import app, train

def run(config, workdir):
    train.prepare_workdir(workdir, config)
    def step(state, s):
        loss = jnp.float32(float("nan")) if s == 3 else jnp.float32(1.0 / s)
        return {"w": state["w"] + 1.0}, {"loss": loss}
    train.train_loop(
        {"w": jnp.zeros(2)}, step, num_steps=5, workdir=workdir, checkpoint_every=2
    )

app.run(run)
"""


def _launch(script, workdir):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    return subprocess.run(
        [
            sys.executable,
            str(script),
            "--config=configs/example.py:smoke",
            f"--workdir={workdir}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_launcher_exits_nonzero_naming_the_fault(tmp_path):
    script = tmp_path / "diverging.py"
    script.write_text(DIVERGING)
    wd = tmp_path / "run"
    proc = _launch(script, wd)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert last.startswith(
        "Error: Training loop 'train' stopped: loss is nan at step 3"
    )
    assert "last good checkpoint, step 2" in last
    assert "Traceback" not in proc.stderr
    assert sorted(os.listdir(wd / "checkpoints" / "train")) == ["1", "2"]

    # A second launcher on a workdir this process holds is refused at once.
    busy = tmp_path / "busy"
    workdir_lib.lock(str(busy))
    try:
        proc = _launch(script, busy)
    finally:
        workdir_lib.unlock(str(busy))
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1
    assert f"is in use by another run (pid {os.getpid()} on" in last
    assert not (busy / "checkpoints").exists()
