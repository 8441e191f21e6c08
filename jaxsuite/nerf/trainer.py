"""Training a field from posed images, and a timed loop shared with distillation.

The optimiser is PVD's: Adam (0.9, 0.99, eps 1e-15) with one learning rate for
grid/table tensors and one for network weights, both cosine-decayed to
``final_lr_factor`` times their start over the run. Each step draws ``B``
random rays from all training pixels (``fold_in(key, step)``, so a step is a
pure function of the state and the step number), renders them and minimises
the mean squared error. The occupancy grid is refreshed every
``occ_every`` steps; until ``occ_warmup`` it marks every cell occupied.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxsuite.core import cameras, finite, image
from jaxsuite.nerf import fields, occupancy, renderer
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


def make_optimizer(
    params: fields.Params, arch: str, oc: OptimConfig
) -> optax.GradientTransformation:
    """Adam(0.9, 0.99, 1e-15) with per-group cosine-decayed learning rates."""

    def adam(lr):
        sched = optax.cosine_decay_schedule(
            lr, max(oc.total_steps, 1), oc.final_lr_factor
        )
        return optax.adam(sched, b1=0.9, b2=0.99, eps=1e-15)

    labels = fields.param_labels(params, arch)
    return optax.multi_transform(
        {"grid": adam(oc.lr_grid), "net": adam(oc.lr_net)}, labels
    )


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
) -> Callable[[TrainState, jax.Array], tuple[TrainState, dict[str, jax.Array]]]:
    """A jitted ``step(state, step) -> (state, {"loss"})`` fitting ``rays``."""

    @jax.jit
    def step_fn(state: TrainState, step: jax.Array):
        k_ray, k_march = jax.random.split(jax.random.fold_in(key, step))
        idx = jax.random.randint(k_ray, (batch_rays,), 0, rays.rgb.shape[0])
        o, d, target = rays.origins[idx], rays.dirs[idx], rays.rgb[idx]
        bg = jnp.full(target.shape, background, jnp.float32)

        def loss_fn(p):
            rgb = renderer.render_rays(
                p, arch, cfg, state.occ.mask, o, d, k_march, num_samples, bg
            )
            return jnp.mean(jnp.square(rgb - target))

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        scalars = {"loss": loss, "grad_norm": optax.tree.norm(grads)}
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
) -> tuple[float, jax.Array]:
    """Mean PSNR (dB) over ``data``'s views, and the renders ``(N, H, W, 3)``."""
    size = data.images.shape[1]
    imgs = renderer.render_images(
        params, arch, cfg, occ_mask, data.poses, data.K, size, num_samples, background
    )
    return float(jnp.mean(image.psnr(jnp.clip(imgs, 0.0, 1.0), data.images))), imgs


@dataclasses.dataclass
class Curve:
    """Quality over training: parallel lists of step, seconds, PSNR."""

    steps: list[int] = dataclasses.field(default_factory=list)
    seconds: list[float] = dataclasses.field(default_factory=list)
    psnr: list[float] = dataclasses.field(default_factory=list)

    def add(self, step: int, seconds: float, psnr: float) -> None:
        self.steps.append(int(step))
        self.seconds.append(float(seconds))
        self.psnr.append(float(psnr))

    def to_dict(self) -> dict[str, list[float]]:
        return dataclasses.asdict(self)


