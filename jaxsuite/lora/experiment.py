"""MoS experiment: adapters at equal budget on a small pretrained decoder.

1. Pretrain a LLaMA-style decoder (``transformer``) on a procedural order-2
   Markov language (``data``), resumable through Orbax checkpoints.
2. Build two adaptation tasks whose ideal update exceeds the budget: *remap*
   (the downstream language relabels the outputs of a cycle of tokens) and
   *teacher* (distil a teacher that is the base plus a random rank-k update
   of every projection).
3. For every method string in ``methods`` (LoRA at several ranks,
   MoS at several r and l, VeRA, Tied-LoRA, PRoLoRA; ``r=auto`` picks the
   largest rank within LoRA(e)'s trainable count), pick the learning rate
   on a validation set with one seed, then train ``seeds`` seeds at
   that rate (all instances vmapped) and score them on a held-out test set.
   The score is the fraction of the base model's gap closed, in percent:
   ``100 (1 - m / m_base)`` with m the excess loss over the true language
   (remap) or KL(teacher || student) (teacher).
4. Write the table (score mean and std, trainable parameters), the LoRA
   parameters needed to match each method (interpolated on the LoRA
   curve), a figure of score against trainable parameters, and a verdict
   on the paper's two claims.

Each finished (task, method) is saved under ``workdir/phases`` so a killed
run resumes where it stopped. The config is read once into
:class:`~jaxsuite.lora.settings.Settings`.
"""

from __future__ import annotations

import functools
import json
import os
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx

from jaxsuite.core import metrics as metrics_lib
from jaxsuite.core import optim
from jaxsuite.core import train as train_lib
from jaxsuite.lora import adapt, adapters, data, methods, report, targets
from jaxsuite.lora import transformer as tf
from jaxsuite.lora.settings import (
    AdaptSettings,
    ModelSettings,
    Settings,
    from_config,
)

CLAIM = (
    "MoS saves about 8x trainable parameters over LoRA (MoS at 1/8 of LoRA's "
    "parameters matches it) and beats LoRA, Tied-LoRA and PRoLoRA at equal budget "
    "(Wang et al., ICLR 2025)."
)


class Task(NamedTuple):
    """One adaptation task: data, training loss and metric (lower is better).

    ``metric_fn(model, tokens, aux) - offset`` is the metric on ``tokens``
    (the val or test set). Both tasks share ``batch_fn``, ``loss_fn`` and
    ``metric_fn`` (see :func:`shared_fns`); what differs is ``aux``, arrays of
    the same shapes in both (the language sampled, whether the loss is the
    KL to the teacher, the teacher's weights), so one compiled program per
    method serves both tasks.
    """

    name: str
    batch_fn: Any  # (key, aux) -> tokens (B, T)
    loss_fn: Any  # (model, tokens, aux) -> scalar
    metric_fn: Any  # (model, tokens, aux) -> scalar
    aux: Any
    val_tokens: jax.Array
    test_tokens: jax.Array
    val_offset: float
    test_offset: float
    base_val: float
    base_test: float
    unit: str


def model_config(model: ModelSettings, seq_len: int) -> tf.TransformerConfig:
    """The decoder of ``model`` for sequences of ``seq_len`` tokens."""
    return tf.TransformerConfig(
        vocab=model.vocab,
        d_model=model.d_model,
        n_layers=model.n_layers,
        n_heads=model.n_heads,
        d_ff=model.d_ff,
        max_len=seq_len,
        scan_layers=True,
    )


def pretrain(s: Settings, workdir: str, chain: data.Chain, writer) -> nnx.Module:
    """Trains the base model on ``chain`` (resumes from its checkpoint)."""
    model = tf.Transformer(model_config(s.model, s.seq_len), rngs=nnx.Rngs(s.seed))
    graphdef, params = nnx.split(model, nnx.Param)
    p = s.pretrain
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, p.learning_rate, max(p.steps // 20, 1), p.steps
    )
    tx = optax.chain(
        optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=0.0)
    )
    key = jax.random.fold_in(jax.random.PRNGKey(s.seed), 1)

    @jax.jit
    def step(state, step_index):
        tokens = data.sample(
            chain, jax.random.fold_in(key, step_index), p.batch, s.seq_len
        )
        loss_fn = lambda q: data.lm_loss(nnx.merge(graphdef, q)(tokens), tokens)
        loss, grads = jax.value_and_grad(loss_fn)(state["params"])
        updates, opt_state = optim.update(
            tx, grads, state["opt_state"], state["params"]
        )
        params = optax.apply_updates(state["params"], updates)
        return {"params": params, "opt_state": opt_state}, loss

    def step_fn(state, step_index):
        state, loss = step(state, step_index)
        if not np.isfinite(float(loss)):
            raise FloatingPointError(
                f"Pretraining loss is {float(loss)} at step {step_index}; "
                "the last good checkpoint is kept."
            )
        return state, {"pretrain_loss": loss}

    state = {"params": params, "opt_state": tx.init(params)}
    state = train_lib.train_loop(
        state,
        step_fn,
        num_steps=p.steps,
        workdir=workdir,
        checkpoint_every=s.checkpoint_every,
        writer=writer,
        log_every=s.log_every,
        name="pretrain",
    )
    return nnx.merge(graphdef, state["params"])


