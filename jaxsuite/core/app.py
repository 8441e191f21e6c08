"""The shared ``main`` of every launcher: ``--config``, ``--workdir``, then run.

A launcher is three lines::

    from jaxsuite.core import app
    from jaxsuite.nerf import experiment

    if __name__ == "__main__":
        app.run(experiment.run)

``run`` defines ``--config`` (a config file with an optional
``:preset,key=value`` argument, locked after parsing), ``--workdir``
and the multi-host flags of ``jaxsuite.core.devices``, initialises
``jax.distributed`` when asked, and calls ``experiment_fn(config, workdir)``.

A run that stops for a reason the user can act on (a non-finite loss, a busy
or mismatched workdir, unreadable checkpoints, a bad input file) ends with
exit status 1 and that reason as the last line, without a traceback.
"""

from __future__ import annotations

import logging as logging_std
import os
import sys
from collections.abc import Callable
from typing import Any

from absl import app, flags, logging
from ml_collections import config_flags

from jaxsuite.core import devices, train


def define_flags() -> None:
    """Defines ``--config``, ``--workdir`` and the distributed flags (idempotent)."""
    if "config" not in flags.FLAGS:
        config_flags.DEFINE_config_file(
            "config",
            None,
            "Config file, optionally with ':preset,key=value,...'.",
            lock_config=True,
        )
        flags.DEFINE_string("workdir", None, "Directory for checkpoints and results.")
        flags.mark_flags_as_required(["config", "workdir"])
    devices.define_distributed_flags()


class _QuietLibraries(logging_std.Filter):
    """Drops INFO-level chatter of libraries (Orbax logs every save step)."""

    def filter(self, record: logging_std.LogRecord) -> bool:
        noisy = any(f"/{lib}/" in record.pathname for lib in _NOISY_LIBRARIES)
        return record.levelno >= logging_std.WARNING or not noisy


_NOISY_LIBRARIES = ("orbax", "matplotlib", "jax/_src")


def quiet_library_logs() -> None:
    """Keeps launcher output to progress lines and warnings."""
    logging.get_absl_handler().addFilter(_QuietLibraries())


# Failures whose message says what to do; other exceptions keep their traceback.
RUN_ERRORS = (
    train.NonFiniteError,
    train.WorkdirError,
    train.CheckpointError,
    FileNotFoundError,
)


def run(experiment_fn: Callable[[Any, str], Any], *, cpu_devices: int = 0) -> None:
    """Parses flags and calls ``experiment_fn(config, workdir)`` under absl.

    Args:
      experiment_fn: the paper's ``run(config, workdir)``.
      cpu_devices: for multi-device experiments, how many devices a CPU-only
        machine emulates (accelerator backends ignore it;
        ``--local_device_count`` or ``$JAXSUITE_LOCAL_DEVICE_COUNT`` override
        it).
    """
    if cpu_devices:
        os.environ.setdefault(devices.ENV_LOCAL_DEVICE_COUNT, str(cpu_devices))
    define_flags()

    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
        logging.set_verbosity(logging.INFO)
        quiet_library_logs()
        devices.initialize_from_flags()
        try:
            experiment_fn(flags.FLAGS.config, flags.FLAGS.workdir)
        except train.ConfigMismatchError as e:
            raise app.UsageError(str(e)) from e
        except RUN_ERRORS as e:
            logging.error("%s", e)
            sys.stderr.flush()
            raise SystemExit(f"Error: {e}") from None

    app.run(main)
