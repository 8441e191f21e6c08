"""Experiment-runner pieces: workdirs, Orbax checkpoints, resume, progress, loop.

A run owns a ``workdir``, locked for the run's process (a second run on it
fails at once with ``WorkdirBusyError`` naming the holder's pid; see
``jaxsuite.core.workdir``). On first use the run's config, already validated
by ``build_config``, is written to ``workdir/config.json``; a later run on the
same workdir resumes from the latest checkpoint, and refuses
(``ConfigMismatchError``) when its config differs from the stored one, since
mixing two configs in one run gives results nobody can reproduce. A workdir
where nothing was computed yet (no checkpoint, no results) takes the new
config instead, so a run that failed on a bad setting can be rerun with a
corrected one.

Faults:

* a NaN or infinite step scalar (loss, gradient norm), or a non-finite state
  leaf when a checkpoint is due, stops ``train_loop`` with
  ``NonFiniteError`` naming the loop, the step and the quantity, before that
  state is saved, so the last good checkpoint stays;
* a checkpoint that cannot be read (a cut or corrupted file) is moved to
  ``checkpoints/<name>.corrupt/`` with a warning, and the newest intact one is
  restored instead.

Finished sub-runs (a policy's run, a teacher) are kept by name with
``PhaseCache``, and ``train_loop(..., stopwatch=Stopwatch())`` times the steps
alone (both from ``jaxsuite.core.phases``).

Resumption is exact when the step function is a pure function of
``(state, step)``: draw each step's data and randomness from
``jax.random.fold_in(key, step)``, so a restored state at step ``s`` continues
exactly as the uninterrupted run did.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from jaxsuite.core import atomic
from jaxsuite.core import config as config_lib
from jaxsuite.core import metrics as metrics_lib
from jaxsuite.core import workdir as workdir_lib
from jaxsuite.core.finite import NonFiniteError, check_scalars, check_state
from jaxsuite.core.phases import PhaseCache, Stopwatch
from jaxsuite.core.workdir import WorkdirBusyError, WorkdirError

__all__ = [
    "CONFIG_FILE",
    "RESUME_IGNORED",
    "CheckpointError",
    "Checkpointer",
    "ConfigMismatchError",
    "NonFiniteError",
    "PhaseCache",
    "Progress",
    "Stopwatch",
    "WorkdirBusyError",
    "WorkdirError",
    "prepare_workdir",
    "train_loop",
]

CONFIG_FILE = workdir_lib.CONFIG_FILE
RESUME_IGNORED = config_lib.RESUME_IGNORED


class ConfigMismatchError(ValueError):
    """A workdir was made with another config."""


class CheckpointError(RuntimeError):
    """No checkpoint of a loop could be read."""


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
    """Locks ``workdir`` and creates it, or checks that it was made with ``config``.

    Call it before the run computes anything (the config is validated when it
    is built). The lock is held until the run writes ``results.json``
    (``metrics.write_results``) or its process ends.

    Returns:
      True when ``workdir`` already held a run of this config (so the caller
      should resume), False for a fresh workdir.

    Raises:
      WorkdirError: ``workdir`` is a file.
      WorkdirBusyError: another process runs in ``workdir``.
      ConfigMismatchError: the workdir holds results of a different config.
    """
    workdir_lib.check_is_dir(workdir)
    if jax.process_index() == 0:
        workdir_lib.lock(workdir)
    path = os.path.join(workdir, CONFIG_FILE)
    new = config_lib.to_dict(config)
    if os.path.exists(path):
        old = atomic.read_json(path)
        lines = _diff(old, new)
        if not lines:
            return True
        if workdir_lib.has_run_state(workdir):
            raise ConfigMismatchError(
                f"Refusing to resume {workdir}: it was made with a different "
                "config.\n" + "\n".join(lines) + "\nUse a new --workdir, or delete "
                "this one to start over."
            )
        logging.warning(
            "%s holds no checkpoint or results yet; replacing its config:\n%s",
            workdir,
            "\n".join(lines),
        )
        if jax.process_index() == 0:
            for name in (metrics_lib.METRICS_FILE, "tb"):
                stale = os.path.join(workdir, name)
                if os.path.isdir(stale):
                    shutil.rmtree(stale)
                elif os.path.exists(stale):
                    os.remove(stale)
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        atomic.write_json(path, new)
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
        self.directory = os.path.abspath(directory)
        self._options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, save_interval_steps=every, create=True
        )
        self._manager = ocp.CheckpointManager(self.directory, options=self._options)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def restore_or(self, state: Any) -> tuple[Any, int]:
        """Restores the newest readable checkpoint into ``state``'s structure.

        A checkpoint that fails to restore (cut or corrupted files) is moved to
        ``<directory>.corrupt/`` with a warning, and the next older one is
        tried.

        Args:
          state: a pytree shaped like the saved one (its values are ignored
            when a checkpoint exists; shardings and dtypes are kept).

        Returns:
          ``(state, step)``: the restored state and its step, or the given
          state and 0 when there is no checkpoint.

        Raises:
          CheckpointError: checkpoints exist but none can be read (nothing is
            moved then: a changed state structure fails the same way).
        """
        steps = sorted(self._manager.all_steps(), reverse=True)
        if not steps:
            return state, 0
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
        failed: list[tuple[int, str]] = []
        for step in steps:
            try:
                restored = self._manager.restore(
                    step, args=ocp.args.StandardRestore(target)
                )
            except Exception as e:  # noqa: BLE001 - any failure means unreadable
                reason = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
                logging.warning(
                    "The checkpoint at step %d in %s cannot be read (%s).",
                    step,
                    self.directory,
                    reason,
                )
                failed.append((step, reason))
                continue
            if failed:
                self._set_aside([s for s, _ in failed])
                logging.warning(
                    "Resumed from the older checkpoint at step %d; unreadable "
                    "checkpoints %s were moved to %s.",
                    step,
                    [s for s, _ in failed],
                    self.directory + ".corrupt",
                )
            logging.info("Resumed from the checkpoint at step %d.", step)
            return restored, int(step)
        details = "\n".join(f"  step {s}: {r}" for s, r in failed)
        raise CheckpointError(
            f"No checkpoint in {self.directory} can be read:\n{details}\nDelete "
            "that folder to start this part of the run over."
        )

    def _set_aside(self, steps: list[int]) -> None:
        """Moves the folders of ``steps`` out of the manager's directory."""
        self._manager.wait_until_finished()
        if jax.process_index() == 0:
            aside = self.directory + ".corrupt"
            os.makedirs(aside, exist_ok=True)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            for step in steps:
                src = os.path.join(self.directory, str(step))
                dst, n = os.path.join(aside, f"{step}-{stamp}"), 1
                while os.path.exists(dst):
                    dst, n = os.path.join(aside, f"{step}-{stamp}-{n}"), n + 1
                if os.path.exists(src):
                    os.replace(src, dst)
        self._manager.reload()

    def should_save(self, step: int, *, force: bool = False) -> bool:
        """Whether :meth:`save` would write ``step``."""
        if force:
            return step not in self._manager.all_steps()
        return self._manager.should_save(step)

    def save(self, step: int, state: Any, *, force: bool = False) -> bool:
        """Saves ``state`` at ``step`` if due (or ``force``); returns whether it did."""
        return self._manager.save(step, args=ocp.args.StandardSave(state), force=force)

    def wait(self) -> None:
        """Waits for saves in progress to finish."""
        self._manager.wait_until_finished()

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


