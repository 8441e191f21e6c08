"""PVD launcher.

python -m launch.pvd --config=configs/pvd.py:smoke --workdir=runs/pvd
"""

from jaxsuite.core import app
from jaxsuite.nerf import experiment

if __name__ == "__main__":
    app.run(experiment.run)
