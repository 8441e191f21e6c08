"""The timed optimisation loop shared by training from images and distillation.

``timed_loop`` runs a jitted ``step(state, step, progress) -> (state,
scalars)`` until a step count or a wall-time budget of optimisation is spent,
evaluating the state at given steps and wall-time marks into a ``Curve``;
``retime`` times a step function again from a fixed state, so the spread of
seconds per step measures the machine's timing noise; ``scheduled_run`` does
both as a ``Schedule`` says. The clock
(``jaxsuite.core.phases.Stopwatch``) counts only the steps (and the per-step
extra work ``between``), never compilation or evaluation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxsuite.core import finite, phases


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


@dataclasses.dataclass(frozen=True)
class Schedule:
    """When a timed run stops, is evaluated and is re-timed afterwards.

    Attributes:
      budget_s: seconds of optimisation (None: only the step count stops it).
      eval_seconds: wall-time evaluation marks (seconds).
      num_evals: evaluations spread over the steps of a run without a budget.
      retime_steps: steps of each re-timing after the run (0: none).
      retime_repeats: re-timings after the run (0: none).
    """

    budget_s: float | None = None
    eval_seconds: tuple[float, ...] = ()
    num_evals: int = 8
    retime_steps: int = 0
    retime_repeats: int = 0

    def eval_steps(self, num_steps: int) -> tuple[int, ...]:
        """Evaluation steps of a run of ``num_steps`` steps: only step 0
        under a budget (the wall-time marks take over), else
        :func:`eval_schedule`."""
        if self.budget_s:
            return (0,)
        return eval_schedule(num_steps, self.num_evals)


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
    watch = phases.Stopwatch()
    evals = set(eval_steps)
    marks = sorted(s for s in eval_seconds if budget_s is None or s < budget_s)
    finite_watch = finite.FiniteWatch(name)
    if 0 in evals:
        curve.add(0, 0.0, eval_fn(state))
    step = 0
    while True:
        step += 1
        progress = _progress(step, watch.elapsed, num_steps, budget_s)
        watch.start()
        state, scalars = step_fn(
            state, jnp.asarray(step, jnp.int32), jnp.asarray(progress, jnp.float32)
        )
        if between is not None:
            state = between(state, step)
        watch.stop(state)
        elapsed = watch.elapsed
        finite_watch.update(step, scalars)
        done = (num_steps is not None and step >= num_steps) or (
            budget_s is not None and elapsed >= budget_s
        )
        crossed = _pop_marks(marks, elapsed)
        if step in evals or crossed or done:
            finite_watch.check()
            _record(curve, eval_fn(state), step, elapsed, scalars, log)
        if done:
            return state, curve


def _progress(
    step: int, elapsed: float, num_steps: int | None, budget_s: float | None
) -> float:
    """Fraction of the budget (else of the steps) spent before 1-based ``step``."""
    if budget_s is not None:
        return min(elapsed / budget_s, 1.0)
    return (step - 1) / max(num_steps, 1)


def _pop_marks(marks: list[float], elapsed: float) -> bool:
    """Drops the sorted ``marks`` reached by ``elapsed``; whether there were any."""
    crossed = False
    while marks and elapsed >= marks[0]:
        marks.pop(0)
        crossed = True
    return crossed


def _record(
    curve: Curve,
    psnr: float,
    step: int,
    elapsed: float,
    scalars: dict[str, jax.Array],
    log: Callable[[str], None] | None,
) -> None:
    """Adds an evaluation to ``curve`` (with the step's ``valid_fraction``)
    and logs it with the step's ``loss``."""
    frac = float(np.asarray(scalars.get("valid_fraction", 1.0)))
    curve.add(step, elapsed, psnr, frac)
    if log is not None:
        loss = float(np.asarray(scalars.get("loss", np.nan)))
        log(
            f"step {step} {elapsed:.1f}s loss={loss:.4g} "
            f"psnr={psnr:.2f} evaluated={frac:.3f}"
        )


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
        s, watch = state, phases.Stopwatch()
        watch.start()
        for k in range(first_step, first_step + steps):
            s, _ = step_fn(s, jnp.asarray(k, jnp.int32), jnp.asarray(0.5, jnp.float32))
            if between is not None:
                s = between(s, k)
        out.append(watch.stop(s) / steps)
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


def retime_after(
    state: Any,
    step_fn: Callable[..., tuple[Any, dict[str, jax.Array]]],
    curve: Curve,
    *,
    steps: int,
    repeats: int,
    between: Callable[[Any, int], Any] | None = None,
) -> list[float]:
    """:func:`retime` from the end of a run whose curve is ``curve`` (steps
    numbered on from its last one); ``[]`` when ``steps`` or ``repeats`` is 0."""
    if steps <= 0 or repeats <= 0:
        return []
    return retime(
        state,
        step_fn,
        steps=steps,
        repeats=repeats,
        between=between,
        first_step=curve.steps[-1] + 1,
    )


def scheduled_run(
    state: Any,
    step_fn: Callable[..., tuple[Any, dict[str, jax.Array]]],
    schedule: Schedule,
    *,
    num_steps: int,
    eval_fn: Callable[[Any], float],
    between: Callable[[Any, int], Any] | None = None,
    log: Callable[[str], None] | None = None,
    name: str = "",
) -> tuple[Any, Curve, list[float]]:
    """:func:`timed_loop` for ``num_steps`` steps or ``schedule.budget_s``
    seconds, evaluated as ``schedule`` says, then :func:`retime_after`.

    Returns:
      ``(state, curve, seconds per step of each re-timing)``.
    """
    step_fn = compile_step(step_fn, state)
    state, curve = timed_loop(
        state,
        step_fn,
        num_steps=num_steps,
        budget_s=schedule.budget_s,
        eval_fn=eval_fn,
        eval_steps=schedule.eval_steps(num_steps),
        eval_seconds=schedule.eval_seconds,
        between=between,
        log=log,
        name=name,
    )
    timings = retime_after(
        state,
        step_fn,
        curve,
        steps=schedule.retime_steps,
        repeats=schedule.retime_repeats,
        between=between,
    )
    return state, curve, timings