def _split_eval(s: Settings, chain: data.Chain, tag: int) -> jax.Array:
    """``s.eval_sequences`` sequences (N, T) of ``chain``, drawn with ``tag``."""
    key = jax.random.fold_in(jax.random.PRNGKey(s.seed), tag)
    return data.sample(chain, key, s.eval_sequences, s.seq_len)


def make_teacher(s: Settings, base: nnx.Module) -> nnx.Module:
    """The base plus a random rank-k update of every targeted projection."""
    teacher = nnx.clone(base)
    key = jax.random.fold_in(jax.random.PRNGKey(s.seed), 7)
    found = targets.find_targets(teacher, s.target_modules)
    for i, (t, module) in enumerate(found):
        kernel = module.kernel[...]
        flat = kernel.reshape(t.n_layers, t.d_in, t.d_out)
        keys = jax.random.split(jax.random.fold_in(key, i), t.n_layers)
        delta = jax.vmap(
            lambda k, w: data.low_rank_update(
                k, w, s.teacher.rank, s.teacher.relative_norm
            )
        )(keys, flat)
        module.kernel[...] = kernel + delta.reshape(kernel.shape)
    return teacher


def shared_fns(batch: int, seq_len: int, base: nnx.Module) -> tuple[Any, Any]:
    """``(batch_fn, loss_fn)`` of both tasks; ``aux`` is ``{"chain": Chain``
    (the language the batches come from), ``"kl": bool ()`` (KL to the
    teacher, else next-token cross-entropy), ``"teacher": state`` (the
    teacher's weights; unused by remap)``}``. ``batch_fn`` draws ``batch``
    sequences of ``seq_len`` tokens; ``loss_fn`` is also the metric.
    """
    b, t = batch, seq_len
    t_graph = nnx.graphdef(base)

    def batch_fn(key, aux):
        return data.sample(aux["chain"], key, b, t)

    def loss_fn(m, tokens, aux):
        logits = m(tokens)

        def kl():
            teacher = nnx.merge(t_graph, aux["teacher"], copy=True)
            return data.kl_loss(logits, teacher(tokens))

        return jax.lax.cond(aux["kl"], kl, lambda: data.lm_loss(logits, tokens))

    return batch_fn, loss_fn


def make_task(name: str, s: Settings, base: nnx.Module, chain: data.Chain) -> Task:
    """The ``remap`` or ``teacher`` task on the pretrained ``base``."""
    base_state = nnx.state(base)
    if name == "remap":
        target = data.remap_chain(chain, s.remap_tokens, s.seed)
        val, test = _split_eval(s, target, 11), _split_eval(s, target, 12)
        entropy = lambda x: -float(jnp.mean(data.true_log_probs(target, x)))
        aux = {"chain": target, "kl": jnp.asarray(False), "teacher": base_state}
        offsets = entropy(val), entropy(test)
        unit = "nats/token above the true entropy"
        metric_aux = {}
        metric = jax.jit(lambda m, tokens, aux: data.lm_loss(m(tokens), tokens))
    elif name == "teacher":
        t_graph, metric_aux = nnx.split(make_teacher(s, base))
        val, test = _split_eval(s, chain, 21), _split_eval(s, chain, 22)
        aux = {"chain": chain, "kl": jnp.asarray(True), "teacher": metric_aux}
        offsets = 0.0, 0.0
        unit = "nats/token KL(teacher || student)"

        @jax.jit
        def metric(m, tokens, teacher_state):
            teacher = nnx.merge(t_graph, teacher_state, copy=True)
            return data.kl_loss(m(tokens), teacher(tokens))

    else:
        raise ValueError(f"Unknown task {name!r}; use 'remap' or 'teacher'.")
    batch_fn, loss_fn = shared_fns(s.adapt.batch, s.seq_len, base)
    return Task(
        name,
        batch_fn,
        loss_fn,
        loss_fn,
        aux,
        val,
        test,
        *offsets,
        float(metric(base, val, metric_aux)) - offsets[0],
        float(metric(base, test, metric_aux)) - offsets[1],
        unit,
    )


