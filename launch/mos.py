"""MoS launcher.

python -m launch.mos --config=configs/mos.py:smoke --workdir=runs/mos
"""

from jaxsuite.core import app
from jaxsuite.lora import experiment

if __name__ == "__main__":
    app.run(experiment.run)
