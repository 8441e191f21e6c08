"""Adapters for any Flax NNX model: wrap, filter, merge, unmerge, unwrap.

``wrap(model, config)`` replaces every matching ``nnx.Linear``,
``nnx.LinearGeneral`` or ``nnx.Einsum`` of ``model`` (in place) by an
``Adapted`` module that holds the original layer as ``.base`` and adds
``scale * (dropout(x) @ A) @ B`` to its output, with (A, B) built by the
config's method (``jaxsuite.lora.methods``). Parameter paths of a wrapped
layer therefore gain one component: ``layers.0.attn.q_proj.kernel`` becomes
``layers.0.attn.q_proj.base.kernel``.

Variable types (use them as nnx filters):

* ``AdapterParam`` (a subclass of ``nnx.LoRAParam``): trainable adapter
  arrays; ``SharedAdapterParam`` for those shared by several layers (MoS
  pools, Tied-LoRA's tied A and B).
* ``AdapterState``: non-trainable adapter arrays (MoS index sets, the
  dropout key); ``SharedAdapterState`` for VeRA's frozen projections.

An optimiser that trains adapters only uses ``wrt=AdapterParam`` (or
``select(...)`` for some layers). Shared arrays are owned by the first layer
of their group (their path runs through that layer) and are referenced by
the others.

Scanned layers: when a model's layers were made with ``nnx.vmap`` (kernels
with a leading layer axis) and run with ``nnx.scan``, local adapter arrays
get the same leading axis and are scanned with the layers, while shared
arrays must be broadcast: run the scan with ``in_axes=scan_axes()`` for the
module argument (``nnx.StateAxes({Shared...: None, ...: 0})``).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxsuite.lora import config as config_lib
from jaxsuite.lora import methods
from jaxsuite.lora import targets as targets_lib
from jaxsuite.lora.targets import Target

Filter = Any  # an nnx filter: a Variable type, a predicate (path, value), a tuple...


class AdapterParam(nnx.LoRAParam):
    """A trainable adapter array."""


class SharedAdapterParam(AdapterParam):
    """A trainable adapter array shared by several layers."""


class AdapterState(nnx.Variable):
    """A non-trainable adapter array (index sets, frozen projections, keys)."""


class SharedAdapterState(AdapterState):
    """A non-trainable adapter array shared by several layers."""


# Filters.
trainable = AdapterParam
adapter_vars = nnx.Any(AdapterParam, AdapterState)
shared = nnx.Any(SharedAdapterParam, SharedAdapterState)


def scan_axes(axis: int = 0) -> nnx.StateAxes:
    """``in_axes`` for a scanned stack of adapted layers: shared arrays broadcast."""
    return nnx.StateAxes({shared: None, ...: axis})


def select(*patterns: str) -> Filter:
    """Filter for the trainable adapter arrays of the layers matching ``patterns``.

    Patterns follow ``target_modules`` (see ``jaxsuite.lora.config``) and
    are matched against every prefix of a variable's path, so ``"layers.0.*"``
    or ``"q_proj"`` select the arrays under those layers. Shared arrays are
    selected through the layer that owns them (its group's first layer).
    """

    def predicate(path, value) -> bool:
        if not isinstance(value, AdapterParam):
            return False
        return any(
            targets_lib.matches_any(targets_lib.path_name(path[:k]), patterns)
            for k in range(1, len(path) + 1)
        )

    return predicate


class SharedArrays(nnx.Module):
    """The arrays one group of adapted layers shares (referenced by each)."""

    def __init__(self, arrays: dict[str, nnx.Variable]):
        self.names = tuple(arrays)
        for name, var in arrays.items():
            setattr(self, name, var)


class Adapted(nnx.Module):
    """A layer plus its adapter: ``base(x) + scale * (drop(x) @ A) @ B``.

    Attributes:
      base: the wrapped ``nnx.Linear`` / ``LinearGeneral`` / ``Einsum``.
      target: its ``Target`` (name, shapes, stack axes).
      config: the adapter config.
      shared_arrays: the group's ``SharedArrays`` (None if nothing is shared).
      merged: whether the update is folded into ``base``'s kernel.
      deterministic: disables dropout (set by ``model.eval()``).
    """

    def __init__(
        self,
        base: nnx.Module,
        target: Target,
        config: config_lib.AdapterConfig,
        shared_arrays: SharedArrays | None,
        local: dict[str, nnx.Variable],
        shapes: dict[str, tuple[int, ...]],
    ):
        self.base = base
        self.target = target
        self.config = config
        self.shared_arrays = shared_arrays
        self.local_names = tuple(local)
        self.shapes = tuple(sorted(shapes.items()))
        for name, var in local.items():
            setattr(self, name, var)
        self.merged = False
        self.deterministic = False
        if config.dropout > 0:
            key = jax.random.fold_in(
                jax.random.PRNGKey(config.seed), methods._slot(target.name)
            )
            if target.stack:
                key = jax.random.split(key, target.n_layers).reshape(*target.stack, 2)
            self.dropout_key = AdapterState(key)
        else:
            self.dropout_key = None

    def _arrays(self) -> tuple[dict, dict]:
        shapes = dict(self.shapes)
        shared_arrays = {}
        if self.shared_arrays is not None:
            for name in self.shared_arrays.names:
                value = getattr(self.shared_arrays, name)[...]
                if value.shape != shapes[name]:
                    raise ValueError(
                        f"Shared adapter array {name} of layer {self.target.name} "
                        f"has shape {value.shape}, expected {shapes[name]}: it was "
                        "sliced by a transform. Scan stacked layers with "
                        "in_axes=jaxsuite.lora.scan_axes() so shared arrays broadcast."
                    )
                shared_arrays[name] = value
        local = {}
        for name in self.local_names:
            value = getattr(self, name)[...]
            if value.shape != shapes[name]:
                raise ValueError(
                    f"Adapter array {name} of layer {self.target.name} has shape "
                    f"{value.shape}, expected {shapes[name]} per layer: a stacked "
                    f"layer (stack {self.target.stack}) must be called inside "
                    "nnx.scan/vmap over its layer axis."
                )
            local[name] = value
        return shared_arrays, local

    def factors(self) -> tuple[jax.Array, jax.Array]:
        """This layer's A (d_in, k) and B (k, d_out) (one layer, inside a scan)."""
        shared_arrays, local = self._arrays()
        return methods.factors(self.config, self.target, shared_arrays, local)

    def _dropout(self, x: jax.Array) -> jax.Array:
        rate = self.config.dropout
        if rate == 0 or self.deterministic or self.dropout_key is None:
            return x
        key = self.dropout_key[...]
        if key.shape != (2,):
            raise ValueError(
                f"Layer {self.target.name} is stacked; call it inside nnx.scan."
            )
        new_key, sub = jax.random.split(key)
        self.dropout_key[...] = new_key
        keep = jax.random.bernoulli(sub, 1.0 - rate, x.shape)
        return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))

    def delta(self, x: jax.Array) -> jax.Array:
        """The adapter's contribution to the output for input ``x``."""
        a, b = self.factors()
        t = self.target
        x = self._dropout(x)
        scale = self.config.scale
        if t.kind == "linear":
            return scale * ((x @ a.astype(x.dtype)) @ b.astype(x.dtype))
        if t.kind == "general":
            axes = tuple(ax % x.ndim for ax in t.input_axes)
            rest = [ax for ax in range(x.ndim) if ax not in axes]
            xt = jnp.transpose(x, (*rest, *axes))
            lead = xt.shape[: len(rest)]
            flat = xt.reshape(*lead, t.d_in)
            out = (flat @ a.astype(x.dtype)) @ b.astype(x.dtype)
            return scale * out.reshape(*lead, *t.out_shape)
        dk = _kernel_delta(t, a, b, scale).astype(x.dtype)
        return jnp.einsum(t.einsum_str, x, dk)

    def __call__(self, x: jax.Array, *args: Any, **kwargs: Any) -> jax.Array:
        y = self.base(x, *args, **kwargs)
        if self.merged:
            return y
        return y + self.delta(x).astype(y.dtype)

    def kernel_delta(self) -> jax.Array:
        """``scale * A @ B`` in the base kernel's shape (stack axes included)."""
        t = self.target
        if not t.stack:
            a, b = self.factors()
            return _kernel_delta(t, a, b, self.config.scale)
        shared_arrays = {}
        if self.shared_arrays is not None:
            shared_arrays = {
                n: getattr(self.shared_arrays, n)[...] for n in self.shared_arrays.names
            }
        local = {n: getattr(self, n)[...] for n in self.local_names}
        flat = {
            n: v.reshape(t.n_layers, *v.shape[len(t.stack) :]) for n, v in local.items()
        }

        def one(loc):
            a, b = methods.factors(self.config, t, shared_arrays, loc)
            return _kernel_delta(t, a, b, self.config.scale)

        out = jax.vmap(one)(flat)
        return out.reshape(*t.stack, *t.kernel_shape)


