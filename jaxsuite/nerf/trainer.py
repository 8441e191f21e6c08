"""Training a field from posed images (the timed loop itself is ``loop``).

The optimiser is PVD's: Adam (0.9, 0.99, eps 1e-15) with one learning rate for
grid/table tensors and one for network weights, both cosine-decayed to
``final_lr_factor`` times their start over the run. The decay follows the
run's *progress* in ``[0, 1]``, an argument of every step: the fraction of a
wall-time budget spent (``loop.timed_loop(budget_s=...)``), or of the step count.
Each step draws ``B`` random rays from all training pixels (``fold_in(key,
step)``, so a step is a pure function of the state, the step number and the
progress), renders them with empty-space skipping (``buckets``, see
``renderer``) and minimises the mean squared error. The occupancy grid is
refreshed every ``OccConfig.every`` steps; until ``OccConfig.warmup`` it
marks every cell occupied.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxsuite.core import cameras, image, optim
from jaxsuite.nerf import fields, loop, occupancy, renderer
from jaxsuite.nerf.scenes import PosedImages


class TrainState(NamedTuple):
    """Parameters, optimiser state and occupancy grid of one field."""

    params: fields.Params
    opt_state: Any
    occ: occupancy.OccupancyGrid


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Learning rates (``grid`` tensors vs ``net`` weights) and schedule."""

    lr_grid: float = 1e-2
    lr_net: float = 1e-2
    final_lr_factor: float = 0.01
    total_steps: int = 1000


@dataclasses.dataclass(frozen=True)
class OccConfig:
    """The occupancy grid of a run from images.

    Attributes:
      resolution: R, the grid is ``(R, R, R)``.
      every: steps between refreshes from the field's density.
      warmup: before this step a refreshed grid marks every cell occupied.
      decay: density decay of a refresh (``occupancy.update``).
      threshold: density above which a cell is occupied.
    """

    resolution: int = 32
    every: int = 16
    warmup: int = 64
    decay: float = 0.95
    threshold: float = 10.0


def make_optimizer(
    params: fields.Params, arch: str, oc: OptimConfig
) -> optax.GradientTransformation:
    """Adam(0.9, 0.99, 1e-15) with per-group starting learning rates; the step
    functions scale its updates by :func:`lr_factor` of the progress."""

    def adam(lr):
        return optax.adam(lr, b1=0.9, b2=0.99, eps=1e-15)

    labels = fields.param_labels(params, arch)
    return optax.multi_transform(
        {"grid": adam(oc.lr_grid), "net": adam(oc.lr_net)}, labels
    )


def lr_factor(progress: jax.Array, final: float) -> jax.Array:
    """Cosine decay from 1 at ``progress = 0`` to ``final`` at ``progress >= 1``
    (optax's ``cosine_decay_schedule`` with the step fraction replaced by
    ``progress``)."""
    p = jnp.clip(jnp.asarray(progress, jnp.float32), 0.0, 1.0)
    return final + (1.0 - final) * 0.5 * (1.0 + jnp.cos(jnp.pi * p))


def apply_updates(params, grads, opt_state, tx, progress, final_lr_factor):
    """One optimiser update with the learning rates scaled by ``lr_factor``."""
    updates, opt_state = optim.update(tx, grads, opt_state, params)
    f = lr_factor(progress, final_lr_factor)
    updates = jax.tree.map(lambda u: u * f.astype(u.dtype), updates)
    return optax.apply_updates(params, updates), opt_state


class RayData(NamedTuple):
    """All training rays, flattened: ``origins, dirs, rgb`` each ``(R, 3)``."""

    origins: jax.Array
    dirs: jax.Array
    rgb: jax.Array


def rays_of(data: PosedImages) -> RayData:
    """Rays through every pixel of a posed image set."""
    n, h, w, _ = data.images.shape
    o, d = cameras.generate_rays(data.poses, data.K, w, h)
    return RayData(o.reshape(-1, 3), d.reshape(-1, 3), data.images.reshape(-1, 3))


def make_train_step(
    arch: str,
    cfg: fields.FieldConfig,
    tx: optax.GradientTransformation,
    rays: RayData,
    key: jax.Array,
    *,
    batch_rays: int,
    num_samples: int,
    background: float = 1.0,
    buckets: int = 1,
    final_lr_factor: float = 0.01,
) -> Callable[..., tuple[TrainState, dict[str, jax.Array]]]:
    """A jitted ``step(state, step, progress=0.0) -> (state, scalars)`` fitting
    ``rays`` (scalars: ``loss``, ``grad_norm``, ``valid_fraction``: the
    fraction of samples that reached the field)."""

    @jax.jit
    def step_fn(state: TrainState, step: jax.Array, progress=0.0):
        k_ray, k_march = jax.random.split(jax.random.fold_in(key, step))
        idx = jax.random.randint(k_ray, (batch_rays,), 0, rays.rgb.shape[0])
        o, d, target = rays.origins[idx], rays.dirs[idx], rays.rgb[idx]
        bg = jnp.full(target.shape, background, jnp.float32)
        samples = renderer.march(k_march, o, d, state.occ.mask, num_samples, cfg.bound)

        def loss_fn(p):
            out = renderer.query_samples(p, arch, cfg, samples, buckets)
            rgb = renderer.composite(out.log_sigma, out.rgb, samples, bg).rgb
            return jnp.mean(jnp.square(rgb - target))

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        params, opt_state = apply_updates(
            state.params, grads, state.opt_state, tx, progress, final_lr_factor
        )
        scalars = {
            "loss": loss,
            "grad_norm": optax.tree.norm(grads),
            "valid_fraction": jnp.mean(samples.valid.astype(jnp.float32)),
        }
        return TrainState(params, opt_state, state.occ), scalars

    return step_fn


