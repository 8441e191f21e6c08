"""Training many adapters at once: one method, several seeds and learning rates.

Every *instance* is one (seed, learning rate) pair of one method. Instances
share the frozen base weights and are stacked along a leading axis and run
with ``jax.vmap``, so five seeds cost one compiled step. Each instance has
its own adapter initialisation, MoS index sets, dropout stream and data
stream (all drawn from its seed).

The optimiser follows the official MoS scripts: AdamW without weight decay,
gradient clipping at global norm 0.3, linear warm-up over 3% of the steps
then linear decay to zero; the learning rate multiplies the update per
instance, so instances with different rates share one compiled step.

Method strings name a config in a few tokens: ``"lora r=2"``,
``"mos r=8 e=2 p=1 l=2"``, ``"vera r=256"``, ``"tied r=5"``,
``"prolora r=4 u=1 m=3"`` (see ``parse_method``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxsuite.core import optim
from jaxsuite.lora import adapters
from jaxsuite.lora import config as config_lib

_KEYS = {
    "lora": {"r": "rank"},
    "mos": {
        "r": "rank",
        "e": "equivalent_rank",
        "p": "private_rank",
        "l": "shards_per_vector",
    },
    "vera": {"r": "rank"},
    "tied": {"r": "rank"},
    "prolora": {"r": "rank", "u": "unshared_rank", "m": "sharing"},
}
_CLASSES = {
    "lora": config_lib.LoRAConfig,
    "mos": config_lib.MoSConfig,
    "vera": config_lib.VeRAConfig,
    "tied": config_lib.TiedLoRAConfig,
    "prolora": config_lib.PRoLoRAConfig,
}
_NAMES = {
    "lora": "LoRA",
    "mos": "MoS",
    "vera": "VeRA",
    "tied": "Tied-LoRA",
    "prolora": "PRoLoRA",
}


def parse_method(
    text: str, *, target_modules: tuple[str, ...], alpha: float, dropout: float
) -> tuple[str, config_lib.AdapterConfig]:
    """``"mos r=8 e=2 p=1 l=2"`` -> (label, MoSConfig).

    Keys: r (rank), and for MoS e (equivalent rank), p (private rank), l
    (shards per vector); for PRoLoRA u (unshared rank) and m (sharing
    factor of both A and B).
    """
    name, *items = text.split()
    if name not in _KEYS:
        raise ValueError(f"Unknown method {name!r} in {text!r}; known: {list(_KEYS)}")
    kwargs: dict[str, Any] = {}
    for item in items:
        key, _, value = item.partition("=")
        if key not in _KEYS[name]:
            raise ValueError(f"{text!r}: {name} takes {list(_KEYS[name])}, not {key!r}")
        field = _KEYS[name][key]
        if field == "sharing":
            kwargs["sharing_a"] = kwargs["sharing_b"] = int(value)
        else:
            kwargs[field] = int(value)
    cfg = _CLASSES[name](
        target_modules=target_modules, alpha=alpha, dropout=dropout, **kwargs
    )
    label = _NAMES[name] + " " + " ".join(items)
    return label.strip(), cfg


class Instances(NamedTuple):
    """Stacked adapter state of n instances plus the shared frozen base.

    ``params`` and ``extra`` (non-trainable adapter state) have a leading
    axis of size n; ``base`` (the base weights) has none.
    """

    graphdef: Any
    params: Any
    extra: Any
    base: Any


def build_instances(
    base_model: nnx.Module, cfg: config_lib.AdapterConfig, seeds: list[int]
) -> Instances:
    """Wraps a copy of ``base_model`` once per seed and stacks the adapters."""
    parts = []
    for seed in seeds:
        model = nnx.clone(base_model)
        adapters.wrap(model, dataclasses.replace(cfg, seed=int(seed)))
        parts.append(
            nnx.split(model, adapters.AdapterParam, adapters.AdapterState, ...)
        )
    graphdef, _, _, base = parts[0]
    stack = lambda *xs: jnp.stack(xs)
    params = jax.tree.map(stack, *[p[1] for p in parts])
    extra = jax.tree.map(stack, *[p[2] for p in parts])
    return Instances(graphdef, params, extra, base)


def repeat_instances(inst: Instances, n: int) -> Instances:
    """Instance 0 repeated ``n`` times (one seed, several learning rates)."""
    rep = lambda x: jnp.repeat(x[:1], n, axis=0)
    return inst._replace(
        params=jax.tree.map(rep, inst.params), extra=jax.tree.map(rep, inst.extra)
    )


def optimizer(
    steps: int, warmup_ratio: float, clip: float
) -> optax.GradientTransformation:
    """Unit-rate AdamW (no decay) with clipping and a linear warm-up/decay schedule."""
    warmup = max(int(round(warmup_ratio * steps)), 1)
    schedule = optax.join_schedules(
        [
            optax.linear_schedule(0.0, 1.0, warmup),
            optax.linear_schedule(1.0, 0.0, max(steps - warmup, 1)),
        ],
        [warmup],
    )
    return optax.chain(
        optax.clip_by_global_norm(clip),
        optax.scale_by_adam(),
        optax.scale_by_schedule(schedule),
    )


def make_train_chunk(
    graphdef: Any,
    tx: optax.GradientTransformation,
    loss_fn: Callable[[nnx.Module, jax.Array, Any], jax.Array],
    batch_fn: Callable[[jax.Array, Any], jax.Array],
    chunk: int,
):
    """A jitted function running ``chunk`` steps for every instance.

    Args:
      graphdef: the adapted model's graph definition (``Instances.graphdef``).
      tx: the unit-rate optimiser.
      loss_fn: ``(model, tokens, aux) -> loss`` for one instance.
      batch_fn: ``(key, aux) -> tokens (B, T)`` (one instance's batch).
      chunk: steps per call.

    Returns:
      ``run(base, params, opt_state, extra, lrs, keys, step0, aux) -> (params,
      opt_state, extra, losses (n, chunk))``. ``base`` and ``aux`` (e.g. a
      teacher's weights) are shared by the instances and passed as arguments,
      not baked into the compiled program, so one compilation serves every
      call with the same number of instances (and every task whose ``aux``
      has the same shapes). Step ``s`` of an instance draws its batch from
      ``fold_in(keys[i], s)``.
    """

    def one_loss(params, extra, base, tokens, aux):
        # copy=True makes fresh Variables at this trace level, so dropout
        # keys can be updated inside the differentiated function.
        model = nnx.merge(graphdef, params, extra, base, copy=True)
        loss = loss_fn(model, tokens, aux)
        return loss, nnx.state(model, adapters.AdapterState)

    grad_fn = jax.value_and_grad(one_loss, has_aux=True)

    def one_chunk(base, params, opt_state, extra, lr, key, step0, aux):
        def one_step(carry, step):
            params, opt_state, extra = carry
            tokens = batch_fn(jax.random.fold_in(key, step), aux)
            (loss, extra), grads = grad_fn(params, extra, base, tokens, aux)
            updates, opt_state = optim.update(tx, grads, opt_state, params)
            params = jax.tree.map(lambda p, u: p - lr * u, params, updates)
            return (params, opt_state, extra), loss

        steps = step0 + jnp.arange(chunk)
        carry, losses = jax.lax.scan(one_step, (params, opt_state, extra), steps)
        return (*carry, losses)

    return jax.jit(jax.vmap(one_chunk, in_axes=(None, 0, 0, 0, 0, 0, None, None)))


def make_eval(
    graphdef: Any, metric_fn: Callable[[nnx.Module, jax.Array, Any], jax.Array]
):
    """Jitted ``(base, params, extra, tokens, aux) -> (n,)`` metric per instance.

    Runs in eval mode (no dropout); ``metric_fn(model, tokens, aux)``.
    """

    def one(base, params, extra, tokens, aux):
        model = nnx.merge(graphdef, params, extra, base, copy=True)
        model.eval()
        return metric_fn(model, tokens, aux)

    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0, None, None)))