def _kernel_delta(t: Target, a: jax.Array, b: jax.Array, scale: float) -> jax.Array:
    """``scale * A @ B`` laid out as the (unstacked) kernel of ``t``."""
    delta = (scale * (a @ b)).reshape(*t.in_shape, *t.out_shape)
    order = (*t.in_axes, *t.out_axes)
    inverse = [order.index(i) for i in range(len(order))]
    return jnp.transpose(delta, inverse)


def _set_child(model: nnx.Module, path: tuple, new: Any) -> None:
    parent = model
    for key in path[:-1]:
        parent = parent[key] if isinstance(key, int) else getattr(parent, key)
    key = path[-1]
    if isinstance(key, int) or isinstance(parent, nnx.Dict):
        parent[key] = new
    else:
        setattr(parent, key, new)


def _variable(spec: methods.Spec, value: jax.Array, is_shared: bool) -> nnx.Variable:
    if spec.trainable:
        return (SharedAdapterParam if is_shared else AdapterParam)(value)
    return (SharedAdapterState if is_shared else AdapterState)(value)


def wrap(model: nnx.Module, config: config_lib.AdapterConfig) -> tuple[str, ...]:
    """Adds ``config``'s adapters to the matching layers of ``model``, in place.

    Args:
      model: any NNX module.
      config: a ``LoRAConfig``, ``MoSConfig``, ``VeRAConfig``,
        ``TiedLoRAConfig`` or ``PRoLoRAConfig``.

    Returns:
      The names of the wrapped layers, in path order.

    Raises:
      ValueError: a pattern matches no layer, a rank does not fit a layer,
        or layers sharing parameters have different shapes; each message
        names the layers involved.
    """
    found = targets_lib.find_targets(model, config.target_modules, skip=Adapted)
    targets = [t for t, _ in found]
    modules = {t.name: m for t, m in found}
    for gp in methods.plan(config, targets):
        shared_vars = {
            name: _variable(spec, methods.init_array(config, gp, name, spec), True)
            for name, spec in gp.shared.items()
        }
        holder = SharedArrays(shared_vars) if shared_vars else None
        for t, ids, specs in zip(gp.targets, gp.layer_ids, gp.local):
            local = {
                name: _variable(
                    spec,
                    methods.init_array(config, gp, name, spec, ids, t.stack),
                    False,
                )
                for name, spec in specs.items()
            }
            shapes = {n: s.shape for n, s in {**gp.shared, **specs}.items()}
            wrapper = Adapted(modules[t.name], t, config, holder, local, shapes)
            _set_child(model, t.path, wrapper)
    return tuple(t.name for t in targets)


