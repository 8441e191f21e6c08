"""Two processes x 4 CPU devices train the same FSSDP steps as one process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from jaxsuite.core import multihost
from tests.moe import common as h
from tests.moe import multiprocess_worker as worker

WORKER = Path(__file__).with_name("multiprocess_worker.py")
TIMEOUT_S = 150.0


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    single = worker.compute(h.mesh())
    run_dir = multihost.run_local_processes(
        WORKER, ["--out_dir=."], run_dir=tmp_path, timeout=TIMEOUT_S
    )
    for i in range(2):
        for name in worker.NAMES:
            got = np.load(run_dir / f"{name}_{i}.npy")
            np.testing.assert_allclose(
                got, single[name], rtol=1e-6, atol=1e-7, err_msg=f"{name} {i}"
            )
