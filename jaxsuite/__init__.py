"""jaxsuite: JAX/Flax reimplementations of eight recent papers.

Importing ``jaxsuite`` is cheap: subpackages (``jaxsuite.core``,
``jaxsuite.kernels`` and one package per paper) load on first attribute access,
so ``import jaxsuite`` never pulls in optional dependencies.
"""

import importlib

__version__ = "0.1.0"

_SUBPACKAGES = (
    "core",
    "kernels",
    "gnn",
    "moe",
    "lora",
    "nerf",
    "splat",
    "climate",
    "unlearn",
    "gen3d",
)


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_SUBPACKAGES])
