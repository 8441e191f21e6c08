"""Harness for multi-process tests: run a worker as cooperating JAX processes.

A worker is a module under ``tests/`` whose ``__main__`` block calls
:func:`worker_main` with a ``compute(mesh)`` function; the test imports the
same module to run ``compute`` in one process and calls :func:`run_workers`
to run it in several::

    # tests/core/my_worker.py
    def compute(mesh):
        return {"sum": ...}, {"rows": [0, 8]}  # arrays, extra metadata

    if __name__ == "__main__":
        multiprocess_harness.worker_main(compute, num_devices=8)

    # tests/core/my_test.py
    outputs = multiprocess_harness.run_workers("tests.core.my_worker", tmp_path)
    outputs[i].arrays["sum"], outputs[i].meta["process_index"]

Each process starts ``jax.distributed`` from the flags ``run_workers`` passes
(gloo CPU collectives, ``devices_per_process`` CPU devices), builds a 1-D mesh
over every global device, runs ``compute`` and writes ``<name>_<i>.npy`` and
``meta_<i>.json`` to ``--out_dir``. The workers run as ``python -m <module>``
from the repository root, so they import this checkout's ``jaxsuite`` and
``tests``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

Compute = Callable[[Any], tuple[Mapping[str, np.ndarray], Mapping[str, Any]]]


def worker_main(compute: Compute, *, num_devices: int, axis: str = "x") -> None:
    """The ``__main__`` of a worker: flags, ``jax.distributed``, compute, save.

    Args:
      compute: ``compute(mesh) -> (arrays, extra_meta)``; ``arrays`` are host
        numpy arrays, ``extra_meta`` JSON-ready values added to the metadata.
      num_devices: global device count the worker expects.
      axis: name of the mesh's single axis.
    """
    from absl import app, flags

    from jaxsuite.core import devices

    devices.define_distributed_flags()
    flags.DEFINE_string("out_dir", None, "Where to write the results.")
    flags.mark_flags_as_required(["out_dir"])

    def main(argv: list[str]) -> None:
        del argv
        import jax

        out_dir = Path(flags.FLAGS.out_dir)
        # Sets jax_num_cpu_devices (--local_device_count) and gloo collectives
        # before any backend exists, then calls jax.distributed.initialize.
        # The coordinator listens on the loopback address only, not on [::].
        started = devices.initialize_from_flags(
            initialization_timeout=60,
            coordinator_bind_address=flags.FLAGS.coordinator_address,
        )
        if not started:
            raise SystemExit("worker needs --coordinator_address/--num_processes")
        if jax.device_count() != num_devices:
            raise SystemExit(f"expected {num_devices} global devices: {jax.devices()}")
        mesh = devices.make_mesh((num_devices,), (axis,))
        arrays, extra = compute(mesh)
        pid = jax.process_index()
        for name, value in arrays.items():
            np.save(out_dir / f"{name}_{pid}.npy", np.asarray(value))
        meta = {
            "process_index": pid,
            "process_count": jax.process_count(),
            "device_count": jax.device_count(),
            "local_device_count": jax.local_device_count(),
            "backend": jax.default_backend(),
            "pid": os.getpid(),
            "arrays": sorted(arrays),
            **extra,
        }
        (out_dir / f"meta_{pid}.json").write_text(json.dumps(meta))
        jax.distributed.shutdown()

    app.run(main, argv=sys.argv)


@dataclasses.dataclass(frozen=True)
class ProcessOutput:
    """What one worker process wrote: its metadata and its arrays."""

    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]


def run_workers(
    module: str,
    tmp_path: str | os.PathLike,
    *,
    num_processes: int = 2,
    devices_per_process: int = 4,
    timeout: float = 120.0,
) -> list[ProcessOutput]:
    """Runs ``python -m module`` as cooperating processes; returns their outputs.

    Args:
      module: dotted name of the worker, e.g. ``"tests.core.my_worker"``.
      tmp_path: a fresh folder for the logs and the outputs.
      num_processes: how many processes.
      devices_per_process: CPU devices each process gets.
      timeout: seconds before the run counts as hung.

    Returns:
      One :class:`ProcessOutput` per process, in process order.

    Raises:
      jaxsuite.core.multihost.LocalProcessesError: a process failed or hung
        (the message holds every process's log).
    """
    from jaxsuite.core import multihost

    out_dir = Path(tmp_path) / "out"
    out_dir.mkdir(parents=True)
    multihost.run_local_processes(
        module,
        [f"--out_dir={out_dir}"],
        run_dir=Path(tmp_path) / "run",
        num_processes=num_processes,
        devices_per_process=devices_per_process,
        timeout=timeout,
        module=True,
        cwd=str(ROOT),
    )
    outputs = []
    for i in range(num_processes):
        meta = json.loads((out_dir / f"meta_{i}.json").read_text())
        arrays = {n: np.load(out_dir / f"{n}_{i}.npy") for n in meta["arrays"]}
        outputs.append(ProcessOutput(meta, arrays))
    return outputs
