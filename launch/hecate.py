"""Launcher for the Hecate (FSSDP) experiment.

python -m launch.hecate --config=configs/hecate.py:small --workdir=runs/hecate
"""

from jaxsuite.core import app
from jaxsuite.moe import experiment

if __name__ == "__main__":
    # The experiment spans 8 devices; a CPU-only machine emulates them.
    app.run(experiment.run, cpu_devices=8)
