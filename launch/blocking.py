"""Launcher for the Atlantic-blocking experiment (QG model, CNN, SHAP, transfer)."""

from jaxsuite.climate import experiment
from jaxsuite.core import app

if __name__ == "__main__":
    app.run(experiment.run)
