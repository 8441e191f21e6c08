"""The S3T experiment: pretrain, train S3T (several B) and SISA, delete, compare.

1. **Pretrain** the NNX backbone on digits 0-4 (resumable train loop).
2. **Train** on digits 5-9, split into ``m`` shards x ``L`` slices: S3T with
   ``B`` sequences per shard for each ``B`` in ``budgets`` (stage ``t`` tunes
   layer group ``t-1`` and the head), SISA (one order, every group tuned at
   every slice), and optionally one model on all the data as a reference.
   Shards train in parallel across devices; every stage is an Orbax
   checkpoint and a run that is cut off resumes from its stored stages.
3. **Delete** the same random stream of samples from every run: S3T by
   truncation through the durable ledger (no training), SISA by retraining
   from the hit slice on, timed. Test accuracy of the served ensemble is
   recorded after every deletion; the phase resumes where it stopped.
4. **Theory**: a Monte Carlo of the truncation rule against the closed form
   ``m L H_{m B'}``, and sequence selection under a skewed deletion prior.

Writes ``results.json``, ``metrics.jsonl`` and two figures into the workdir.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import numpy as np
from absl import logging
from flax import nnx

from jaxsuite.core import atomic
from jaxsuite.core import metrics as metrics_lib
from jaxsuite.core import train as train_lib
from jaxsuite.unlearn import data as data_lib
from jaxsuite.unlearn import deletion, ledger, report, runs, sisa, training
from jaxsuite.unlearn import model as model_lib
from jaxsuite.unlearn import sequences as seq_lib

D_IN, NUM_CLASSES = 64, 5


def _log(line: str) -> None:
    logging.info("%s", line)


def make_adapters(config: Any) -> model_lib.Adapters:
    """The adapters a layer group tunes, by ``config.model.adapters``."""
    m = config.model
    if m.adapters == "lora":
        return model_lib.LoRAAdapters(
            m.lora_rank, m.lora_alpha or None, m.lora_dropout, use_rslora=True
        )
    if m.adapters == "dense":
        return model_lib.BlockDense()
    raise ValueError(f"unknown adapters {m.adapters!r} (lora, dense)")


def settings_for(config: Any, method: str) -> runs.TrainSettings:
    t = config.train
    return runs.TrainSettings(
        method, t.epochs, t.batch_size, t.learning_rate, config.seed
    )


def pretrain_backbone(
    config: Any, split: data_lib.DigitsSplit, workdir: str, writer: Any
) -> tuple[dict[str, Any], float]:
    """Pretrains (or resumes) the backbone; returns its parameters and accuracy."""
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 2)
    model = model_lib.Backbone(
        D_IN, config.model.width, config.model.depth, NUM_CLASSES, rngs=nnx.Rngs(key)
    )

    def loop(state, step_fn, steps):
        return train_lib.train_loop(
            state,
            step_fn,
            num_steps=steps,
            workdir=workdir,
            checkpoint_every=config.checkpoint_every,
            writer=writer,
            log_every=config.log_every,
            name="pretrain",
        )

    pure = model_lib.pretrain(
        model,
        split.x_pre,
        split.y_pre,
        key=jax.random.fold_in(key, 1),
        steps=config.pretrain.steps,
        batch_size=config.pretrain.batch_size,
        learning_rate=config.pretrain.learning_rate,
        loop=loop,
    )
    model_lib.load_params(model, pure)
    return pure, model_lib.accuracy(model(split.x_pre), split.y_pre)


class Evaluator:
    """Test accuracy of a run's served ensemble, with per-node logits cached."""

    def __init__(self, setup: runs.Setup, x: np.ndarray, y: np.ndarray):
        self.setup, self.x, self.y = setup, x, y
        self._cache: dict[Any, jax.Array] = {}

    def accuracy(self, run_dir: str, body: dict[str, Any]) -> float | None:
        """Accuracy of the mean logits of the live shards; None if all are dead."""
        logits = []
        for shard, prefix in ledger.served(body).items():
            if prefix is None:
                continue
            key = (run_dir, shard, prefix, body["state"]["retrained"][shard])
            if key not in self._cache:
                flat = self.setup.node(run_dir, shard, prefix)
                self._cache[key] = self.setup._logits(flat, self.x)
            logits.append(self._cache[key])
        if not logits:
            return None
        return model_lib.accuracy(np.mean(np.stack(logits), axis=0), self.y)


