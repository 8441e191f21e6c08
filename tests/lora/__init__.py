"""Tests of jaxsuite.lora."""
