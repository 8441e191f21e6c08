"""absl launchers, run from the repository root.

python -m launch.<paper> --config=configs/<paper>.py:smoke --workdir=W
"""