def deletion_rows(run_dir: str) -> list[dict[str, Any]]:
    """Rows recorded so far by :func:`deletion_phase` for ``run_dir``."""
    return _read_rows(os.path.join(run_dir, "curve.jsonl"))


def _read_rows(path: str) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file; a last line cut by a crash is dropped."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        lines = [line for line in f.read().split("\n") if line.strip()]
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except ValueError:
            if i != len(lines) - 1:
                raise
            atomic.write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
    return rows


def _append_row(path: str, row: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def deletion_phase(
    name: str,
    run_dir: str,
    stream: list[int],
    evaluator: Evaluator,
    delete_fn,
    body_fn,
) -> list[dict[str, Any]]:
    """Applies ``stream`` to a run one request at a time, recording accuracy.

    Resumes: requests already in the ledger are skipped; rows live in
    ``run_dir/curve.jsonl`` (row ``k`` = state after ``k`` deletions).

    Args:
      name: the run's label (progress lines).
      run_dir: the trained run.
      stream: sample ids to delete, in order.
      evaluator: accuracy of a served state.
      delete_fn: ``sample -> (effect, seconds)``.
      body_fn: ``() -> ledger body`` of the current state.
    """
    path = os.path.join(run_dir, "curve.jsonl")
    rows = _read_rows(path)
    if not rows:
        body = body_fn()
        rows.append(
            {
                "k": 0,
                "live_shards": len(ledger.live_shards(body)),
                "accuracy": evaluator.accuracy(run_dir, body),
            }
        )
        _append_row(path, rows[0])
    done = set(body_fn()["state"]["deleted"])
    t0 = time.perf_counter()
    for k, sample in enumerate(stream, start=1):
        if k < len(rows):
            continue
        if sample in done:  # Deleted before an interruption, row not written:
            body = body_fn()  # the ledger holds its effect (it was the last one).
            shard, slc = ledger.locate(body, sample)
            died = ledger.served(body)[shard] is None and rows[-1]["live_shards"] > len(
                ledger.live_shards(body)
            )
            effect = {"shard": shard, "slice": slc, "shard_died": died}
            seconds = None  # Not timed.
        else:
            effect, seconds = delete_fn(sample)
        body = body_fn()
        row = {
            "k": k,
            "sample": int(sample),
            "shard": effect.get("shard"),
            "slice": effect.get("slice"),
            "shard_died": bool(effect.get("shard_died", False)),
            "seconds": seconds,
            "live_shards": len(ledger.live_shards(body)),
            "accuracy": evaluator.accuracy(run_dir, body),
        }
        rows.append(row)
        _append_row(path, row)
        if k % 20 == 0 or k == len(stream):
            _log(
                f"{name}: {k}/{len(stream)} deletions, live shards "
                f"{row['live_shards']}, accuracy {row['accuracy']} "
                f"({time.perf_counter() - t0:.1f} s)"
            )
    return rows


def _timed_train(setup, run_dir, settings, seqs) -> dict[str, Any]:
    """Trains a run (compiling first, timed apart); caches the timing on disk."""
    info_path = os.path.join(run_dir, "train_info.json")
    done = os.path.exists(os.path.join(run_dir, ledger.LEDGER_FILE))
    compile_seconds = 0.0 if done else setup.warm_up(settings)
    info = setup.train(run_dir, settings, seqs, log=_log)
    info["compile_seconds"] = compile_seconds
    if info["nodes_trained"] or not os.path.exists(info_path):
        atomic.write_json(info_path, info)
    return atomic.read_json(info_path)


def run(config: Any, workdir: str) -> dict[str, Any]:
    """Runs the experiment and writes ``workdir/results.json``; returns it."""
    t_start = time.time()
    train_lib.prepare_workdir(workdir, config)
    m, num_slices = config.num_shards, config.num_slices
    split = data_lib.load_digits_split(
        seed=config.seed,
        test_fraction=config.data.test_fraction,
        num_shards=m,
        num_slices=num_slices,
        max_train=config.data.max_train,
    )
    layout = data_lib.shard_layout(len(split.y_train), m, num_slices)
    num_devices = config.devices or min(jax.device_count(), m)
    _log(
        f"{len(split.y_train)} training samples in {m} shards x {num_slices} slices "
        f"({split.left_out} left out), {len(split.y_test)} test; "
        f"{num_devices} device(s) train shards in parallel"
    )
    adapters = make_adapters(config)
    with metrics_lib.MetricWriter(workdir) as writer:
        writer.write_hparams(config.to_dict())
        pretrained, pre_acc = pretrain_backbone(config, split, workdir, writer)
        _log(f"pretrained backbone: accuracy {pre_acc:.3f} on digits 0-4")
        shape = dict(
            adapters=adapters,
            d_in=D_IN,
            width=config.model.width,
            depth=config.model.depth,
            num_classes=NUM_CLASSES,
            num_groups=num_slices,
            seed=config.seed,
            x=split.x_train,
            y=split.y_train,
        )
        runner = training.NodeRunner(num_devices)
        setup = runs.make_setup(pretrained, layout=layout, runner=runner, **shape)
        single = runner if num_devices == 1 else training.NodeRunner(1)
        evaluator = Evaluator(setup, split.x_test, split.y_test)
        stream = [
            int(i)
            for i in np.random.default_rng(config.seed + 1).permutation(
                len(split.y_train)
            )[: config.deletions]
        ]

        methods: dict[str, dict[str, Any]] = {}
        for budget in config.budgets:
            seqs = seq_lib.select(config.sequence_method, num_slices, budget)
            methods[f"s3t_B{budget}"] = {
                "method": "s3t",
                "budget": budget,
                "seqs": seqs,
            }
        methods["sisa"] = {
            "method": "sisa",
            "budget": 1,
            "seqs": seq_lib.select("identity", num_slices, 1),
        }
        for name, spec in methods.items():
            run_dir = os.path.join(workdir, "runs", name)
            os.makedirs(run_dir, exist_ok=True)
            spec["dir"] = run_dir
            spec["settings"] = settings_for(config, spec["method"])
            spec["train"] = _timed_train(
                setup, run_dir, spec["settings"], [spec["seqs"]] * m
            )
            spec["storage_bytes"] = report.directory_bytes(
                os.path.join(run_dir, ledger.STAGES_DIR)
            )

        reference = None
        if config.full_reference:
            full_dir = os.path.join(workdir, "runs", "full")
            os.makedirs(full_dir, exist_ok=True)
            n = len(split.y_train)
            full_setup = runs.make_setup(
                pretrained, layout=np.arange(n).reshape(1, 1, n), runner=single, **shape
            )
            info = _timed_train(
                full_setup, full_dir, settings_for(config, "full"), [[(0,)]]
            )
            body = ledger.load(full_dir)
            acc = Evaluator(full_setup, split.x_test, split.y_test).accuracy(
                full_dir, body
            )
            reference = {"accuracy": acc, "train_seconds": info["seconds"]}

        for name, spec in methods.items():
            run_dir = spec["dir"]
            if spec["method"] == "s3t":
                with deletion.DeletionStore(run_dir) as store:

                    def delete_fn(sample, store=store):
                        t0 = time.perf_counter()
                        effect = store.delete(sample)
                        return effect, time.perf_counter() - t0

                    spec["rows"] = deletion_phase(
                        name,
                        run_dir,
                        stream,
                        evaluator,
                        delete_fn,
                        lambda s=store: s.body,
                    )
            else:
                if len(deletion_rows(run_dir)) <= len(stream):
                    setup.warm_up(spec["settings"], runner=single)

                def delete_fn(sample, spec=spec):
                    effect = sisa.delete_and_retrain(
                        setup, spec["dir"], spec["settings"], sample, runner=single
                    )
                    return effect, effect["seconds"]

                spec["rows"] = deletion_phase(
                    name,
                    run_dir,
                    stream,
                    evaluator,
                    delete_fn,
                    lambda d=run_dir: ledger.load(d),
                )
                spec["truncation_served"] = sisa.truncation_view(
                    ledger.load(run_dir), stream
                )
        for k in range(len(stream) + 1):
            writer.write_scalars(
                k,
                {
                    f"{name}_accuracy": spec["rows"][k]["accuracy"]
                    for name, spec in methods.items()
                    if spec["rows"][k]["accuracy"] is not None
                },
            )
        theory = report.theory_tables(config, methods)
        out = report.summarise(
            config=config,
            workdir=workdir,
            methods=methods,
            theory=theory,
            reference=reference,
            pretrain_accuracy=pre_acc,
            split=split,
            num_devices=num_devices,
            node_params=sum(int(np.size(v)) for v in setup.init_flats[0].values()),
        )
    path = metrics_lib.write_results(
        workdir,
        paper="s3t",
        config=config,
        metrics=out["metrics"],
        tables=out["tables"],
        claim=report.CLAIM,
        verdict=out["verdict"],
        wall_seconds=time.time() - t_start,
    )
    return metrics_lib.read_results(path)
