"""Training a field from posed images, and a timed loop shared with distillation.

The optimiser is PVD's: Adam (0.9, 0.99, eps 1e-15) with one learning rate for
grid/table tensors and one for network weights, both cosine-decayed to
``final_lr_factor`` times their start over the run. The decay follows the
run's *progress* in ``[0, 1]``, an argument of every step: the fraction of a
wall-time budget spent (``timed_loop(budget_s=...)``), or of the step count.
Each step draws ``B`` random rays from all training pixels (``fold_in(key,
step)``, so a step is a pure function of the state, the step number and the
progress), renders them with empty-space skipping (``buckets``, see
``renderer``) and minimises the mean squared error. The occupancy grid is
refreshed every ``occ_every`` steps; until ``occ_warmup`` it marks every cell
occupied.
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
    updates, opt_state = tx.update(grads, opt_state, params)
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


@dataclasses.dataclass
class Curve:
    """Quality over training: parallel lists of step, seconds, PSNR and the
    fraction of samples evaluated by the field at that step (empty-space
    skipping; ``1.0`` when unknown)."""

    steps: list[int] = dataclasses.field(default_factory=list)
    seconds: list[float] = dataclasses.field(default_factory=list)
    psnr: list[float] = dataclasses.field(default_factory=list)
    valid_fraction: list[float] = dataclasses.field(default_factory=list)

    def add(self, step: int, seconds: float, psnr: float, frac: float = 1.0) -> None:
        self.steps.append(int(step))
        self.seconds.append(float(seconds))
        self.psnr.append(float(psnr))
        self.valid_fraction.append(float(frac))

    def to_dict(self) -> dict[str, list[float]]:
        return dataclasses.asdict(self)


def compile_step(step_fn, state):
    """Compiles a jitted ``step(state, step, progress)`` ahead of timing."""
    if hasattr(step_fn, "lower"):
        return step_fn.lower(
            state, jnp.asarray(1, jnp.int32), jnp.asarray(0.0, jnp.float32)
        ).compile()
    return step_fn


def timed_loop(
    state: Any,
    step_fn: Callable[..., tuple[Any, dict[str, jax.Array]]],
    *,
    eval_fn: Callable[[Any], float],
    num_steps: int | None = None,
    budget_s: float | None = None,
    eval_steps: tuple[int, ...] = (),
    eval_seconds: tuple[float, ...] = (),
    between: Callable[[Any, int], Any] | None = None,
    log: Callable[[str], None] | None = None,
    name: str = "",
) -> tuple[Any, Curve]:
    """Runs ``step_fn(state, step, progress)`` until ``num_steps`` steps or
    ``budget_s`` seconds of optimisation, whichever comes first.

    ``progress`` is the fraction of ``budget_s`` spent before the step (or of
    ``num_steps`` without a budget): it drives the learning-rate decay, so a
    wall-time budget ends its schedule at the budget. The clock counts only
    the optimisation (``step_fn`` and ``between``, the per-step extra work such
    as occupancy updates), waiting for each step to finish, not the
    evaluations nor the compilation of a jitted ``step_fn`` (compiled ahead of
    the loop). The state is evaluated before the first step when ``0`` is in
    ``eval_steps``, after each step in ``eval_steps``, after the first step
    that ends at or past each of ``eval_seconds``, and at the end. Every
    floating-point scalar of every step is watched and checked at each
    evaluation and at the end.

    Returns:
      ``(state, curve)``.

    Raises:
      ValueError: neither ``num_steps`` nor ``budget_s`` is given.
      jaxsuite.core.finite.NonFiniteError: a scalar was NaN or infinite,
        naming the first such step and scalar (nothing is returned, so the
        caller saves nothing of this run).
    """
    if num_steps is None and budget_s is None:
        raise ValueError("timed_loop needs num_steps or budget_s.")
    curve = Curve()
    step_fn = compile_step(step_fn, state)
    elapsed = 0.0
    evals = set(eval_steps)
    marks = sorted(s for s in eval_seconds if budget_s is None or s < budget_s)
    watch = finite.FiniteWatch(name)
    if 0 in evals:
        curve.add(0, 0.0, eval_fn(state))
    step = 0
    while True:
        step += 1
        if budget_s is not None:
            progress = min(elapsed / budget_s, 1.0)
        else:
            progress = (step - 1) / max(num_steps, 1)
        t0 = time.perf_counter()
        state, scalars = step_fn(
            state, jnp.asarray(step, jnp.int32), jnp.asarray(progress, jnp.float32)
        )
        if between is not None:
            state = between(state, step)
        jax.block_until_ready(state)
        elapsed += time.perf_counter() - t0
        watch.update(step, scalars)
        done = (num_steps is not None and step >= num_steps) or (
            budget_s is not None and elapsed >= budget_s
        )
        crossed = False
        while marks and elapsed >= marks[0]:
            marks.pop(0)
            crossed = True
        if step in evals or crossed or done:
            watch.check()
            psnr = eval_fn(state)
            frac = float(np.asarray(scalars.get("valid_fraction", 1.0)))
            curve.add(step, elapsed, psnr, frac)
            if log is not None:
                loss = float(np.asarray(scalars.get("loss", np.nan)))
                log(
                    f"step {step} {elapsed:.1f}s loss={loss:.4g} "
                    f"psnr={psnr:.2f} evaluated={frac:.3f}"
                )
        if done:
            return state, curve


def retime(
    state: Any,
    step_fn: Callable[..., tuple[Any, dict[str, jax.Array]]],
    *,
    steps: int,
    repeats: int,
    between: Callable[[Any, int], Any] | None = None,
    first_step: int = 1,
) -> list[float]:
    """Seconds per step of ``step_fn`` (and ``between``), timed ``repeats``
    times over ``steps`` steps each from ``state`` (which is left unchanged):
    the spread of these is the timing noise of the machine."""
    step_fn = compile_step(step_fn, state)
    out = []
    for _ in range(repeats):
        s = state
        t0 = time.perf_counter()
        for k in range(first_step, first_step + steps):
            s, _ = step_fn(s, jnp.asarray(k, jnp.int32), jnp.asarray(0.5, jnp.float32))
            if between is not None:
                s = between(s, k)
        jax.block_until_ready(s)
        out.append((time.perf_counter() - t0) / steps)
    return out


def eval_schedule(num_steps: int, num_evals: int) -> tuple[int, ...]:
    """``num_evals`` evaluation steps spread geometrically over the run, plus 0."""
    pts = np.unique(np.round(np.geomspace(1, num_steps, num_evals)).astype(int))
    return (0, *[int(p) for p in pts])


def eval_marks(
    budget_s: float, num_evals: int, first: float = 1.0
) -> tuple[float, ...]:
    """``num_evals`` evaluation times spread geometrically from ``first`` to
    ``budget_s`` seconds."""
    first = min(first, budget_s)
    return tuple(float(t) for t in np.geomspace(first, budget_s, num_evals))


class Trained(NamedTuple):
    """A from-scratch run: final state, its curve and the re-timed step
    seconds (``retime``; empty when not re-timed)."""

    state: TrainState
    curve: Curve
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
    occ_resolution: int,
    occ_every: int = 16,
    occ_warmup: int = 64,
    occ_decay: float = 0.95,
    occ_threshold: float = 10.0,
    num_evals: int = 8,
    background: float = 1.0,
    buckets: int = 1,
    budget_s: float | None = None,
    eval_seconds: tuple[float, ...] = (),
    retime_steps: int = 0,
    retime_repeats: int = 0,
    log: Callable[[str], None] | None = None,
) -> Trained:
    """Trains ``arch`` from scratch on ``train`` for ``oc.total_steps`` steps
    or ``budget_s`` seconds of optimisation, whichever comes first.

    Returns:
      The final state, the curve of test PSNR against optimisation time, and
      ``retime_repeats`` re-timings of ``retime_steps`` steps (seconds per
      step).
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
        buckets=buckets,
        final_lr_factor=oc.final_lr_factor,
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
            state.params,
            arch,
            cfg,
            state.occ.mask,
            test,
            num_samples,
            background,
            buckets=buckets,
        )[0]

    step_fn = compile_step(step_fn, state)
    state, curve = timed_loop(
        state,
        step_fn,
        num_steps=oc.total_steps,
        budget_s=budget_s,
        eval_fn=eval_fn,
        eval_steps=(0,) if budget_s else eval_schedule(oc.total_steps, num_evals),
        eval_seconds=eval_seconds,
        between=between,
        log=log,
        name=f"training {arch} from scratch",
    )
    timings = []
    if retime_steps > 0 and retime_repeats > 0:
        timings = retime(
            state,
            step_fn,
            steps=retime_steps,
            repeats=retime_repeats,
            between=between,
            first_step=curve.steps[-1] + 1,
        )
    return Trained(state, curve, timings)
