"""DreamCraft3D launcher: image-to-3D with SDS, VSD and BSD texture stages.

python -m launch.dreamcraft3d --config=configs/dreamcraft3d.py:smoke \
    --workdir=runs/dreamcraft3d
"""

from jaxsuite.core import app
from jaxsuite.gen3d import experiment

if __name__ == "__main__":
    app.run(experiment.run)
