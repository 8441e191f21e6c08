"""The shared cache across two processes computes what one process computes.

Starts ``multiprocess_worker.py`` twice (``jax.distributed`` over gloo, 4 CPU
devices each): the cache's ``all_to_all`` then crosses processes. Features
and hit/byte counters must equal, bitwise, those of the same code on 8 local
devices (and the features the stored rows); the trained parameters agree to
float rounding, the gradient sum running in another order across processes.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from jaxsuite.core import devices, multihost

WORKER = Path(__file__).with_name("multiprocess_worker.py")
TIMEOUT_S = 180.0


def _load_worker():
    spec = importlib.util.spec_from_file_location("gnn_mp_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_shared_cache_across_two_processes(tmp_path: Path) -> None:
    worker = _load_worker()
    mesh = devices.make_mesh((worker.NUM_DEVICES,), (worker.AXIS,))
    single = worker.compute(mesh, str(tmp_path))
    np.testing.assert_array_equal(single["features"], single["expected"])
    names = worker.fetcher_lib.COUNTERS
    counts = dict(zip(names, single["counts"].sum(0)))
    assert counts["remote"] > 0 and counts["victim"] > 0 and counts["mismatch"] == 0

    run_dir = multihost.run_local_processes(
        WORKER, ["--out_dir=."], run_dir=tmp_path / "two", timeout=TIMEOUT_S
    )
    for i in range(2):
        got = np.load(run_dir / f"result_{i}.npz")
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