def timed_loop(
    state: Any,
    step_fn: Callable[[Any, jax.Array], tuple[Any, dict[str, jax.Array]]],
    *,
    num_steps: int,
    eval_fn: Callable[[Any], float],
    eval_steps: tuple[int, ...],
    between: Callable[[Any, int], Any] | None = None,
    log: Callable[[str], None] | None = None,
    name: str = "",
) -> tuple[Any, Curve]:
    """Runs ``num_steps`` steps, evaluating at ``eval_steps`` (0 = before any).

    The clock counts only the optimisation (``step_fn`` and ``between``, the
    per-step extra work such as occupancy updates), not the evaluations nor
    the compilation of a jitted ``step_fn`` (compiled ahead of the loop).
    Every floating-point scalar of every step (loss, gradient norm) is
    watched on the device, without waiting for it, and checked at each
    evaluation and at the end.

    Returns:
      ``(state, curve)``.

    Raises:
      jaxsuite.core.finite.NonFiniteError: a scalar was NaN or infinite,
        naming the first such step and scalar (nothing is returned, so the
        caller saves nothing of this run).
    """
    curve = Curve()
    if hasattr(step_fn, "lower"):
        step_fn = step_fn.lower(state, jnp.asarray(1, jnp.int32)).compile()
    elapsed = 0.0
    evals = set(eval_steps)
    watch = finite.FiniteWatch(name)
    if 0 in evals:
        curve.add(0, 0.0, eval_fn(state))
    for step in range(1, num_steps + 1):
        t0 = time.perf_counter()
        state, scalars = step_fn(state, jnp.asarray(step, jnp.int32))
        watch.update(step, scalars)
        if between is not None:
            state = between(state, step)
        if step in evals or step == num_steps:
            jax.block_until_ready(state)
            elapsed += time.perf_counter() - t0
            watch.check()
            psnr = eval_fn(state)
            curve.add(step, elapsed, psnr)
            if log is not None:
                loss = float(np.asarray(scalars.get("loss", np.nan)))
                log(
                    f"step {step}/{num_steps} {elapsed:.1f}s loss={loss:.4g} "
                    f"psnr={psnr:.2f}"
                )
        else:
            elapsed += time.perf_counter() - t0
    return state, curve


def eval_schedule(num_steps: int, num_evals: int) -> tuple[int, ...]:
    """``num_evals`` evaluation steps spread geometrically over the run, plus 0."""
    pts = np.unique(np.round(np.geomspace(1, num_steps, num_evals)).astype(int))
    return (0, *[int(p) for p in pts])


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
    occ_resolution: int,
    occ_every: int = 16,
    occ_warmup: int = 64,
    occ_decay: float = 0.95,
    occ_threshold: float = 10.0,
    num_evals: int = 8,
    background: float = 1.0,
    log: Callable[[str], None] | None = None,
) -> tuple[TrainState, Curve]:
    """Trains ``arch`` from scratch on ``train`` for ``oc.total_steps`` steps.

    Returns:
      The final state and the curve of test PSNR against optimisation time.
    """
    k_init, k_data, k_occ = jax.random.split(key, 3)
    params = fields.init(k_init, arch, cfg)
    tx = make_optimizer(params, arch, oc)
    state = TrainState(params, tx.init(params), occupancy.init_grid(occ_resolution))
    step_fn = make_train_step(
        arch,
        cfg,
        tx,
        rays_of(train),
        k_data,
        batch_rays=batch_rays,
        num_samples=num_samples,
        background=background,
    )
    occ_update = make_occ_update(arch, cfg, decay=occ_decay, threshold=occ_threshold)
    occ_update = occ_update.lower(state.params, state.occ, k_occ).compile()

    def between(state: TrainState, step: int) -> TrainState:
        if step % occ_every:
            return state
        occ = occ_update(state.params, state.occ, jax.random.fold_in(k_occ, step))
        if step < occ_warmup:
            occ = occupancy.OccupancyGrid(occ.density, jnp.ones_like(occ.mask))
        return state._replace(occ=occ)

    def eval_fn(state: TrainState) -> float:
        return evaluate(
            state.params, arch, cfg, state.occ.mask, test, num_samples, background
        )[0]

    return timed_loop(
        state,
        step_fn,
        num_steps=oc.total_steps,
        eval_fn=eval_fn,
        eval_steps=eval_schedule(oc.total_steps, num_evals),
        between=between,
        log=log,
        name=f"training {arch} from scratch",
    )
