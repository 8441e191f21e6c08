"""The shared cache across two processes computes what one process computes.

Starts ``multiprocess_worker.py`` twice through ``tests/multiprocess_harness.py``
(``jax.distributed`` over gloo, 4 CPU devices each): the cache's
``all_to_all`` then crosses processes. Features and hit/byte counters must
equal, bitwise, those of the same code on 8 local devices (and the features
the stored rows); the trained parameters agree to float rounding, the gradient
sum running in another order across processes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from jaxsuite.core import devices
from tests import multiprocess_harness
from tests.gnn import multiprocess_worker as worker

TIMEOUT_S = 180.0


@pytest.mark.slow
def test_shared_cache_across_two_processes(tmp_path: Path) -> None:
    mesh = devices.make_mesh((worker.NUM_DEVICES,), (worker.AXIS,))
    single, _ = worker.compute(mesh)
    np.testing.assert_array_equal(single["features"], single["expected"])
    names = worker.fetcher_lib.COUNTERS
    counts = dict(zip(names, single["counts"].sum(0)))
    assert counts["remote"] > 0 and counts["victim"] > 0 and counts["mismatch"] == 0

    outputs = multiprocess_harness.run_workers(
        "tests.gnn.multiprocess_worker", tmp_path, timeout=TIMEOUT_S
    )
    for i, out in enumerate(outputs):
        got = out.arrays
        np.testing.assert_array_equal(got["features"], single["features"])
        # Every counter but the measured stage times.
        same = [j for j, k in enumerate(names) if k not in worker.fetcher_lib.STAGES]
        np.testing.assert_array_equal(
            got["counts"][:, same], single["counts"][:, same], err_msg=f"counts {i}"
        )
        # The gradient all-reduce sums in another order across processes
        # (gloo) than within one, so parameters agree to rounding only.
        np.testing.assert_allclose(
            got["params"], single["params"], rtol=1e-5, atol=1e-7
        )
