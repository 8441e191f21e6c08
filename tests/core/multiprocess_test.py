"""Two processes on localhost compute exactly what one process computes.

Starts ``multiprocess_worker.py`` twice through ``tests/multiprocess_harness.py``
(``jax.distributed`` over gloo CPU collectives, 4 CPU devices each), and
compares their gathered ``psum`` and ``all_to_all`` results with the same code
run here on 8 local devices and with a numpy reference.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest

from jaxsuite.core import devices
from tests import multiprocess_harness
from tests.core import multiprocess_worker as worker

NUM_PROCESSES = 2
DEVICES_PER_PROCESS = 4


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path: Path) -> None:
    assert jax.device_count() == worker.NUM_DEVICES

    # One process, 8 local devices; checked against numpy.
    mesh = devices.make_mesh((worker.NUM_DEVICES,), (worker.AXIS,))
    single, rows = worker.compute(mesh)
    expected = worker.reference(worker.make_inputs())
    assert rows == slice(0, 16)
    for name in worker.RESULT_NAMES:
        np.testing.assert_array_equal(single[name], expected[name], err_msg=name)

    # Two processes, 4 devices each.
    outputs = multiprocess_harness.run_workers(
        "tests.core.multiprocess_worker",
        tmp_path,
        num_processes=NUM_PROCESSES,
        devices_per_process=DEVICES_PER_PROCESS,
    )
    metas = [out.meta for out in outputs]
    for i, meta in enumerate(metas):
        assert meta["process_index"] == i
        assert meta["process_count"] == NUM_PROCESSES
        assert meta["device_count"] == worker.NUM_DEVICES
        assert meta["local_device_count"] == DEVICES_PER_PROCESS
        assert meta["backend"] == "cpu"
    # The processes fed disjoint row blocks that cover the batch.
    assert [m["rows"] for m in metas] == [[0, 8], [8, 16]]
    for i, out in enumerate(outputs):
        assert sorted(out.arrays) == sorted(worker.RESULT_NAMES)
        for name in worker.RESULT_NAMES:
            got = out.arrays[name]
            assert got.dtype == single[name].dtype, name
            np.testing.assert_array_equal(got, single[name], err_msg=f"{name} {i}")
