"""Several ``jax.distributed`` processes on one machine, standing in for hosts.

``run_local_processes`` starts N copies of a script on localhost, each told
its ``--coordinator_address``, ``--num_processes``, ``--process_id`` and
``--local_device_count`` (the flags of ``jaxsuite.core.devices``), waits for
them, and raises with every process's log when one fails, so multi-host code
can be tested on a laptop with gloo CPU collectives. A coordinator port taken
between choosing it and binding it makes the first process crash; the run is
then retried on a new port.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

# What process 0 prints when its coordinator cannot bind the port.
_PORT_TAKEN = ("Failed to add port", "Address already in use")
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "grpc_proxy")


class LocalProcessesError(RuntimeError):
    """A local multi-process run failed or timed out; the message holds the logs."""


def free_port() -> int:
    """A port free on 127.0.0.1 now (another program may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_env() -> dict[str, str]:
    """This environment, made fit for CPU workers whose flags set the topology."""
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONUNBUFFERED"] = "1"
    for name in list(env):
        if name.startswith("JAXSUITE_") or name.lower() in _PROXY_VARS:
            del env[name]
    flags = env.get("XLA_FLAGS", "").split()
    kept = [f for f in flags if "xla_force_host_platform_device_count" not in f]
    env["XLA_FLAGS"] = " ".join(kept)
    return env


def _logs(run_dir: Path, num_processes: int, chars: int = 4000) -> str:
    parts = []
    for i in range(num_processes):
        log = run_dir / f"worker_{i}.log"
        text = log.read_text(errors="replace") if log.exists() else "(no log)"
        parts.append(f"--- process {i} (last {chars} chars) ---\n{text[-chars:]}")
    return "\n".join(parts)


def _run_once(
    cmd: Sequence[str],
    run_dir: Path,
    num_processes: int,
    devices_per_process: int,
    timeout: float,
    cwd: str | None,
) -> tuple[list[int | None], bool]:
    run_dir.mkdir(parents=True)
    address = f"127.0.0.1:{free_port()}"
    env = worker_env()
    procs: list[subprocess.Popen] = []
    logs = []
    try:
        for i in range(num_processes):
            log = open(run_dir / f"worker_{i}.log", "wb")  # noqa: SIM115
            logs.append(log)
            full = [
                *cmd,
                f"--coordinator_address={address}",
                f"--num_processes={num_processes}",
                f"--process_id={i}",
                f"--local_device_count={devices_per_process}",
            ]
            procs.append(
                subprocess.Popen(
                    full, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=cwd
                )
            )
        deadline = time.monotonic() + timeout
        while any(p.poll() is None for p in procs):
            # One failed process leaves the others waiting on it: stop early.
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


def run_local_processes(
    script: str | os.PathLike,
    args: Sequence[str] = (),
    *,
    run_dir: str | os.PathLike,
    num_processes: int = 2,
    devices_per_process: int = 4,
    timeout: float = 120.0,
    attempts: int = 3,
    module: bool = False,
    cwd: str | None = None,
) -> Path:
    """Runs ``script`` as ``num_processes`` cooperating JAX processes on localhost.

    Args:
      script: a Python file, or a module name when ``module`` is True.
      args: extra command-line arguments for every process.
      run_dir: a new folder per attempt is made in it, holding
        ``worker_<i>.log``; it is also where the processes start, unless
        ``cwd`` is given.
      num_processes: how many processes.
      devices_per_process: CPU devices each process gets.
      timeout: seconds before the run counts as hung.
      attempts: tries when the coordinator's port turns out to be taken.
      module: run ``python -m script`` instead of ``python script``.
      cwd: working directory of the processes.

    Returns:
      The attempt's folder (with the logs and whatever the processes wrote
      relative to it).

    Raises:
      LocalProcessesError: a process failed or the run timed out.
    """
    cmd = [sys.executable, *(["-m", str(script)] if module else [str(script)])]
    cmd += list(args)
    root = Path(run_dir)
    for attempt in range(attempts):
        attempt_dir = root / f"attempt_{attempt}"
        codes, timed_out = _run_once(
            cmd,
            attempt_dir,
            num_processes,
            devices_per_process,
            timeout,
            cwd or str(attempt_dir),
        )
        if not timed_out and codes == [0] * num_processes:
            return attempt_dir
        log0 = (attempt_dir / "worker_0.log").read_text(errors="replace")
        if timed_out or not any(m in log0 for m in _PORT_TAKEN):
            what = f"timed out after {timeout:.0f} s" if timed_out else "failed"
            raise LocalProcessesError(
                f"processes {what}, exit codes {codes}\n"
                + _logs(attempt_dir, num_processes)
            )
    raise LocalProcessesError(
        f"no free coordinator port in {attempts} tries\n"
        + _logs(attempt_dir, num_processes)
    )
