"""Two processes on localhost compute exactly what one process computes.

Starts ``multiprocess_worker.py`` twice (``jax.distributed`` over gloo CPU
collectives, 4 CPU devices each), and compares their gathered ``psum`` and
``all_to_all`` results with the same code run here on 8 local devices and with
a numpy reference.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import jax
import numpy as np
import pytest

from jaxsuite.core import devices, multihost

WORKER = Path(__file__).with_name("multiprocess_worker.py")
NUM_PROCESSES = 2
DEVICES_PER_PROCESS = 4


def _load_worker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("multiprocess_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    run_dir = multihost.run_local_processes(
        WORKER,
        ["--out_dir=."],
        run_dir=tmp_path,
        num_processes=NUM_PROCESSES,
        devices_per_process=DEVICES_PER_PROCESS,
    )
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
