"""Launcher for LSM-GNN: GraphSAGE from storage under each feature cache.

python -m launch.lsmgnn --config=configs/lsmgnn.py:smoke --workdir=runs/lsmgnn
"""

import os

from jaxsuite.core import app
from jaxsuite.gnn import experiment

if __name__ == "__main__":
    # The caches span 8 devices; a CPU-only machine emulates them (accelerator
    # backends ignore this setting; --local_device_count overrides it).
    os.environ.setdefault("JAXSUITE_LOCAL_DEVICE_COUNT", "8")
    app.run(experiment.run)