def resolve_methods(s: Settings, base: nnx.Module) -> list[tuple[str, Any]]:
    """Parses ``s.methods``; ``r=auto`` takes the largest rank whose
    trainable count stays within LoRA at ``s.budget_rank``."""
    found = [t for t, _ in targets.find_targets(base, s.target_modules)]
    common = dict(
        target_modules=s.target_modules,
        alpha=s.adapt.alpha,
        dropout=s.adapt.dropout,
    )
    budget = methods.count_trainable(
        adapt.parse_method(f"lora r={s.budget_rank}", **common)[1], found
    )
    out = []
    for text in s.methods:
        if "r=auto" not in text:
            out.append(adapt.parse_method(text, **common))
            continue
        best = None
        for r in range(1, 257):
            label, cfg = adapt.parse_method(text.replace("r=auto", f"r={r}"), **common)
            try:
                n = methods.count_trainable(cfg, found)
            except ValueError:
                break
            if n > budget:
                break
            best = (label, cfg)
        if best is None:
            raise ValueError(
                f"No rank of {text!r} fits the budget of {budget} parameters."
            )
        out.append(best)
    return out


def _score(metric: np.ndarray, base_metric: float) -> np.ndarray:
    return 100.0 * (1.0 - metric / base_metric)


def _train(
    task: Task, run, tx, a: AdaptSettings, seed: int, label: str, inst, lrs, seeds
):
    """Trains the stacked instances ``inst`` (n of them) with learning rates
    ``lrs (n,)`` and data seeds ``seeds (n,)`` through the compiled chunk
    ``run`` (``a.steps`` steps; data keys from the root ``seed``); returns
    ``(params, extra, final training losses (n,))``."""
    chunk = min(a.chunk, a.steps)
    params, extra = inst.params, inst.extra
    opt_state = jax.vmap(tx.init)(params)
    root = jax.random.PRNGKey(seed + 1000)
    keys = jnp.stack([jax.random.fold_in(root, s) for s in seeds])
    lrs = jnp.asarray(lrs, jnp.float32)
    # One placement for every argument, so all phases hit one compilation.
    device = jax.devices()[0]
    params, opt_state, extra, lrs, keys, base_state, aux = jax.device_put(
        (params, opt_state, extra, lrs, keys, inst.base, task.aux), device
    )
    for step0 in range(0, a.steps, chunk):
        params, opt_state, extra, losses = run(
            base_state, params, opt_state, extra, lrs, keys, step0, aux
        )
        last = np.asarray(losses)
        if not np.all(np.isfinite(last)):
            bad = np.argwhere(~np.isfinite(last))[0]
            raise FloatingPointError(
                f"{task.name}/{label}: training loss {last[tuple(bad)]} at step "
                f"{step0 + bad[1] + 1} (seed {seeds[bad[0]]})."
            )
    return params, extra, last[:, -1]


def _std(x) -> float:
    return float(np.std(x, ddof=1)) if len(x) > 1 else 0.0


def run_method(
    task: Task,
    base: nnx.Module,
    label: str,
    cfg: Any,
    s: Settings,
    programs: dict | None = None,
) -> dict[str, Any]:
    """Learning-rate selection on one seed, then ``s.seeds`` seeds.

    Both phases run as vmapped instances through one compiled program when
    the learning-rate grid and the seeds are equally many. ``programs``
    (label -> (train chunk, eval)) carries the compiled programs from one
    task to the next: the tasks differ only in traced ``task.aux``.
    """
    a = s.adapt
    tx = adapt.optimizer(a.steps, a.warmup_ratio, a.clip)
    chunk = min(a.chunk, a.steps)
    if a.steps % chunk:
        raise ValueError(f"adapt.steps={a.steps} must be a multiple of chunk={chunk}.")
    t0 = time.time()
    inst = adapt.build_instances(base, cfg, list(range(s.seeds)))
    programs = {} if programs is None else programs
    if label not in programs:
        programs[label] = (
            adapt.make_train_chunk(
                inst.graphdef, tx, task.loss_fn, task.batch_fn, chunk
            ),
            adapt.make_eval(inst.graphdef, task.metric_fn),
        )
    run, evaluate = programs[label]
    train = functools.partial(_train, task, run, tx, a, s.seed, label)

    n_lr = len(a.learning_rates)
    tune = adapt.repeat_instances(adapt.build_instances(base, cfg, [s.tune_seed]), n_lr)
    params, extra, _ = train(tune, a.learning_rates, [s.tune_seed] * n_lr)
    val = np.asarray(evaluate(inst.base, params, extra, task.val_tokens, task.aux))
    val_scores = _score(val - task.val_offset, task.base_val)
    best = int(np.argmax(np.where(np.isfinite(val_scores), val_scores, -np.inf)))
    lr = float(a.learning_rates[best])

    seeds = list(range(s.seeds))
    params, extra, final_loss = train(inst, [lr] * len(seeds), seeds)
    test = np.asarray(evaluate(inst.base, params, extra, task.test_tokens, task.aux))
    test = test - task.test_offset
    scores = _score(test, task.base_test)
    one = nnx.clone(base)
    adapters.wrap(one, cfg)
    n_params = adapters.count_params(one)
    row = {
        "task": task.name,
        "method": label,
        "config": cfg.to_dict(),
        "trainable_params": int(n_params),
        "learning_rate": lr,
        "val_score_by_lr": [float(v) for v in val_scores],
        "score_mean": float(np.mean(scores)),
        "score_std": _std(scores),
        "scores": [float(v) for v in scores],
        "metric_mean": float(np.mean(test)),
        "metric_std": _std(test),
        "final_train_loss_mean": float(np.mean(final_loss)),
        "seconds": time.time() - t0,
    }
    logging.info(
        "%s | %-26s | %7d params | lr %.0e | score %.1f +- %.1f %% | %.0f s",
        task.name,
        label,
        n_params,
        lr,
        row["score_mean"],
        row["score_std"],
        row["seconds"],
    )
    return row