def make_occ_update(
    arch: str, cfg: fields.FieldConfig, *, decay: float, threshold: float
) -> Callable[
    [fields.Params, occupancy.OccupancyGrid, jax.Array], occupancy.OccupancyGrid
]:
    """Jitted ``update(params, grid, key) -> grid`` using the field's density."""

    @jax.jit
    def update(params, grid, key):
        def sigma_fn(x):
            return fields.sigma_from_log(fields.log_sigma(params, arch, cfg, x))

        return occupancy.update(
            grid, sigma_fn, key, bound=cfg.bound, decay=decay, threshold=threshold
        )

    return update


def evaluate(
    params: fields.Params,
    arch: str,
    cfg: fields.FieldConfig,
    occ_mask: jax.Array,
    data: PosedImages,
    num_samples: int,
    background: float = 1.0,
    buckets: int = 1,
) -> tuple[float, jax.Array]:
    """Mean PSNR (dB) over ``data``'s views, and the renders ``(N, H, W, 3)``."""
    size = data.images.shape[1]
    imgs = renderer.render_images(
        params,
        arch,
        cfg,
        occ_mask,
        data.poses,
        data.K,
        size,
        num_samples,
        background,
        buckets=buckets,
    )
    return float(jnp.mean(image.psnr(jnp.clip(imgs, 0.0, 1.0), data.images))), imgs


def init_state(
    key: jax.Array,
    arch: str,
    cfg: fields.FieldConfig,
    oc: OptimConfig,
    occ_resolution: int,
) -> tuple[TrainState, optax.GradientTransformation]:
    """A fresh field, its optimiser state and an all-occupied grid
    ``(occ_resolution,) * 3``; and the optimiser."""
    params = fields.init(key, arch, cfg)
    tx = make_optimizer(params, arch, oc)
    return TrainState(params, tx.init(params), occupancy.init_grid(occ_resolution)), tx


class Trained(NamedTuple):
    """A from-scratch run: final state, its curve and the re-timed step
    seconds (``loop.retime``; empty when not re-timed)."""

    state: TrainState
    curve: loop.Curve
    step_seconds: list[float]


def train_from_images(
    key: jax.Array,
    arch: str,
    cfg: fields.FieldConfig,
    oc: OptimConfig,
    train: PosedImages,
    test: PosedImages,
    *,
    batch_rays: int,
    num_samples: int,
    occ: OccConfig,
    schedule: loop.Schedule,
    background: float = 1.0,
    buckets: int = 1,
    log: Callable[[str], None] | None = None,
) -> Trained:
    """Trains ``arch`` from scratch on ``train`` (images ``(N, H, W, 3)``,
    ``B = batch_rays`` random rays a step) for ``oc.total_steps`` steps or
    ``schedule.budget_s`` seconds of optimisation, whichever comes first,
    with an occupancy grid ``(occ.resolution,) * 3`` refreshed every
    ``occ.every`` steps.

    Returns:
      The final state, the curve of PSNR on ``test`` against optimisation
      time (evaluated as ``schedule`` says), and ``schedule.retime_repeats``
      re-timings of ``schedule.retime_steps`` steps (seconds per step).
    """
    k_init, k_data, k_occ = jax.random.split(key, 3)
    state, tx = init_state(k_init, arch, cfg, oc, occ.resolution)
    step_fn = make_train_step(
        arch,
        cfg,
        tx,
        rays_of(train),
        k_data,
        batch_rays=batch_rays,
        num_samples=num_samples,
        background=background,
        buckets=buckets,
        final_lr_factor=oc.final_lr_factor,
    )
    state, curve, timings = loop.scheduled_run(
        state,
        step_fn,
        schedule,
        num_steps=oc.total_steps,
        eval_fn=make_eval_fn(arch, cfg, test, num_samples, background, buckets),
        between=make_occ_refresh(arch, cfg, state, k_occ, occ),
        log=log,
        name=f"training {arch} from scratch",
    )
    return Trained(state, curve, timings)


def make_occ_refresh(
    arch: str,
    cfg: fields.FieldConfig,
    state: TrainState,
    key: jax.Array,
    occ: OccConfig,
) -> Callable[[TrainState, int], TrainState]:
    """``between(state, step) -> state`` for ``loop.timed_loop``: every
    ``occ.every`` steps, refreshes the occupancy grid from the field's density
    (``make_occ_update``, compiled here for ``state``'s shapes, with key
    ``fold_in(key, step)``); before step ``occ.warmup`` the refreshed grid
    keeps its density ``(R, R, R)`` but marks every cell occupied."""
    occ_update = make_occ_update(arch, cfg, decay=occ.decay, threshold=occ.threshold)
    occ_update = occ_update.lower(state.params, state.occ, key).compile()

    def between(state: TrainState, step: int) -> TrainState:
        if step % occ.every:
            return state
        grid = occ_update(state.params, state.occ, jax.random.fold_in(key, step))
        if step < occ.warmup:
            grid = occupancy.OccupancyGrid(grid.density, jnp.ones_like(grid.mask))
        return state._replace(occ=grid)

    return between


def make_eval_fn(
    arch: str,
    cfg: fields.FieldConfig,
    test: PosedImages,
    num_samples: int,
    background: float = 1.0,
    buckets: int = 1,
) -> Callable[[TrainState], float]:
    """``eval_fn(state) -> PSNR`` (dB) of :func:`evaluate` on ``test``'s views
    ``(N, H, W, 3)``, skipping the empty space of the state's own grid."""

    def eval_fn(state: TrainState) -> float:
        return evaluate(
            state.params,
            arch,
            cfg,
            state.occ.mask,
            test,
            num_samples,
            background,
            buckets=buckets,
        )[0]

    return eval_fn
