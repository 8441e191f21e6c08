"""The run's directory: its lock and what counts as work already done.

Two runs sharing a workdir would overwrite each other's checkpoints, so a run
takes an exclusive ``fcntl`` lock on ``workdir/.lock`` (released by the
operating system when the process ends, even on SIGKILL, so a lock is never
stale) and writes its pid and host there. A second process asking for the
same workdir gets :class:`WorkdirBusyError` naming that pid. Within one
process the lock is re-entrant: running an experiment twice on one workdir
(e.g. to check that it resumes) is allowed. ``metrics.write_results`` releases
it, since writing ``results.json`` ends a run.

:func:`has_run_state` tells a workdir that holds results of a run
(checkpoints, ``results.json``, logged steps, saved phases) from one where a
run stopped before computing anything, which may take a corrected config.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket

LOCK_FILE = ".lock"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
RESULTS_FILE = "results.json"
# Written by every run before it computes anything.
_BOOKKEEPING = {LOCK_FILE, CONFIG_FILE, METRICS_FILE, "tb"}

# realpath -> (file descriptor, pid of the holder)
_HELD: dict[str, tuple[int, int]] = {}


class WorkdirError(ValueError):
    """The workdir cannot be used (it is a file, or it is busy)."""


class WorkdirBusyError(WorkdirError):
    """Another process holds the workdir's lock."""


def check_is_dir(workdir: str) -> None:
    """Raises :class:`WorkdirError` if ``workdir`` exists and is not a folder."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise WorkdirError(
            f"The workdir {workdir} is a file, not a folder. Pass a folder (it is "
            "created if missing) as --workdir."
        )


def lock(workdir: str) -> None:
    """Takes the workdir's lock for this process (re-entrant; see module doc).

    Raises:
      WorkdirBusyError: another process holds it; the message names its pid.
    """
    check_is_dir(workdir)
    os.makedirs(workdir, exist_ok=True)
    key = os.path.realpath(workdir)
    held = _HELD.get(key)
    if held is not None and held[1] == os.getpid():
        return
    path = os.path.join(key, LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise WorkdirBusyError(
            f"The workdir {workdir} is in use by another run ({holder}). Two runs "
            "in one workdir would overwrite each other's checkpoints: wait for it "
            "to finish, stop it, or pass another --workdir."
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    _HELD[key] = (fd, os.getpid())


def unlock(workdir: str) -> None:
    """Releases this process's lock on ``workdir`` (a no-op if not held)."""
    key = os.path.realpath(workdir)
    held = _HELD.pop(key, None)
    if held is not None and held[1] == os.getpid():
        os.close(held[0])  # closing the descriptor drops the flock


def is_locked_here(workdir: str) -> bool:
    """Whether this process holds ``workdir``'s lock."""
    held = _HELD.get(os.path.realpath(workdir))
    return held is not None and held[1] == os.getpid()


def _logged_steps(path: str) -> bool:
    try:
        with open(path) as f:
            for line in f:
                try:
                    if "step" in json.loads(line):
                        return True
                except ValueError:
                    continue
    except OSError:
        return False
    return False


def has_run_state(workdir: str) -> bool:
    """Whether ``workdir`` holds anything a run computed.

    That is: ``results.json``, a checkpoint step, a logged step in
    ``metrics.jsonl``, or any file other than the bookkeeping every run writes
    first (``config.json``, the lock, ``metrics.jsonl``, ``tb/``) and the
    checkpoint managers' own metadata. Empty folders do not count.
    """
    if not os.path.isdir(workdir):
        return False
    if os.path.exists(os.path.join(workdir, RESULTS_FILE)):
        return True
    if _logged_steps(os.path.join(workdir, METRICS_FILE)):
        return True
    for name in os.listdir(workdir):
        if name in _BOOKKEEPING:
            continue
        path = os.path.join(workdir, name)
        if name == "checkpoints" and os.path.isdir(path):
            for loop in os.listdir(path):
                sub = os.path.join(path, loop)
                if os.path.isdir(sub) and any(s.isdigit() for s in os.listdir(sub)):
                    return True
            continue
        if not os.path.isdir(path):
            return True
        for _, _, files in os.walk(path):
            if files:
                return True
    return False
