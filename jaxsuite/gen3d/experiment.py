"""DreamCraft3D experiment runs (the launchers' entry points)."""

from __future__ import annotations

from typing import Any


def run_priors(config: Any, workdir: str) -> dict[str, Any]:
    """Trains the image and view priors (see ``jaxsuite.gen3d.prior_training``)."""
    from jaxsuite.gen3d import prior_training

    return prior_training.run(config, workdir)
