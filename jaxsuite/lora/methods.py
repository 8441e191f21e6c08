"""The five adapter methods as parameter specs plus a pure ``factors`` function.

Each method turns the layers it adapts into, per group of layers (see
``targets``), a dict of *shared* parameter specs (one array for the whole
group: MoS pools, Tied-LoRA's tied matrices, VeRA's frozen projections) and,
per layer, *local* specs (LoRA's A and B, MoS index sets, VeRA and Tied-LoRA
vectors, PRoLoRA chunks). ``factors(method, config, target, shared, local)``
maps one layer's arrays to the two matrices of its update in kernel order,

    A: (d_in, k),   B: (k, d_out),   delta_W = scale * A @ B,

so every method applies and merges the same way. Specs carry shapes only
until ``init`` is called, which lets ``count_trainable`` count LLaMA-size
adapters without allocating anything.

Random draws: initial values use ``jax.random.fold_in`` chains from
``config.seed``, the group's ordinal and the layer's index within its group;
MoS index sets use numpy generators seeded by the same numbers, so a scanned
(stacked) model and its unrolled twin get identical adapters.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxsuite.lora import config as config_lib
from jaxsuite.lora import targets as targets_lib
from jaxsuite.lora.targets import Target


@dataclasses.dataclass(frozen=True)
class Spec:
    """Shape, role and initialiser of one adapter array.

    ``init(key, layer)`` returns the array for one layer (``layer`` is the
    layer's index within its group; shared specs get ``layer=-1``).
    """

    shape: tuple[int, ...]
    trainable: bool
    init: Callable[[jax.Array, int], jax.Array]

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclasses.dataclass(frozen=True)
class GroupPlan:
    """Specs of one group: shared arrays and per-target local arrays.

    ``layer_ids[i]`` lists the group-level indices of the layers held by
    ``targets[i]`` (one per stack position).
    """

    group: str
    ordinal: int
    targets: tuple[Target, ...]
    layer_ids: tuple[tuple[int, ...], ...]
    shared: dict[str, Spec]
    local: tuple[dict[str, Spec], ...]


def _uniform(bound: float) -> Callable:
    def init(key, shape):
        return jax.random.uniform(key, shape, jnp.float32, -bound, bound)

    return init


def _zeros(key, shape):
    del key
    return jnp.zeros(shape, jnp.float32)


def _const(value: float) -> Callable:
    def init(key, shape):
        del key
        return jnp.full(shape, value, jnp.float32)

    return init


def _spec(shape, trainable, fn) -> Spec:
    shape = tuple(int(s) for s in shape)
    return Spec(shape, trainable, lambda key, layer: fn(key, shape))


def kaiming_bound(fan_in: int) -> float:
    """PyTorch's ``kaiming_uniform_(a=sqrt(5))`` bound, ``1 / sqrt(fan_in)``."""
    return 1.0 / math.sqrt(fan_in)


def _check_rank(t: Target, rank: int, method: str) -> None:
    if rank > min(t.d_in, t.d_out):
        raise ValueError(
            f"{method} rank {rank} is larger than layer {t.name} allows: its "
            f"kernel is {t.d_in} x {t.d_out} (input {t.in_shape}, output "
            f"{t.out_shape}), so the rank must be at most {min(t.d_in, t.d_out)}."
        )


def _check_same_shape(group: str, targets: Sequence[Target], method: str) -> None:
    shapes = {(t.d_in, t.d_out) for t in targets}
    if len(shapes) > 1:
        listing = ", ".join(f"{t.name}: {t.d_in}x{t.d_out}" for t in targets)
        raise ValueError(
            f"{method} shares parameters across the layers of group {group!r}, "
            f"but their shapes differ ({listing}). Adapt them with separate "
            "configs or choose target_modules that select equal shapes."
        )


# --------------------------------------------------------------------- specs


def _lora_specs(cfg, group, targets, n_layers):
    del group, n_layers
    local = []
    for t in targets:
        _check_rank(t, cfg.rank, "LoRA")
        local.append(
            {
                "lora_a": _spec(
                    (t.d_in, cfg.rank), True, _uniform(kaiming_bound(t.d_in))
                ),
                "lora_b": _spec((cfg.rank, t.d_out), True, _zeros),
            }
        )
    return {}, local


def _mos_specs(cfg, group, targets, n_layers, ordinal=0):
    r, e, p, sh = cfg.rank, cfg.equivalent_rank, cfg.private_rank, cfg.shards_per_vector
    _check_same_shape(group, targets, "MoS")
    t0 = targets[0]
    for t in targets:
        _check_rank(t, r, "MoS")
        if t.d_in % sh or t.d_out % sh:
            raise ValueError(
                f"MoS shards_per_vector={sh} must divide d_in={t.d_in} and "
                f"d_out={t.d_out} of layer {t.name}."
            )
    n_public = (e - p) * n_layers * sh
    if (r - p) * sh > n_public:
        raise ValueError(
            f"MoS rank {r} needs {(r - p) * sh} public shards per layer but the "
            f"public pool of group {group!r} holds only {n_public} "
            f"((e - p) * L * l with e={e}, p={p}, L={n_layers}, l={sh})."
        )
    n_pool = e * n_layers * sh
    shared = {
        "pool_a": _spec(
            (n_pool, t0.d_in // sh), True, _uniform(kaiming_bound(t0.d_in))
        ),
        "pool_b": _spec((n_pool, t0.d_out // sh), True, _zeros),
    }

    def index_spec(which):
        def init(key, layer):
            del key
            return jnp.asarray(
                mos_indices(cfg, ordinal, n_layers, layer, which), dtype=jnp.int32
            )

        return Spec((r * sh,), False, init)

    local = [{"idx_a": index_spec(0), "idx_b": index_spec(1)} for _ in targets]
    return shared, local


def mos_indices(
    cfg: config_lib.MoSConfig, ordinal: int, n_layers: int, layer: int, which: int
) -> np.ndarray:
    """Shard indices of one layer: (r * l,) int32, public part then private.

    Args:
      cfg: the MoS config (r, e, p, l, seed, strategy switches).
      ordinal: the group's ordinal (seeds the draw with ``cfg.seed``).
      n_layers: L, the layers sharing the pool.
      layer: this layer's index k in [0, L).
      which: 0 for A's draw, 1 for B's (B reuses 0 without pair dissociation).

    The public part is ``randperm((e - p) L l)[:(r - p) l]`` (no repeats
    within a layer; without subset selection every layer takes the first
    ``(r - p) l`` shards); the private part is the block
    ``(e - p) L l + [k p l, (k + 1) p l)``, which no other layer uses.
    """
    r, e, p, sh = cfg.rank, cfg.equivalent_rank, cfg.private_rank, cfg.shards_per_vector
    n_public = (e - p) * n_layers * sh
    n_pick = (r - p) * sh
    which = which if cfg.pair_dissociation else 0
    if n_pick and cfg.subset_selection:
        rng = np.random.default_rng([cfg.seed, ordinal, layer, which])
        public = rng.permutation(n_public)[:n_pick]
    else:
        public = np.arange(n_pick)
    private = n_public + np.arange(layer * p * sh, (layer + 1) * p * sh)
    return np.concatenate([public, private]).astype(np.int32)


def _vera_specs(cfg, group, targets, n_layers, all_targets):
    del group, n_layers
    d_in = max(t.d_in for t in all_targets)
    d_out = max(t.d_out for t in all_targets)
    shared = {
        "proj_a": _spec((d_in, cfg.rank), False, _uniform(kaiming_bound(d_in))),
        "proj_b": _spec((cfg.rank, d_out), False, _uniform(kaiming_bound(cfg.rank))),
    }
    local = [
        {
            "vera_d": _spec((cfg.rank,), True, _const(cfg.d_initial)),
            "vera_b": _spec((t.d_out,), True, _zeros),
        }
        for t in targets
    ]
    return shared, local


def _tied_specs(cfg, group, targets, n_layers):
    del n_layers
    _check_same_shape(group, targets, "Tied-LoRA")
    t0 = targets[0]
    for t in targets:
        _check_rank(t, cfg.rank, "Tied-LoRA")
    shared = {
        "tied_a": _spec((t0.d_in, cfg.rank), True, _uniform(kaiming_bound(t0.d_in))),
        "tied_b": _spec((cfg.rank, t0.d_out), True, _uniform(kaiming_bound(cfg.rank))),
    }
    local = [
        {
            "tied_u": _spec((cfg.rank,), True, _const(1.0)),
            "tied_v": _spec((t.d_out,), True, _zeros),
        }
        for t in targets
    ]
    return shared, local


def _prolora_specs(cfg, group, targets, n_layers):
    del group, n_layers
    r, u = cfg.rank, cfg.unshared_rank
    rs = r - u
    local = []
    for t in targets:
        _check_rank(t, r, "PRoLoRA")
        if cfg.sharing_a > t.d_in or cfg.sharing_b > t.d_out:
            raise ValueError(
                f"PRoLoRA sharing ({cfg.sharing_a}, {cfg.sharing_b}) exceeds the "
                f"dimensions {t.d_in} x {t.d_out} of layer {t.name}."
            )
        bound = kaiming_bound(t.d_in)
        specs = {}
        if rs:
            specs["chunk_a"] = _spec(
                (math.ceil(t.d_in / cfg.sharing_a), rs), True, _uniform(bound)
            )
            specs["chunk_b"] = _spec(
                (rs, math.ceil(t.d_out / cfg.sharing_b)), True, _zeros
            )
        if u:
            specs["unshared_a"] = _spec((t.d_in, u), True, _uniform(bound))
            specs["unshared_b"] = _spec((u, t.d_out), True, _zeros)
        local.append(specs)
    return {}, local


def plan(cfg: config_lib.AdapterConfig, targets: Sequence[Target]) -> list[GroupPlan]:
    """Groups ``targets`` and builds every spec (no arrays are made).

    Raises:
      ValueError: a rank or shard count does not fit a layer, naming it.
    """
    groups = targets_lib.group_targets(targets)
    if cfg.method == "vera":  # one pair of projections for the whole model
        groups = {"*": list(targets)}
    plans = []
    for ordinal, (group, members) in enumerate(groups.items()):
        n_layers = sum(t.n_layers for t in members)
        if cfg.method == "lora":
            shared, local = _lora_specs(cfg, group, members, n_layers)
        elif cfg.method == "mos":
            shared, local = _mos_specs(cfg, group, members, n_layers, ordinal)
        elif cfg.method == "vera":
            shared, local = _vera_specs(cfg, group, members, n_layers, targets)
        elif cfg.method == "tied_lora":
            shared, local = _tied_specs(cfg, group, members, n_layers)
        elif cfg.method == "prolora":
            shared, local = _prolora_specs(cfg, group, members, n_layers)
        else:
            raise ValueError(f"Unknown adapter method {cfg.method!r}.")
        ids, start = [], 0
        for t in members:
            ids.append(tuple(range(start, start + t.n_layers)))
            start += t.n_layers
        plans.append(
            GroupPlan(group, ordinal, tuple(members), tuple(ids), shared, tuple(local))
        )
    return plans


def count_trainable(cfg: config_lib.AdapterConfig, targets: Sequence[Target]) -> int:
    """Trainable adapter parameters of ``cfg`` on ``targets``, from shapes alone."""
    total = 0
    for gp in plan(cfg, targets):
        total += sum(s.size for s in gp.shared.values() if s.trainable)
        for t, local in zip(gp.targets, gp.local):
            total += t.n_layers * sum(s.size for s in local.values() if s.trainable)
    return total


def count_from_shapes(
    cfg: config_lib.AdapterConfig, shapes: dict[str, tuple[int, int]]
) -> int:
    """Trainable count for layers given as ``{dotted name: (d_in, d_out)}``.

    Only names matching ``cfg.target_modules`` count.
    """
    targets = [
        targets_lib.matrix_target(name, d_in, d_out)
        for name, (d_in, d_out) in shapes.items()
        if targets_lib.matches_any(name, cfg.target_modules)
    ]
    if not targets:
        raise ValueError(
            f"target_modules {list(cfg.target_modules)} match none of "
            f"{targets_lib.describe_names(list(shapes))}"
        )
    return count_trainable(cfg, targets)


def init_array(
    cfg: config_lib.AdapterConfig,
    gp: GroupPlan,
    name: str,
    spec: Spec,
    layers: tuple[int, ...] | None = None,
    stack: tuple[int, ...] = (),
) -> jax.Array:
    """Initial value of one spec, shared (``layers=None``) or local.

    A local spec gets one array per layer in ``layers`` (group-level
    indices), stacked and reshaped to ``stack + spec.shape``; with
    ``stack == ()`` there is exactly one layer and no stack axis.
    """
    slot = _slot(name)
    base = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), gp.ordinal)
    if layers is None:
        return spec.init(jax.random.fold_in(jax.random.fold_in(base, 0), slot), -1)
    arrays = [
        spec.init(jax.random.fold_in(jax.random.fold_in(base, k + 1), slot), k)
        for k in layers
    ]
    if not stack:
        return arrays[0]
    return jnp.stack(arrays).reshape(*stack, *spec.shape)


def _slot(name: str) -> int:
    return sum((i + 1) * ord(c) for i, c in enumerate(name))


# ------------------------------------------------------------------- factors


def _rotated_broadcast(chunk: jax.Array, copies: int, shift: int, rotate: bool):
    """(c, k) -> (copies * c, k): copy i rolled by ``-i * shift`` along k."""
    parts = [
        jnp.roll(chunk, -i * shift, axis=1) if rotate else chunk for i in range(copies)
    ]
    return jnp.concatenate(parts, axis=0)


def factors(
    cfg: config_lib.AdapterConfig, target: Target, shared: dict, local: dict
) -> tuple[jax.Array, jax.Array]:
    """One layer's update factors: A (d_in, k), B (k, d_out).

    ``shared`` and ``local`` map spec names to arrays of one (unstacked)
    layer. The update is ``cfg.scale * A @ B``.
    """
    m = cfg.method
    if m == "lora":
        return local["lora_a"], local["lora_b"]
    if m == "mos":
        r = cfg.rank
        a = jnp.take(shared["pool_a"], local["idx_a"], axis=0).reshape(r, target.d_in)
        b = jnp.take(shared["pool_b"], local["idx_b"], axis=0).reshape(r, target.d_out)
        return a.T, b
    if m == "vera":
        a = shared["proj_a"][: target.d_in] * local["vera_d"][None, :]
        b = shared["proj_b"][:, : target.d_out] * local["vera_b"][None, :]
        return a, b
    if m == "tied_lora":
        a = shared["tied_a"] * local["tied_u"][None, :]
        b = shared["tied_b"] * local["tied_v"][None, :]
        return a, b
    if m == "prolora":
        rs = cfg.rank - cfg.unshared_rank
        a_parts, b_parts = [], []
        if rs:
            shift_a = max(rs // cfg.sharing_a, 1)
            shift_b = max(rs // cfg.sharing_b, 1)
            full_a = _rotated_broadcast(
                local["chunk_a"], cfg.sharing_a, shift_a, cfg.rotation
            )
            full_bt = _rotated_broadcast(
                local["chunk_b"].T, cfg.sharing_b, shift_b, cfg.rotation
            )
            a_parts.append(full_a[: target.d_in])
            b_parts.append(full_bt[: target.d_out].T)
        if cfg.unshared_rank:
            a_parts.append(local["unshared_a"])
            b_parts.append(local["unshared_b"])
        return jnp.concatenate(a_parts, axis=1), jnp.concatenate(b_parts, axis=0)
    raise ValueError(f"Unknown adapter method {m!r}.")
