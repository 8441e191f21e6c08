"""Per-policy epoch time of the LSM-GNN feature path: measured here and modelled.

For every policy of the config, runs the first ``--epochs`` epochs of the
experiment's batches through the library's per-policy set-up
(``experiment.make_fetcher``) and times, per step, the feature fetch (split
into the fetcher's stages: victim prefetch, host planning, storage reads,
device lookup with the ``all_to_all`` exchange, victim ring) and the
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


def _time_policy(name, run, data, mesh, tx, step_fn, sharding, last):
    """One policy's feature fetch and training steps over every epoch of
    ``data.order``; the row of epoch ``last``: fetch seconds (and by stage),
    train seconds, their sum and the modelled epoch seconds."""
    from jaxsuite.gnn import experiment, fetcher, model, training

    _, f = experiment.make_fetcher(name, run, data, mesh)
    state = f.init_state()
    params = model.init_sage(jax.random.PRNGKey(run.seed), experiment.model_dims(run))
    opt = tx.init(params)
    stages = dict.fromkeys(fetcher.STAGES, 0.0)
    fetch_s = train_s = modelled = 0.0
    for g, (epoch, s) in enumerate(data.order):
        batch = data.sampler.batch(epoch, s)
        t0 = time.perf_counter()
        state, feats, counts = f.step(state, g, batch)
        jax.block_until_ready(feats)
        t1 = time.perf_counter()
        args = fetcher.put_global(
            (batch.positions, batch.masks, batch.labels), sharding
        )
        params, opt, _, _ = step_fn(params, opt, feats, *args)
        jax.block_until_ready(params)
        t2 = time.perf_counter()
        if epoch == last:
            fetch_s += t1 - t0
            train_s += t2 - t1
            modelled += training.modelled_step_seconds(
                counts, run.io, run.compute_seconds
            )
            for k in stages:
                stages[k] += counts[k]
    return {
        "policy": name,
        "fetch_s_per_epoch": fetch_s,
        "fetch_stages_s_per_epoch": stages,
        "train_s_per_epoch": train_s,
        "measured_epoch_s": fetch_s + train_s,
        "modelled_epoch_s": modelled,
    }


def _print_table(rows):
    """The rows as a markdown table on stdout."""
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


def main(argv):
    del argv
    from jaxsuite.core import devices
    from jaxsuite.core import metrics as metrics_lib
    from jaxsuite.gnn import experiment, model, settings

    config = _CONFIG.value
    mesh = devices.make_mesh(
        (config.devices,), (experiment.AXIS,), devices=jax.devices()[: config.devices]
    )
    with config.unlocked():
        config.train.epochs = _EPOCHS.value
    run = settings.from_config(config)
    data = experiment.Data(run, _WORKDIR.value)
    tx = optax.adam(run.train.learning_rate)
    step_fn = model.make_train_step(mesh, experiment.AXIS, tx)
    sharding = jax.sharding.NamedSharding(mesh, jax.P(experiment.AXIS))
    spe = data.sampler.steps_per_epoch
    last = len(data.order) // spe - 1
    rows = []
    for name in run.policies:
        if experiment.POLICY_TABLE[name]["mode"] == "bound":
            continue  # a trace bound: nothing to time
        rows.append(_time_policy(name, run, data, mesh, tx, step_fn, sharding, last))
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
    _print_table(rows)


if __name__ == "__main__":
    jax.config.update("jax_num_cpu_devices", 8)
    app.run(main)