def _timed_step(
    step_fn: Callable[[Any, int], tuple[Any, Mapping[str, Any]]],
    state: Any,
    step: int,
    stopwatch: Stopwatch | None,
) -> tuple[Any, Mapping[str, Any]]:
    """``step_fn(state, step)``, timed by ``stopwatch`` (if any) until its
    state is ready."""
    if stopwatch is not None:
        stopwatch.start()
    state, scalars = step_fn(state, step)
    if stopwatch is not None:
        stopwatch.stop(state)
    return state, scalars


def _check_step(
    step: int,
    scalars: Mapping[str, Any],
    state: Any,
    ckpt: Checkpointer,
    name: str,
    last: bool,
) -> None:
    """Checks the step's floating-point scalars, and its state when ``ckpt``
    is about to save it; raises :class:`NonFiniteError` (with the loop's
    ``name`` and the last good checkpoint) on a non-finite value."""
    try:
        check_scalars(step, scalars)
        if ckpt.should_save(step, force=last):
            check_state(step, state)
    except NonFiniteError as e:
        raise _stopped(e, name, ckpt) from None


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
    check_finite: bool = True,
    stopwatch: Stopwatch | None = None,
) -> Any:
    """Runs ``state = step_fn(state, step)`` for steps ``1..num_steps``, resumably.

    The latest readable checkpoint in ``workdir/checkpoints/<name>`` is
    restored first; a checkpoint is saved every ``checkpoint_every`` steps and
    at the end. With ``check_finite`` every floating-point scalar of every
    step (report ``grad_norm`` beside the loss to have the gradients checked
    too), and every floating-point leaf of a state about to be saved, must be
    finite: otherwise :class:`NonFiniteError` stops the loop before that state
    is saved, naming the step and the quantity.

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
      check_finite: stop on a non-finite scalar or saved state (see above).
      stopwatch: times each ``step_fn`` call (waiting for its state) and
        nothing else: not the checks, logging, hooks or checkpoints.

    Returns:
      The final state.

    Raises:
      NonFiniteError: see above; the message names the loop, the step, the
        quantity and the last good checkpoint.
    """
    ckpt = Checkpointer(
        os.path.join(workdir, "checkpoints", name), every=checkpoint_every
    )
    try:
        state, start = ckpt.restore_or(state)
        progress = Progress(num_steps, start=start, name=name)
        for step in range(start + 1, num_steps + 1):
            state, scalars = _timed_step(step_fn, state, step, stopwatch)
            last = step == num_steps
            if check_finite:
                _check_step(step, scalars, state, ckpt, name, last)
            if writer is not None and (step % log_every == 0 or last):
                writer.write_scalars(step, scalars)
            progress.update(step, scalars)
            for hook in hooks:
                hook(step, state)
            ckpt.save(step, state, force=last)
            if step_delay:
                time.sleep(step_delay)
        if writer is not None:
            writer.flush()
    finally:
        ckpt.close()
    return state


def _stopped(error: NonFiniteError, name: str, ckpt: Checkpointer) -> NonFiniteError:
    """``error`` with the loop's name and what was kept added to its message."""
    ckpt.wait()
    good = ckpt.latest_step()
    kept = (
        f"the last good checkpoint, step {good}, stays in {ckpt.directory}"
        if good is not None
        else "no checkpoint of this loop was saved"
    )
    return NonFiniteError(
        f"Training loop {name!r} stopped: {error} This state was not saved; "
        f"{kept}. Lower the learning rate or check the inputs, then rerun (a "
        "changed config needs a new --workdir).",
        step=error.step,
        quantity=error.quantity,
    )
