"""Pallas kernels, installed as ``jaxsuite.kernels``: one package per op.

Each op package holds ``reference.py`` (pure jnp, the truth), ``pallas.py`` (the
kernel) and ``api.py`` (one public function with ``implementation=`` and
``interpret=``). Kernels import only jax and numpy.
"""
