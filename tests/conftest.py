"""Test set-up shared by every test: 8 CPU devices and strict numerics.

The device count must be set before JAX initialises its backends, so this runs
at collection time, before any test module touches a device.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_numpy_rank_promotion", "raise")


def pytest_configure(config):
    del config
    from absl import flags

    # absl flags used by library code must be parsed even when not run by app.run.
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
