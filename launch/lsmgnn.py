"""Launcher for LSM-GNN: GraphSAGE from storage under each feature cache.

python -m launch.lsmgnn --config=configs/lsmgnn.py:smoke --workdir=runs/lsmgnn
"""

from jaxsuite.core import app
from jaxsuite.gnn import experiment

if __name__ == "__main__":
    # The experiment spans 8 devices; a CPU-only machine emulates them.
    app.run(experiment.run, cpu_devices=8)
