"""Runs every paper's launcher with one preset and writes ``workdir/report.md``.

python -m launch.suite --config=configs/suite.py:smoke --workdir=runs/suite
"""

from jaxsuite.core import app, suite

if __name__ == "__main__":
    app.run(suite.run)
