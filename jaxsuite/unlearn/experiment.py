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
   recorded after every deletion (``evaluation``); the phase resumes where
   it stopped.
4. **Theory**: a Monte Carlo of the truncation rule against the closed form
   ``m L H_{m B'}``, and sequence selection under a skewed deletion prior.

The config is read once into :class:`~jaxsuite.unlearn.settings.Settings`.
Writes ``results.json``, ``metrics.jsonl`` and two figures into the workdir.
"""

from __future__ import annotations

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
from jaxsuite.unlearn import deletion, evaluation, ledger, report, runs, sisa, training
from jaxsuite.unlearn import model as model_lib
from jaxsuite.unlearn import sequences as seq_lib
from jaxsuite.unlearn.settings import ModelSettings, Settings, from_config

D_IN, NUM_CLASSES = 64, 5


def _log(line: str) -> None:
    logging.info("%s", line)


def make_adapters(model: ModelSettings) -> model_lib.Adapters:
    """The adapters a layer group tunes, by ``model.adapters``."""
    if model.adapters == "lora":
        return model_lib.LoRAAdapters(
            model.lora_rank,
            model.lora_alpha or None,
            model.lora_dropout,
            use_rslora=True,
        )
    if model.adapters == "dense":
        return model_lib.BlockDense()
    raise ValueError(f"unknown adapters {model.adapters!r} (lora, dense)")


def train_settings(s: Settings, method: str) -> runs.TrainSettings:
    """The stage hyperparameters of ``method`` (``s3t``, ``sisa`` or ``full``)."""
    t = s.train
    return runs.TrainSettings(method, t.epochs, t.batch_size, t.learning_rate, s.seed)


def load_split(s: Settings) -> data_lib.DigitsSplit:
    """The digits split, its downstream set cut into ``m x L`` equal slices."""
    return data_lib.load_digits_split(
        seed=s.seed,
        test_fraction=s.data.test_fraction,
        num_shards=s.num_shards,
        num_slices=s.num_slices,
        max_train=s.data.max_train,
    )


def pretrain_backbone(
    s: Settings, split: data_lib.DigitsSplit, workdir: str, writer: Any
) -> tuple[dict[str, Any], float]:
    """Pretrains (or resumes) the backbone; returns its parameters and accuracy."""
    key = jax.random.fold_in(jax.random.PRNGKey(s.seed), 2)
    model = model_lib.Backbone(
        D_IN, s.model.width, s.model.depth, NUM_CLASSES, rngs=nnx.Rngs(key)
    )

    def loop(state, step_fn, steps):
        return train_lib.train_loop(
            state,
            step_fn,
            num_steps=steps,
            workdir=workdir,
            checkpoint_every=s.checkpoint_every,
            writer=writer,
            log_every=s.log_every,
            name="pretrain",
        )

    pure = model_lib.pretrain(
        model,
        split.x_pre,
        split.y_pre,
        key=jax.random.fold_in(key, 1),
        steps=s.pretrain.steps,
        batch_size=s.pretrain.batch_size,
        learning_rate=s.pretrain.learning_rate,
        loop=loop,
    )
    model_lib.load_params(model, pure)
    return pure, model_lib.accuracy(model(split.x_pre), split.y_pre)


def setup_shape(s: Settings, split: data_lib.DigitsSplit) -> dict[str, Any]:
    """``runs.make_setup``'s keyword arguments but the layout and the runner."""
    return dict(
        adapters=make_adapters(s.model),
        d_in=D_IN,
        width=s.model.width,
        depth=s.model.depth,
        num_classes=NUM_CLASSES,
        num_groups=s.num_slices,
        seed=s.seed,
        x=split.x_train,
        y=split.y_train,
    )


def deletion_stream(seed: int, num_samples: int, deletions: int) -> list[int]:
    """The first ``deletions`` sample ids of a seeded permutation of the set."""
    order = np.random.default_rng(seed + 1).permutation(num_samples)
    return [int(i) for i in order[:deletions]]


def method_specs(s: Settings) -> dict[str, dict[str, Any]]:
    """The runs compared: ``s3t_B<B>`` per budget, then ``sisa``.

    Each spec starts as ``{"method", "budget", "seqs"}`` (the sequences every
    shard trains); the phases add ``dir``, ``settings``, ``train``,
    ``storage_bytes``, ``rows`` and, for SISA, ``truncation_served``.
    """
    methods: dict[str, dict[str, Any]] = {}
    for budget in s.budgets:
        seqs = seq_lib.select(s.sequence_method, s.num_slices, budget)
        methods[f"s3t_B{budget}"] = {"method": "s3t", "budget": budget, "seqs": seqs}
    methods["sisa"] = {
        "method": "sisa",
        "budget": 1,
        "seqs": seq_lib.select("identity", s.num_slices, 1),
    }
    return methods


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


def train_methods(
    s: Settings, setup: runs.Setup, methods: dict[str, dict[str, Any]], workdir: str
) -> None:
    """Trains (or resumes) every run into ``workdir/runs/<name>``, in place."""
    for name, spec in methods.items():
        run_dir = os.path.join(workdir, "runs", name)
        os.makedirs(run_dir, exist_ok=True)
        spec["dir"] = run_dir
        spec["settings"] = train_settings(s, spec["method"])
        spec["train"] = _timed_train(
            setup, run_dir, spec["settings"], [spec["seqs"]] * s.num_shards
        )
        spec["storage_bytes"] = report.directory_bytes(
            os.path.join(run_dir, ledger.STAGES_DIR)
        )


def train_reference(
    s: Settings,
    pretrained: dict[str, Any],
    shape: dict[str, Any],
    split: data_lib.DigitsSplit,
    runner: training.NodeRunner,
    workdir: str,
) -> dict[str, Any]:
    """One model on all the downstream data: ``{"accuracy", "train_seconds"}``.

    ``shape`` is :func:`setup_shape`'s; the one shard holds one slice, every
    training sample, and trains on ``runner``.
    """
    full_dir = os.path.join(workdir, "runs", "full")
    os.makedirs(full_dir, exist_ok=True)
    n = len(split.y_train)
    full_setup = runs.make_setup(
        pretrained,
        layout=np.arange(n).reshape(1, 1, n),
        runner=runner,
        **shape,
    )
    info = _timed_train(full_setup, full_dir, train_settings(s, "full"), [[(0,)]])
    body = ledger.load(full_dir)
    evaluator = evaluation.Evaluator(full_setup, split.x_test, split.y_test)
    return {
        "accuracy": evaluator.accuracy(full_dir, body),
        "train_seconds": info["seconds"],
    }


def delete_s3t(
    name: str,
    spec: dict[str, Any],
    stream: list[int],
    evaluator: evaluation.Evaluator,
) -> list[dict[str, Any]]:
    """Serves ``stream`` from an S3T run by truncation (durable ledger); rows."""
    with deletion.DeletionStore(spec["dir"]) as store:

        def delete_fn(sample):
            t0 = time.perf_counter()
            effect = store.delete(sample)
            return effect, time.perf_counter() - t0

        return evaluation.deletion_phase(
            name, spec["dir"], stream, evaluator, delete_fn, lambda: store.body
        )


def delete_sisa(
    name: str,
    spec: dict[str, Any],
    stream: list[int],
    evaluator: evaluation.Evaluator,
    setup: runs.Setup,
    runner: training.NodeRunner,
) -> list[dict[str, Any]]:
    """Serves ``stream`` from the SISA run by retraining (timed on ``runner``)."""
    run_dir = spec["dir"]
    if len(evaluation.deletion_rows(run_dir)) <= len(stream):
        setup.warm_up(spec["settings"], runner=runner)

    def delete_fn(sample):
        effect = sisa.delete_and_retrain(
            setup, run_dir, spec["settings"], sample, runner=runner
        )
        return effect, effect["seconds"]

    return evaluation.deletion_phase(
        name, run_dir, stream, evaluator, delete_fn, lambda: ledger.load(run_dir)
    )


def delete_all(
    methods: dict[str, dict[str, Any]],
    stream: list[int],
    evaluator: evaluation.Evaluator,
    setup: runs.Setup,
    runner: training.NodeRunner,
) -> None:
    """Applies ``stream`` to every run; adds ``rows`` (and SISA's truncation view)."""
    for name, spec in methods.items():
        if spec["method"] == "s3t":
            spec["rows"] = delete_s3t(name, spec, stream, evaluator)
        else:
            spec["rows"] = delete_sisa(name, spec, stream, evaluator, setup, runner)
            spec["truncation_served"] = sisa.truncation_view(
                ledger.load(spec["dir"]), stream
            )


def write_curves(writer: Any, methods: dict[str, dict[str, Any]], k_max: int) -> None:
    """Logs every run's accuracy after ``k = 0..k_max`` deletions as step ``k``."""
    for k in range(k_max + 1):
        writer.write_scalars(
            k,
            {
                f"{name}_accuracy": spec["rows"][k]["accuracy"]
                for name, spec in methods.items()
                if spec["rows"][k]["accuracy"] is not None
            },
        )


def run(config: Any, workdir: str) -> dict[str, Any]:
    """Runs the experiment and writes ``workdir/results.json``; returns it.

    ``config`` (``configs/s3t.py``) is read once into :class:`Settings`; it
    is kept only to prepare ``workdir`` and to be echoed into the
    hyperparameters and ``results.json``.
    """
    t_start = time.time()
    s = from_config(config)
    train_lib.prepare_workdir(workdir, config)
    split = load_split(s)
    layout = data_lib.shard_layout(len(split.y_train), s.num_shards, s.num_slices)
    num_devices = s.devices or min(jax.device_count(), s.num_shards)
    _log(
        f"{len(split.y_train)} training samples in {s.num_shards} shards x "
        f"{s.num_slices} slices ({split.left_out} left out), {len(split.y_test)} "
        f"test; {num_devices} device(s) train shards in parallel"
    )
    with metrics_lib.MetricWriter(workdir) as writer:
        writer.write_hparams(config.to_dict())
        pretrained, pre_acc = pretrain_backbone(s, split, workdir, writer)
        _log(f"pretrained backbone: accuracy {pre_acc:.3f} on digits 0-4")
        shape = setup_shape(s, split)
        runner = training.NodeRunner(num_devices)
        setup = runs.make_setup(pretrained, layout=layout, runner=runner, **shape)
        single = runner if num_devices == 1 else training.NodeRunner(1)
        stream = deletion_stream(s.seed, len(split.y_train), s.deletions)
        methods = method_specs(s)
        train_methods(s, setup, methods, workdir)
        reference = None
        if s.full_reference:
            reference = train_reference(s, pretrained, shape, split, single, workdir)
        evaluator = evaluation.Evaluator(setup, split.x_test, split.y_test)
        delete_all(methods, stream, evaluator, setup, single)
        write_curves(writer, methods, len(stream))
        out = report.summarise(
            settings=s,
            workdir=workdir,
            methods=methods,
            theory=report.theory_tables(s, methods),
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
