"""Command-line deleter for trained S3T runs: ``python -m launch.s3t_delete``.

A tool beside the ``s3t`` launcher rather than an experiment of its own; the
code is in ``__main__.py``.
"""
