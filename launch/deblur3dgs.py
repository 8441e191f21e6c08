"""Launcher for Deblurring 3D Gaussian Splatting (3DGS vs Deblurring-3DGS)."""

from jaxsuite.core import app
from jaxsuite.splat import experiment

if __name__ == "__main__":
    app.run(experiment.run)
