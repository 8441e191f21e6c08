"""Trains the DreamCraft3D priors (image prior and view-conditioned prior).

python -m launch.gen3d_prior --config=configs/gen3d_prior.py:smoke \
    --workdir=runs/gen3d_prior
"""

from jaxsuite.core import app
from jaxsuite.gen3d import experiment

if __name__ == "__main__":
    app.run(experiment.run_priors)
