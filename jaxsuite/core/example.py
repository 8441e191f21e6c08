"""The smallest experiment that keeps the launcher contract: fit an MLP to a sine.

It is the template for paper experiments and the test bed of the runner: it
checkpoints, resumes bitwise-exactly (every step's batch comes from
``fold_in(key, step)``), logs metrics, draws a figure and writes
``results.json``. Run it with::

    python -m launch.example --config=configs/example.py:smoke --workdir=runs/example
"""

from __future__ import annotations

import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxsuite.core import atomic, figures, optim
from jaxsuite.core import metrics as metrics_lib
from jaxsuite.core import train as train_lib

Params = list[dict[str, jax.Array]]


def init_mlp(key: jax.Array, sizes: tuple[int, ...]) -> Params:
    """Glorot-normal weights and zero biases for layer widths ``sizes``."""
    params = []
    for k, (n_in, n_out) in zip(
        jax.random.split(key, len(sizes) - 1), zip(sizes[:-1], sizes[1:])
    ):
        w = jax.random.normal(k, (n_in, n_out)) * jnp.sqrt(2.0 / (n_in + n_out))
        params.append({"w": w, "b": jnp.zeros((n_out,))})
    return params


def apply_mlp(params: Params, x: jax.Array) -> jax.Array:
    """MLP with tanh hidden layers: (N, d_in) -> (N, d_out)."""
    for layer in params[:-1]:
        x = jnp.tanh(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def target_fn(x: jax.Array) -> jax.Array:
    """The function being fit: (N, 1) -> (N, 1)."""
    return jnp.sin(3.0 * x)


def make_batch(key: jax.Array, step: int, batch_size: int) -> tuple[jax.Array, ...]:
    """Batch for ``step``, a pure function of ``(key, step)``: (B, 1) inputs/targets."""
    x = jax.random.uniform(
        jax.random.fold_in(key, step), (batch_size, 1), minval=-2, maxval=2
    )
    return x, target_fn(x)


def run(config: Any, workdir: str) -> dict[str, Any]:
    """Trains, evaluates and writes ``results.json``; returns the results dict."""
    t0 = time.time()
    train_lib.prepare_workdir(workdir, config)
    key = jax.random.PRNGKey(config.seed)
    init_key, data_key = jax.random.split(key)
    sizes = (1, *config.hidden, 1)
    params = init_mlp(init_key, sizes)
    tx = optax.adam(config.learning_rate)
    state = {"params": params, "opt_state": tx.init(params)}

    @jax.jit
    def update(state, step):
        x, y = make_batch(data_key, step, config.batch_size)
        loss_fn = lambda p: jnp.mean((apply_mlp(p, x) - y) ** 2)
        loss, grads = jax.value_and_grad(loss_fn)(state["params"])
        updates, opt_state = optim.update(
            tx, grads, state["opt_state"], state["params"]
        )
        params = optax.apply_updates(state["params"], updates)
        scalars = {"loss": loss, "grad_norm": optax.tree.norm(grads)}
        return {"params": params, "opt_state": opt_state}, scalars

    with metrics_lib.MetricWriter(workdir) as writer:
        writer.write_hparams(config.to_dict())
        state = train_lib.train_loop(
            state,
            update,
            num_steps=config.steps,
            workdir=workdir,
            checkpoint_every=config.checkpoint_every,
            writer=writer,
            log_every=config.log_every,
            step_delay=config.step_delay,
        )
        x = jnp.linspace(-2, 2, 256)[:, None]
        pred = apply_mlp(state["params"], x)
        test_mse = jnp.mean((pred - target_fn(x)) ** 2)
        writer.write_scalars(config.steps, {"test_mse": test_mse})

    atomic.save_npy(
        os.path.join(workdir, "final_params.npy"),
        np.concatenate([np.ravel(p) for p in jax.tree.leaves(state["params"])]),
    )
    rows = metrics_lib.read_metrics(workdir)
    losses = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    figures.plot_curves(
        os.path.join(workdir, "loss.png"),
        {"train": tuple(zip(*losses)) if losses else ((), ())},
        xlabel="step",
        ylabel="MSE",
        logy=True,
    )
    figures.plot_curves(
        os.path.join(workdir, "fit.png"),
        {"target": (x[:, 0], target_fn(x)[:, 0]), "MLP": (x[:, 0], pred[:, 0])},
        xlabel="x",
        ylabel="y",
    )
    path = metrics_lib.write_results(
        workdir,
        paper="example",
        config=config,
        metrics={"test_mse": metrics_lib.metric(test_mse, "MSE")},
        tables={},
        claim="An MLP fits sin(3x) on [-2, 2].",
        verdict="Fit quality as measured; this is a runner test bed, not a paper.",
        wall_seconds=time.time() - t0,
    )
    return metrics_lib.read_results(path)