def _phase_path(workdir: str, task: str, label: str) -> str:
    safe = label.replace(" ", "_").replace("=", "")
    return os.path.join(workdir, "phases", f"{task}__{safe}.json")


def base_model(
    s: Settings, workdir: str, chain: data.Chain, writer
) -> tuple[nnx.Module, float, float]:
    """Pretrains (or restores) the base on ``chain``; returns ``(base, excess
    test loss over the language entropy, that entropy)`` in nats/token."""
    base = pretrain(s, workdir, chain, writer)
    pre_test = _split_eval(s, chain, 3)
    entropy = -float(jnp.mean(data.true_log_probs(chain, pre_test)))
    pre_excess = (
        float(data.lm_loss(jax.jit(lambda m: m(pre_test))(base), pre_test)) - entropy
    )
    writer.write_scalars(s.pretrain.steps, {"pretrain_excess_loss": pre_excess})
    logging.info(
        "Base model: %.4f nats/token above the entropy %.3f.", pre_excess, entropy
    )
    return base, pre_excess, entropy


def adapt_all(
    s: Settings, workdir: str, base: nnx.Module, chain: data.Chain, writer
) -> tuple[list[dict[str, Any]], dict[str, Task]]:
    """Runs every method of ``s.methods`` on every task of ``s.tasks``;
    returns the rows (one per task and method, in that order) and the tasks.

    A finished (task, method) is read back from ``workdir/phases``."""
    method_list = resolve_methods(s, base)
    rows, tasks, programs = [], {}, {}
    for task_name in s.tasks:
        task = make_task(task_name, s, base, chain)
        tasks[task_name] = task
        logging.info(
            "Task %s: base model %.4f %s.", task_name, task.base_test, task.unit
        )
        for label, cfg in method_list:
            path = _phase_path(workdir, task_name, label)
            if os.path.exists(path):
                with open(path) as f:
                    rows.append(json.load(f))
                continue
            row = run_method(task, base, label, cfg, s, programs)
            with open(path + ".tmp", "w") as f:
                json.dump(row, f, indent=1)
            os.replace(path + ".tmp", path)
            rows.append(row)
            writer.write_scalars(
                len(rows),
                {f"{task_name}/{label}/score": row["score_mean"]},
            )
    return rows, tasks


def run(config: Any, workdir: str) -> dict[str, Any]:
    """Pretrains, adapts with every method on every task, writes results.json.

    ``config`` (``configs/mos.py``) is read once into :class:`Settings`; it
    is kept only to prepare ``workdir`` and to be echoed into the
    hyperparameters and ``results.json``.
    """
    t0 = time.time()
    s = from_config(config)
    train_lib.prepare_workdir(workdir, config)
    os.makedirs(os.path.join(workdir, "phases"), exist_ok=True)
    chain = data.make_chain(
        jax.random.fold_in(jax.random.PRNGKey(s.seed), 0),
        s.model.vocab,
        s.chain_scale,
    )
    with metrics_lib.MetricWriter(workdir) as writer:
        writer.write_hparams(config.to_dict())
        base, pre_excess, entropy = base_model(s, workdir, chain, writer)
        rows, tasks = adapt_all(s, workdir, base, chain, writer)
    base_info = {
        "pretrain_excess_loss": pre_excess,
        "language_entropy": entropy,
        "tasks": {
            k: {"base_metric": v.base_test, "unit": v.unit} for k, v in tasks.items()
        },
    }
    wall_seconds = time.time() - t0
    out = report.summarise(s, workdir, rows, base_info)
    path = metrics_lib.write_results(
        workdir,
        paper="mos",
        config=config,
        metrics=out["metrics"],
        tables=out["tables"],
        claim=CLAIM,
        verdict=out["verdict"],
        wall_seconds=wall_seconds,
    )
    return metrics_lib.read_results(path)
