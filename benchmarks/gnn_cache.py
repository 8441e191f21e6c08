"""Per-policy epoch time of the LSM-GNN feature path: measured here and modelled.

For every policy of the config, runs the first ``--epochs`` epochs of the
experiment's batches and times, per step, the feature fetch (host planning,
storage reads, device lookup and ``all_to_all`` exchange) and the
data-parallel GraphSAGE step separately; the last epoch is reported (warm
caches, compiled functions). The modelled epoch time uses the config's I/O
cost model. Writes ``--out`` (JSON) and prints a markdown table::

    python benchmarks/gnn_cache.py --config=configs/lsmgnn.py:smoke \
        --workdir=/tmp/gnn_bench --out=/tmp/gnn_bench/gnn_cache.json
"""

from __future__ import annotations

import json
import os
import sys
import time

from absl import app, flags
from ml_collections import config_flags

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import optax  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", "configs/lsmgnn.py:smoke")
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/gnn_cache_bench", "Data directory.")
_OUT = flags.DEFINE_string("out", None, "JSON output (default WORKDIR/gnn_cache.json).")
_EPOCHS = flags.DEFINE_integer("epochs", 2, "Epochs per policy; the last is timed.")


def main(argv):
    del argv
    from jaxsuite.core import devices
    from jaxsuite.core import metrics as metrics_lib
    from jaxsuite.gnn import experiment, fetcher, model, storage

    config = _CONFIG.value
    mesh = devices.make_mesh(
        (config.devices,), ("dev",), devices=jax.devices()[: config.devices]
    )
    with config.unlocked():
        config.train.epochs = _EPOCHS.value
    data = experiment.Data(config, _WORKDIR.value)
    io = storage.IOModel(
        page_bytes=config.io.page_bytes,
        iops=config.io.iops,
        storage_bandwidth=config.io.storage_bandwidth,
        link_bandwidth=config.io.link_bandwidth,
        host_bandwidth=config.io.host_bandwidth,
    )
    tx = optax.adam(config.train.learning_rate)
    step_fn = model.make_train_step(mesh, "dev", tx)
    sharding = jax.sharding.NamedSharding(mesh, jax.P("dev"))
    t = config.train
    dims = (config.graph.feature_dim, *([t.hidden] * (len(t.fanouts) - 1)))
    dims = (*dims, config.graph.num_classes)
    spe = data.sampler.steps_per_epoch
    rows = []
    for name in config.policies:
        fcfg = experiment.fetch_config(name, config, len(data.order))
        reuse = None if fcfg.mode == "none" else data.reuse(fcfg.mode == "shared")
        static = data.static[experiment.POLICY_TABLE[name].get("static", "pagerank")]
        f = fetcher.FeatureFetcher(
            fcfg, mesh, "dev", data.store, static, reuse, data.sampler.input_len
        )
        state = f.init_state()
        params = model.init_sage(jax.random.PRNGKey(config.seed), dims)
        opt = tx.init(params)
        fetch_s = train_s = modelled = 0.0
        for g, (epoch, s) in enumerate(data.order):
            batch = data.sampler.batch(epoch, s)
            t0 = time.perf_counter()
            state, feats, counts = f.step(state, g, batch)
            jax.block_until_ready(feats)
            t1 = time.perf_counter()
            args = jax.device_put(
                (batch.positions, batch.masks, batch.labels), sharding
            )
            params, opt, _, _ = step_fn(params, opt, feats, *args)
            jax.block_until_ready(params)
            t2 = time.perf_counter()
            if epoch == len(data.order) // spe - 1:
                fetch_s += t1 - t0
                train_s += t2 - t1
                modelled += experiment.modelled_step_seconds(
                    counts, io, config.io.compute_seconds
                )
        rows.append(
            {
                "policy": name,
                "fetch_s_per_epoch": fetch_s,
                "train_s_per_epoch": train_s,
                "measured_epoch_s": fetch_s + train_s,
                "modelled_epoch_s": modelled,
            }
        )
        print(f"{name}: {rows[-1]}", file=sys.stderr)
    out = _OUT.value or os.path.join(_WORKDIR.value, "gnn_cache.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as fh:
        json.dump(
            {
                "config": config.preset,
                "steps_per_epoch": spe,
                "env": metrics_lib.env_info(),
                "rows": rows,
            },
            fh,
            indent=2,
        )
    print(
        "| policy | fetch s/epoch | train s/epoch | measured s/epoch "
        "| modelled s/epoch |"
    )
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['policy']} | {r['fetch_s_per_epoch']:.2f} | "
            f"{r['train_s_per_epoch']:.2f} | {r['measured_epoch_s']:.2f} | "
            f"{r['modelled_epoch_s']:.3f} |"
        )


if __name__ == "__main__":
    jax.config.update("jax_num_cpu_devices", 8)
    app.run(main)
