"""Tests of jaxsuite.kernels."""
