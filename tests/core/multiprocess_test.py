"""Two processes on localhost compute exactly what one process computes.

Starts ``multiprocess_worker.py`` twice (``jax.distributed`` over gloo CPU
collectives, 4 CPU devices each), and compares their gathered ``psum`` and
``all_to_all`` results with the same code run here on 8 local devices and with
a numpy reference.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import jax
import numpy as np
import pytest

from jaxsuite.core import devices

WORKER = Path(__file__).with_name("multiprocess_worker.py")
NUM_PROCESSES = 2
DEVICES_PER_PROCESS = 4
TIMEOUT_S = 120.0
ATTEMPTS = 3
# What process 0 prints when its coordinator cannot bind the port.
_PORT_TAKEN = ("Failed to add port", "Address already in use")


def _load_worker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("multiprocess_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    """A port free on 127.0.0.1 now (another program may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONUNBUFFERED"] = "1"
    # The worker's own flags decide the topology; a proxy must not see gRPC.
    for name in list(env):
        if name.startswith("JAXSUITE_") or name.lower() in (
            "http_proxy",
            "https_proxy",
            "all_proxy",
            "grpc_proxy",
        ):
            del env[name]
    xla_flags = env.get("XLA_FLAGS", "").split()
    kept = [f for f in xla_flags if "xla_force_host_platform_device_count" not in f]
    env["XLA_FLAGS"] = " ".join(kept)
    return env


def _logs(run_dir: Path) -> str:
    parts = []
    for i in range(NUM_PROCESSES):
        log = run_dir / f"worker_{i}.log"
        text = log.read_text(errors="replace") if log.exists() else "(no log)"
        parts.append(
            f"--- worker {i} stdout+stderr (last 4000 chars) ---\n{text[-4000:]}"
        )
    return "\n".join(parts)


def _run_once(run_dir: Path) -> tuple[list[int | None], bool]:
    """Runs both workers; returns their exit codes and whether time ran out."""
    run_dir.mkdir(parents=True)
    address = f"127.0.0.1:{_free_port()}"
    env = _worker_env()
    procs: list[subprocess.Popen] = []
    logs = []
    try:
        for i in range(NUM_PROCESSES):
            log = open(run_dir / f"worker_{i}.log", "wb")
            logs.append(log)
            cmd = [
                sys.executable,
                str(WORKER),
                f"--coordinator_address={address}",
                f"--num_processes={NUM_PROCESSES}",
                f"--process_id={i}",
                f"--local_device_count={DEVICES_PER_PROCESS}",
                f"--out_dir={run_dir}",
            ]
            procs.append(
                subprocess.Popen(
                    cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=run_dir
                )
            )
        deadline = time.monotonic() + TIMEOUT_S
        while any(p.poll() is None for p in procs):
            # One failed worker leaves the other waiting on it: stop early.
            if any(p.returncode not in (None, 0) for p in procs):
                break
            if time.monotonic() > deadline:
                return [p.returncode for p in procs], True
            time.sleep(0.1)
        return [p.returncode for p in procs], False
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        for log in logs:
            log.close()


def _run_workers(tmp_path: Path) -> Path:
    """Runs the workers, retrying with a new port if the chosen one was taken."""
    for attempt in range(ATTEMPTS):
        run_dir = tmp_path / f"attempt_{attempt}"
        codes, timed_out = _run_once(run_dir)
        if not timed_out and codes == [0] * NUM_PROCESSES:
            return run_dir
        log0 = (run_dir / "worker_0.log").read_text(errors="replace")
        if timed_out or not any(m in log0 for m in _PORT_TAKEN):
            what = f"timed out after {TIMEOUT_S:.0f} s" if timed_out else "failed"
            pytest.fail(f"workers {what}, exit codes {codes}\n{_logs(run_dir)}")
    pytest.fail(f"no free coordinator port in {ATTEMPTS} tries\n{_logs(run_dir)}")


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path: Path) -> None:
    worker = _load_worker()
    assert jax.device_count() == worker.NUM_DEVICES

    # One process, 8 local devices; checked against numpy.
    mesh = devices.make_mesh((worker.NUM_DEVICES,), (worker.AXIS,))
    single, rows = worker.compute(mesh)
    expected = worker.reference(worker.make_inputs())
    assert rows == slice(0, 16)
    for name in worker.RESULT_NAMES:
        np.testing.assert_array_equal(single[name], expected[name], err_msg=name)

    # Two processes, 4 devices each.
    run_dir = _run_workers(tmp_path)
    metas = [
        json.loads((run_dir / f"meta_{i}.json").read_text())
        for i in range(NUM_PROCESSES)
    ]
    for i, meta in enumerate(metas):
        assert meta["process_index"] == i
        assert meta["process_count"] == NUM_PROCESSES
        assert meta["device_count"] == worker.NUM_DEVICES
        assert meta["local_device_count"] == DEVICES_PER_PROCESS
        assert meta["backend"] == "cpu"
    # The processes fed disjoint row blocks that cover the batch.
    assert [m["rows"] for m in metas] == [[0, 8], [8, 16]]
    for i in range(NUM_PROCESSES):
        for name in worker.RESULT_NAMES:
            got = np.load(run_dir / f"{name}_{i}.npy")
            assert got.dtype == single[name].dtype, name
            np.testing.assert_array_equal(got, single[name], err_msg=f"{name} {i}")