def adapted_layers(model: nnx.Module) -> dict[str, Adapted]:
    """The ``Adapted`` modules of ``model`` by layer name, in path order."""
    found = {
        targets_lib.path_name(p): m
        for p, m in nnx.iter_modules(model)
        if isinstance(m, Adapted)
    }
    return dict(
        sorted(found.items(), key=lambda kv: targets_lib._sort_key(kv[1].target.path))
    )


def _require_adapted(model: nnx.Module) -> dict[str, Adapted]:
    layers = adapted_layers(model)
    if not layers:
        raise ValueError(
            "The model has no adapted layers; call jaxsuite.lora.wrap first."
        )
    return layers


def merge(model: nnx.Module) -> None:
    """Folds every adapter's update into its base kernel (in place)."""
    for layer in _require_adapted(model).values():
        if layer.merged:
            continue
        kernel = layer.base.kernel
        kernel[...] = kernel[...] + layer.kernel_delta().astype(kernel.dtype)
        layer.merged = True


def unmerge(model: nnx.Module) -> None:
    """Subtracts merged updates from the base kernels again (in place)."""
    for layer in _require_adapted(model).values():
        if not layer.merged:
            continue
        kernel = layer.base.kernel
        kernel[...] = kernel[...] - layer.kernel_delta().astype(kernel.dtype)
        layer.merged = False


def unwrap(model: nnx.Module, *, merge_updates: bool = True) -> tuple[str, ...]:
    """Replaces each ``Adapted`` by its base layer, merged unless told otherwise.

    Returns the names of the unwrapped layers. The result is the original
    architecture (same parameter paths) with updated kernels: what one serves.
    """
    layers = _require_adapted(model)
    if merge_updates:
        merge(model)
    for layer in layers.values():
        _set_child(model, layer.target.path, layer.base)
    return tuple(layers)


def count_params(model: Any, filter_: Filter = trainable) -> int:
    """Number of array elements of ``model``'s variables matching ``filter_``.

    Uses shapes only, so it works on an abstract model from
    ``nnx.eval_shape`` (LLaMA-size adapters count without allocation).
    """
    state = nnx.state(model, filter_)
    return sum(math.prod(x.shape) for x in jax.tree.leaves(state))


def describe_adapters(model: nnx.Module) -> dict[str, Any]:
    """Method, config and per-layer shapes: what an adapter file records."""
    layers = _require_adapted(model)
    configs = {layer.config for layer in layers.values()}
    return {
        "configs": [c.to_dict() for c in sorted(configs, key=lambda c: repr(c))],
        "layers": {
            name: {
                "method": layer.config.method,
                "d_in": layer.target.d_in,
                "d_out": layer.target.d_out,
                "stack": list(layer.target.stack),
            }
            for name, layer in layers.items()
        },
    }
