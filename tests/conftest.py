"""Test set-up shared by every test: 8 CPU devices and strict numerics.

The device count must be set before JAX initialises its backends, so this runs
at collection time, before any test module touches a device.

Tests run on the CPU backend. Tests marked ``gpu`` need a CUDA device: they
are skipped when none is visible, and ``pytest -m gpu`` (a marker expression
that selects ``gpu`` tests) also lets JAX use every available backend (so
the GPU is the default device and the CPU stays available), unless
``JAX_PLATFORMS`` is set.

Compiled programs go to a persistent compilation cache that every process of
the test run shares (pytest-xdist workers, notebook kernels, the launchers and
workers started as subprocesses inherit it through the environment): the
notebooks, the launcher tests and the experiment tests compile the same
programs, and the cache compiles each once. ``JAX_COMPILATION_CACHE_DIR``
chooses another directory; an empty value turns the cache off.
"""

import importlib
import os
import re
import tempfile

_PLATFORMS_FROM_ENV = "JAX_PLATFORMS" in os.environ
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    os.path.join(tempfile.gettempdir(), f"jaxsuite-test-xla-cache-{os.getuid()}"),
)
if os.environ["JAX_COMPILATION_CACHE_DIR"]:
    # Cache every program, however small or quick to compile.
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_numpy_rank_promotion", "raise")


def _selects_gpu(markexpr: str) -> bool:
    """Whether a ``-m`` expression asks for ``gpu`` tests (not ``not gpu``)."""
    return bool(re.search(r"\bgpu\b", markexpr)) and not re.search(
        r"\bnot\s+gpu\b", markexpr
    )


def _gpu_available() -> bool:
    try:
        return bool(jax.devices("gpu"))
    except RuntimeError:
        return False


def pytest_configure(config):
    if not _PLATFORMS_FROM_ENV and _selects_gpu(config.getoption("markexpr") or ""):
        jax.config.update("jax_platforms", None)  # every available backend
    from absl import flags

    # absl flags used by library code must be parsed even when not run by app.run.
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def pytest_collection_modifyitems(config, items):
    del config
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if gpu_items and not _gpu_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in gpu_items:
            item.add_marker(skip)


# Test packages whose code makes every dtype conversion explicit: their tests
# run under ``jax_numpy_dtype_promotion="strict"``, so an implicit promotion
# (say float32 with float64, a Python float with int32, complex with real)
# fails the test. Every paper package is listed: optax's Adam and schedules
# mix Python floats with the int32 step count, so training steps apply their
# updates through ``jaxsuite.core.optim.update``, which keeps standard
# promotion for optax's own arithmetic alone. A test that must run other code
# relying on standard promotion is marked ``standard_dtypes``. The tests at the
# top level of ``tests/`` (launchers, notebooks, docs, packaging) keep standard
# promotion: they run paper code only in subprocesses, which this fixture does
# not reach.
_STRICT_DTYPE_PACKAGES = (
    "core",
    "kernels",
    "climate",
    "gen3d",
    "gnn",
    "lora",
    "moe",
    "nerf",
    "splat",
    "unlearn",
)


@pytest.fixture(autouse=True)
def _dtype_promotion(request):
    package = request.node.path.parent.name
    strict = package in _STRICT_DTYPE_PACKAGES and not request.node.get_closest_marker(
        "standard_dtypes"
    )
    with jax.numpy_dtype_promotion("strict" if strict else "standard"):
        yield


@pytest.fixture
def load_config():
    """``load_config(name, arg=None)``: ``configs/<name>.py``'s ``get_config(arg)``.

    ``configs`` is a package at the repository root (importable because pytest
    puts the root on ``sys.path``); ``arg`` is the preset string, e.g.
    ``"smoke"`` or ``"small,steps=10"``.
    """

    def load(name: str, arg: str | None = None):
        return importlib.import_module(f"configs.{name}").get_config(arg)

    return load
