"""Finished sub-runs kept under the workdir, and a clock for the timed work.

An experiment is a sequence of phases (one policy's training run, one
teacher, one distillation); ``PhaseCache`` keeps each finished phase's
summary, so a resumed run loads what an earlier run finished instead of
computing it again::

    cache = PhaseCache(workdir, "policies")
    summary = cache.get_or_run(name, lambda: train_policy(name))

A summary is stored under ``workdir/<folder>/`` by name, written atomically
(``jaxsuite.core.atomic``) by process 0 only (the others compute the same
value and keep it in memory):

* a JSON-able value (dicts, lists, strings, numbers) as ``<name>.json``
  (strict JSON: no NaN);
* a dict holding arrays (``np.ndarray`` or ``jax.Array`` values at its top
  level) as ``<name>.npz``: the arrays under their keys, the dict's other
  entries as one JSON text under the key ``__json__``. Loaded back, arrays are
  ``np.ndarray``.

A file that cannot be read back (damaged after it was written) is set aside
as ``<file>.bad`` with a warning, and the phase is computed again.

``Stopwatch`` sums the seconds of the timed work only: started before a step
and stopped after it (waiting for the step's arrays), so evaluation,
checkpointing and logging between steps are not counted. ``train_loop``
takes one (``jaxsuite.core.train.train_loop(..., stopwatch=...)``).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import numpy as np
from absl import logging

from jaxsuite.core import atomic

__all__ = ["JSON_KEY", "PhaseCache", "Stopwatch"]

JSON_KEY = "__json__"
_SUFFIXES = (".json", ".npz")
# What reading a damaged file raises (a cut zip, bad JSON, a missing member).
_UNREADABLE = (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile)


def _is_array(value: Any) -> bool:
    return isinstance(value, np.ndarray | jax.Array)


def _read_npz(path: str) -> dict[str, Any]:
    """The dict saved by :meth:`PhaseCache.save` as ``.npz``."""
    with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:
        out: dict[str, Any] = {k: z[k] for k in z.files if k != JSON_KEY}
        if JSON_KEY in z.files:
            rest = json.loads(str(z[JSON_KEY][()]), parse_constant=_reject)
            out = {**rest, **out}
    return out


def _reject(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


class PhaseCache:
    """Summaries of finished phases under ``workdir/<folder>``, by name.

    Args:
      workdir: the run's directory.
      folder: the sub-folder of ``workdir`` that holds the files.
    """

    def __init__(self, workdir: str, folder: str = "phases"):
        self.directory = os.path.join(workdir, folder)

    def path(self, name: str, suffix: str = "") -> str:
        """``workdir/<folder>/<name><suffix>``: a phase's file, or (with a
        suffix such as ``"_ckpt"``) a place for what else the phase keeps."""
        if not name or os.sep in name or name.startswith("."):
            raise ValueError(f"a phase name is a plain file name, not {name!r}")
        return os.path.join(self.directory, name + suffix)

    def load(self, name: str) -> Any | None:
        """The saved value of phase ``name``, or None when it has none.

        An unreadable file is moved to ``<file>.bad`` (by process 0) with a
        warning naming it, and None is returned so the phase is recomputed.
        """
        for suffix in _SUFFIXES:
            path = self.path(name, suffix)
            if not os.path.exists(path):
                continue
            try:
                if suffix == ".json":
                    return atomic.read_json(path)
                return _read_npz(path)
            except _UNREADABLE as e:
                logging.warning("%s cannot be read (%s); recomputing it.", path, e)
                if jax.process_index() == 0:
                    os.replace(path, path + ".bad")
                return None
        return None

    def save(self, name: str, value: Any) -> Any:
        """Keeps ``value`` as phase ``name`` (written by process 0 only).

        Args:
          name: the phase's name (a plain file name, no suffix).
          value: a JSON-able value, or a dict whose top-level values may be
            arrays (any shape and dtype numpy stores without pickling).

        Returns:
          ``value`` itself, unchanged.

        Raises:
          ValueError: ``value`` holds a NaN or infinity outside an array.
          TypeError: ``value`` holds something neither JSON nor an array.
        """
        arrays = isinstance(value, Mapping) and any(map(_is_array, value.values()))
        suffix = ".npz" if arrays else ".json"
        if jax.process_index() != 0:
            return value
        if arrays:
            rest = {k: v for k, v in value.items() if not _is_array(v)}
            data = {k: np.asarray(v) for k, v in value.items() if _is_array(v)}
            if JSON_KEY in data:
                raise ValueError(f"{JSON_KEY!r} is reserved in a phase's arrays")
            if rest:
                data[JSON_KEY] = np.asarray(atomic.dumps_json(rest, indent=None))
            atomic.save_npz(self.path(name, suffix), **data)
        else:
            atomic.write_json(self.path(name, suffix), value, indent=None)
        for other in _SUFFIXES:  # a value of the other kind saved earlier
            if other != suffix and os.path.exists(self.path(name, other)):
                os.remove(self.path(name, other))
        return value

    def get_or_run(self, name: str, fn: Callable[[], Any]) -> Any:
        """The saved value of phase ``name``, else ``fn()`` saved under it
        (a ``None`` result, an unfinished phase, is returned and not saved)."""
        saved = self.load(name)
        if saved is not None:
            logging.info("Phase %s: loaded from %s.", name, self.directory)
            return saved
        value = fn()
        return value if value is None else self.save(name, value)

    def names(self) -> list[str]:
        """Names of the saved phases, sorted."""
        if not os.path.isdir(self.directory):
            return []
        return sorted(
            f[: -len(s)]
            for f in os.listdir(self.directory)
            for s in _SUFFIXES
            if f.endswith(s) and not f.startswith(".")
        )


class Stopwatch:
    """Seconds of timed work, summed over start/stop segments.

    Args:
      clock: seconds as a float, read at each start and stop
        (default ``time.perf_counter``).

    Example::

        watch = Stopwatch()
        for step in steps:
            with watch.timing() as done:
                state = step_fn(state)
                done(state)          # wait for these arrays before stopping
            if watch.elapsed >= budget: break
            evaluate(state)          # not counted
    """

    def __init__(self, clock: Callable[[], float] | None = None):
        self._clock = clock
        self._elapsed = 0.0
        self._t0: float | None = None

    def _now(self) -> float:
        return self._clock() if self._clock is not None else time.perf_counter()

    @property
    def elapsed(self) -> float:
        """Seconds of the finished segments (a running one is not counted)."""
        return self._elapsed

    @property
    def running(self) -> bool:
        return self._t0 is not None

    def start(self) -> None:
        """Starts a segment."""
        if self._t0 is not None:
            raise RuntimeError("the stopwatch is already running")
        self._t0 = self._now()

    def stop(self, *wait_for: Any) -> float:
        """Waits for the arrays in ``wait_for``, ends the segment, returns its
        seconds (added to :attr:`elapsed`)."""
        if self._t0 is None:
            raise RuntimeError("the stopwatch is not running")
        if wait_for:
            jax.block_until_ready(wait_for)
        seconds = self._now() - self._t0
        self._elapsed += seconds
        self._t0 = None
        return seconds

    def add(self, seconds: float) -> None:
        """Counts ``seconds`` timed elsewhere (e.g. by an earlier run)."""
        self._elapsed += float(seconds)

    @contextlib.contextmanager
    def timing(self) -> Iterator[Callable[..., None]]:
        """Times the block; call the yielded ``done(*arrays)`` to wait for the
        block's results before the clock stops."""
        pending: list[Any] = []
        self.start()
        try:
            yield lambda *arrays: pending.extend(arrays)
        except BaseException:
            self._t0 = None
            raise
        self.stop(*pending)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Leaves the block out of a running segment (a no-op when stopped)."""
        was = self.running
        if was:
            self.stop()
        try:
            yield
        finally:
            if was:
                self.start()
