"""Launcher for the S3T exact-unlearning experiment.

python -m launch.s3t --config=configs/s3t.py:small --workdir=runs/s3t
"""

from jaxsuite.core import app
from jaxsuite.unlearn import experiment

if __name__ == "__main__":
    # Shards train in parallel, one per device; a CPU-only machine emulates them.
    app.run(experiment.run, cpu_devices=8)
