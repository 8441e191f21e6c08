"""Launcher for the example experiment (an MLP fit that exercises the runner)."""

from jaxsuite.core import app, example

if __name__ == "__main__":
    app.run(example.run)
