"""One process of the 2-process CPU check run by ``multiprocess_test.py``.

Run by ``tests/multiprocess_harness.py`` (never collected by pytest)::

    JAX_PLATFORMS=cpu python -m tests.core.multiprocess_worker \
        --coordinator_address=127.0.0.1:PORT --num_processes=2 --process_id=I \
        --local_device_count=4 --out_dir=DIR

Each process starts ``jax.distributed`` with gloo CPU collectives, builds a
mesh over the 8 global devices, feeds it only its own rows of deterministic
inputs, runs a ``psum`` and two ``all_to_all`` exchanges in ``jax.shard_map``,
gathers the results to the host and writes them to ``DIR/<name>_<I>.npy``
(plus ``DIR/meta_<I>.json`` with the rows it fed). The test imports
:func:`compute` and :func:`reference` from this module to run the same code
in one process.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding

from jaxsuite.core import devices

AXIS = "x"
NUM_DEVICES = 8
RESULT_NAMES = ("psum", "all_to_all_01", "all_to_all_10")


def make_inputs() -> dict[str, np.ndarray]:
    """Deterministic global inputs; integer-valued float32, so sums are exact.

    Returns:
      ``psum``: (16, 3); ``all_to_all_01``: (64, 4); ``all_to_all_10``: (16, 16).
    """
    rng = np.random.default_rng(1234)

    def ints(*shape: int) -> np.ndarray:
        return rng.integers(-100, 100, size=shape).astype(np.float32)

    return {
        "psum": ints(2 * NUM_DEVICES, 3),
        "all_to_all_01": ints(NUM_DEVICES * NUM_DEVICES, 4),
        "all_to_all_10": ints(2 * NUM_DEVICES, 2 * NUM_DEVICES),
    }


def reference(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What :func:`compute` returns, written in numpy (device d = block d).

    Args:
      inputs: the arrays from :func:`make_inputs`.

    Returns:
      ``psum``: (16, 3); ``all_to_all_01``: (8, 32); ``all_to_all_10``: (128, 2).
    """
    n = NUM_DEVICES
    x = inputs["psum"].reshape(n, -1, 3)  # [device, rows, 3]
    psum = (x + x.sum(axis=0, keepdims=True)).reshape(-1, 3)
    # Device s sends chunk d of its rows to device d, which concatenates the
    # chunks in source order along columns.
    y = inputs["all_to_all_01"].reshape(n, n, 4)  # [src, dst, 4]
    a2a_01 = y.transpose(1, 0, 2).reshape(n, n * 4)
    # Chunks split along columns, concatenated along rows.
    z = inputs["all_to_all_10"].reshape(n, 2, n, 2)  # [src, row, dst, col]
    a2a_10 = z.transpose(2, 0, 1, 3).reshape(n * n * 2, 2)
    return {"psum": psum, "all_to_all_01": a2a_01, "all_to_all_10": a2a_10}


def compute(mesh: Mesh) -> tuple[dict[str, np.ndarray], slice]:
    """Runs the collectives on ``mesh`` (1-D, axis ``x``, 8 devices).

    Every process passes only its own rows (``process_batch_slice``) and gets
    the full results back on the host.

    Args:
      mesh: mesh over all global devices.

    Returns:
      (results keyed like :func:`reference`, the rows this process fed).
    """
    spec = jax.P(AXIS)
    sharding = NamedSharding(mesh, spec)
    inputs = make_inputs()
    rows = devices.process_batch_slice(inputs["psum"].shape[0], sharding=sharding)
    arrays = {}
    for name, value in inputs.items():
        local = value[devices.process_batch_slice(value.shape[0], sharding=sharding)]
        arrays[name] = devices.global_array_from_process_local(local, mesh, spec)

    def add_psum(x: jax.Array) -> jax.Array:
        return x + jax.lax.psum(x, AXIS)

    def a2a_01(y: jax.Array) -> jax.Array:
        return jax.lax.all_to_all(y, AXIS, split_axis=0, concat_axis=1, tiled=True)

    def a2a_10(z: jax.Array) -> jax.Array:
        return jax.lax.all_to_all(z, AXIS, split_axis=1, concat_axis=0, tiled=True)

    fns = {"psum": add_psum, "all_to_all_01": a2a_01, "all_to_all_10": a2a_10}
    results = {}
    for name, fn in fns.items():
        mapped = jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=spec, out_specs=spec))
        results[name] = devices.to_host(mapped(arrays[name]))
    return results, rows


def _compute_for_harness(mesh: Mesh) -> tuple[dict[str, np.ndarray], dict]:
    results, rows = compute(mesh)
    return results, {"rows": [rows.start, rows.stop]}


if __name__ == "__main__":
    from tests import multiprocess_harness

    multiprocess_harness.worker_main(
        _compute_for_harness, num_devices=NUM_DEVICES, axis=AXIS
    )
