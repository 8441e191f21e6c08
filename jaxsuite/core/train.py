"""Experiment-runner pieces: workdirs, Orbax checkpoints, resume, progress, loop.

A run owns a ``workdir``. On first use the run's config is written to
``workdir/config.json``; a later run on the same workdir resumes from the
latest checkpoint, and refuses (``ConfigMismatchError``) when its config
differs from the stored one, since mixing two configs in one run gives results
nobody can reproduce.

Resumption is exact when the step function is a pure function of
``(state, step)``: draw each step's data and randomness from
``jax.random.fold_in(key, step)``, so a restored state at step ``s`` continues
exactly as the uninterrupted run did.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from jaxsuite.core import config as config_lib
from jaxsuite.core import metrics as metrics_lib

CONFIG_FILE = "config.json"
# Fields that may change between a run and its resumption: they name or
# pace the run but do not change what it computes.
RESUME_IGNORED = ("preset", "log_every", "checkpoint_every", "step_delay")


class ConfigMismatchError(ValueError):
    """A workdir was made with another config."""


def _diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    old_f = metrics_lib.flatten_dict(old)
    new_f = metrics_lib.flatten_dict(new)
    lines = []
    for key in sorted(set(old_f) | set(new_f)):
        if key.split(".")[-1] in RESUME_IGNORED:
            continue
        a, b = old_f.get(key, "<absent>"), new_f.get(key, "<absent>")
        if a != b:
            lines.append(f"  {key}: workdir has {a!r}, this run has {b!r}")
    return lines


def prepare_workdir(workdir: str, config: Any) -> bool:
    """Creates ``workdir`` or checks that it was made with ``config``.

    Returns:
      True when ``workdir`` already held a run of this config (so the caller
      should resume), False for a fresh workdir.

    Raises:
      ConfigMismatchError: the workdir holds a run of a different config.
    """
    path = os.path.join(workdir, CONFIG_FILE)
    new = config_lib.to_dict(config)
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        lines = _diff(old, new)
        if lines:
            raise ConfigMismatchError(
                f"Refusing to resume {workdir}: it was made with a different "
                "config.\n" + "\n".join(lines) + "\nUse a new --workdir, or delete "
                "this one to start over."
            )
        return True
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        with open(path + ".tmp", "w") as f:
            json.dump(new, f, indent=2)
        os.replace(path + ".tmp", path)
    return False


class Checkpointer:
    """Orbax ``CheckpointManager`` for one pytree state, saved every N steps.

    Args:
      directory: where checkpoints go (made absolute).
      every: save when ``step % every == 0``; ``save(..., force=True)`` saves
        any step (use it for the last one).
      max_to_keep: number of checkpoints kept.
    """

    def __init__(self, directory: str, *, every: int, max_to_keep: int = 2):
        if every <= 0:
            raise ValueError(f"checkpoint interval must be positive, got {every}")
        self.every = every
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, save_interval_steps=every, create=True
        )
        self._manager = ocp.CheckpointManager(
            os.path.abspath(directory), options=options
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def restore_or(self, state: Any) -> tuple[Any, int]:
        """Restores the latest checkpoint into ``state``'s structure.

        Args:
          state: a pytree shaped like the saved one (its values are ignored
            when a checkpoint exists; shardings and dtypes are kept).

        Returns:
          ``(state, step)``: the restored state and its step, or the given
          state and 0 when there is no checkpoint.
        """
        step = self._manager.latest_step()
        if step is None:
            return state, 0
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
        restored = self._manager.restore(step, args=ocp.args.StandardRestore(target))
        logging.info("Resumed from the checkpoint at step %d.", step)
        return restored, int(step)

    def save(self, step: int, state: Any, *, force: bool = False) -> bool:
        """Saves ``state`` at ``step`` if due (or ``force``); returns whether it did."""
        return self._manager.save(step, args=ocp.args.StandardSave(state), force=force)

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


def _fmt_seconds(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class Progress:
    """Logs ``step k/N | steps/s | ETA | metrics`` at most every ``interval`` s.

    Args:
      total: the last step.
      start: the step the run (re)starts from.
      interval: minimum seconds between lines (the last step always logs).
      name: prefix for each line.
      printer: where lines go (default: absl ``logging.info``).
    """

    def __init__(
        self,
        total: int,
        *,
        start: int = 0,
        interval: float = 5.0,
        name: str = "train",
        printer: Callable[[str], None] | None = None,
    ):
        self.total, self.start, self.interval, self.name = total, start, interval, name
        self._print = printer or (lambda line: logging.info("%s", line))
        self._t0 = time.perf_counter()
        self._last = -float("inf")

    def rate(self, step: int) -> float:
        elapsed = time.perf_counter() - self._t0
        return (step - self.start) / elapsed if elapsed > 0 else float("nan")

    def update(self, step: int, scalars: Mapping[str, Any] | None = None) -> str | None:
        """Reports progress after finishing ``step``; returns the line if printed."""
        now = time.perf_counter()
        if now - self._last < self.interval and step < self.total:
            return None
        self._last = now
        rate = self.rate(step)
        eta = (self.total - step) / rate if rate > 0 else float("nan")
        line = (
            f"{self.name} step {step}/{self.total} | {rate:.2f} steps/s | "
            f"ETA {_fmt_seconds(eta)}"
        )
        if scalars:
            vals = {k: float(np.asarray(v)) for k, v in scalars.items()}
            line += " | " + " ".join(f"{k}={v:.4g}" for k, v in vals.items())
        self._print(line)
        return line


def train_loop(
    state: Any,
    step_fn: Callable[[Any, int], tuple[Any, Mapping[str, Any]]],
    *,
    num_steps: int,
    workdir: str,
    checkpoint_every: int,
    writer: metrics_lib.MetricWriter | None = None,
    log_every: int = 50,
    name: str = "train",
    hooks: tuple[Callable[[int, Any], None], ...] = (),
    step_delay: float = 0.0,
) -> Any:
    """Runs ``state = step_fn(state, step)`` for steps ``1..num_steps``, resumably.

    The latest checkpoint in ``workdir/checkpoints/<name>`` is restored first;
    a checkpoint is saved every ``checkpoint_every`` steps and at the end.

    Args:
      state: the initial pytree state (used as the restore target).
      step_fn: ``(state, step) -> (state, scalars)``; step counts from 1.
        Make it depend on nothing but its arguments for exact resumption.
      num_steps: the last step.
      workdir: the run's directory.
      checkpoint_every: checkpoint interval in steps.
      writer: receives the scalars every ``log_every`` steps.
      log_every: metric interval in steps.
      name: names the checkpoint folder and progress lines, so one run can hold
        several loops (e.g. a teacher then a student).
      hooks: ``hook(step, state)`` called after every step (evaluation, plots).
      step_delay: seconds to sleep after each step (to watch or interrupt a
        tiny run; 0 in real runs).

    Returns:
      The final state.
    """
    ckpt = Checkpointer(
        os.path.join(workdir, "checkpoints", name), every=checkpoint_every
    )
    try:
        state, start = ckpt.restore_or(state)
        progress = Progress(num_steps, start=start, name=name)
        for step in range(start + 1, num_steps + 1):
            state, scalars = step_fn(state, step)
            if writer is not None and (step % log_every == 0 or step == num_steps):
                writer.write_scalars(step, scalars)
            progress.update(step, scalars)
            for hook in hooks:
                hook(step, state)
            ckpt.save(step, state, force=step == num_steps)
            if step_delay:
                time.sleep(step_delay)
        if writer is not None:
            writer.flush()
    finally:
        ckpt.close()
    return state
