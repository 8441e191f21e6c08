"""Two processes x 4 CPU devices train the same FSSDP steps as one process."""

from __future__ import annotations

import numpy as np
import pytest

from tests import multiprocess_harness
from tests.moe import common as h
from tests.moe import multiprocess_worker as worker

TIMEOUT_S = 150.0


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    single, _ = worker.compute(h.mesh())
    outputs = multiprocess_harness.run_workers(
        "tests.moe.multiprocess_worker", tmp_path, timeout=TIMEOUT_S
    )
    for i, out in enumerate(outputs):
        for name in worker.NAMES:
            got = out.arrays[name]
            np.testing.assert_allclose(
                got, single[name], rtol=1e-6, atol=1e-7, err_msg=f"{name} {i}"
            )
