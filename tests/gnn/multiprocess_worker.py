"""One process of the 2-process shared-cache check run by ``multiprocess_test.py``.

Run by ``tests/multiprocess_harness.py`` (never collected by pytest)::

    JAX_PLATFORMS=cpu python -m tests.gnn.multiprocess_worker \
        --coordinator_address=127.0.0.1:PORT --num_processes=2 --process_id=I \
        --local_device_count=4 --out_dir=DIR

Each process joins ``jax.distributed`` (gloo), builds the same small graph,
runs the shared cache (hybrid eviction, victim buffer) over the 8 global
devices with data-parallel GraphSAGE training, and writes the gathered
features and final parameters. The test imports :func:`compute` to run the
same code in one process with 8 devices.
"""

from __future__ import annotations

import tempfile

import jax
import numpy as np
import optax

from jaxsuite.core import devices
from jaxsuite.gnn import cache as cache_lib
from jaxsuite.gnn import fetcher as fetcher_lib
from jaxsuite.gnn import graph as graph_lib
from jaxsuite.gnn import model, storage
from jaxsuite.gnn import sampler as sampler_lib

NUM_DEVICES = 8
AXIS = "dev"


def compute(mesh) -> tuple[dict[str, np.ndarray], dict]:
    """Runs 2 epochs of shared-cache training; returns host copies of the results.

    Returns:
      ``(arrays, {})``: ``features`` [steps, 8, U, D], ``params`` (flattened),
      ``counts`` [steps, len(COUNTERS)], and ``expected`` [steps, 8, U, D]: the
      stored rows.
    """
    data_dir = tempfile.mkdtemp(prefix="gnn_multiprocess_")
    g = graph_lib.power_law_graph(4, 1200, avg_degree=8, num_classes=4)
    x = graph_lib.class_features(5, g.labels, 8, 4, noise=1.0)
    path = storage.write_features(f"{data_dir}/x_{jax.process_index()}.f32", x)
    store = storage.FeatureStore(path, g.num_nodes, 8, page_bytes=128)
    train, _, _ = graph_lib.split_nodes(0, g.num_nodes)
    s = sampler_lib.NodeSampler(g, train[:256], (3, 2), 8, NUM_DEVICES, seed=1)
    batches = [s.batch(*es) for es in s.schedule(2)]
    inputs = [(b.inputs, b.num_inputs) for b in batches]
    cfg = fetcher_lib.FetchConfig(
        "shared",
        cache_lib.PolicySpec("hybrid", window=3, protect=2),
        num_sets=4,
        ways=4,
        victim=True,
        ring_slots=4,
        ring_depth=16,
    )
    static = graph_lib.quantize_u8(graph_lib.reverse_pagerank(g))
    reuse = fetcher_lib.ReuseSchedule(inputs, True)
    f = fetcher_lib.FeatureFetcher(cfg, mesh, AXIS, store, static, reuse, s.input_len)
    tx = optax.adam(1e-2)
    step = model.make_train_step(mesh, AXIS, tx)
    sharding = jax.sharding.NamedSharding(mesh, jax.P(AXIS))
    params = model.init_sage(jax.random.PRNGKey(0), (8, 8, 4))
    replicated = jax.sharding.NamedSharding(mesh, jax.P())
    params, opt = fetcher_lib.put_global((params, tx.init(params)), replicated)
    state = f.init_state()
    feats_all, counts_all, expected = [], [], []
    for t, b in enumerate(batches):
        state, feats, counts = f.step(state, t, b)
        args = fetcher_lib.put_global((b.positions, b.masks, b.labels), sharding)
        params, opt, _, _ = step(params, opt, feats, *args)
        feats_all.append(devices.to_host(feats))
        counts_all.append([counts[k] for k in fetcher_lib.COUNTERS])
        rows = np.where(b.inputs[..., None] >= 0, x[np.maximum(b.inputs, 0)], 0)
        expected.append(rows)
    flat = np.concatenate(
        [np.ravel(p) for p in jax.tree.leaves(devices.to_host(params))]
    )
    arrays = {
        "features": np.stack(feats_all),
        "params": flat,
        "counts": np.asarray(counts_all),
        "expected": np.stack(expected),
    }
    return arrays, {}


if __name__ == "__main__":
    from tests import multiprocess_harness

    multiprocess_harness.worker_main(compute, num_devices=NUM_DEVICES, axis=AXIS)
