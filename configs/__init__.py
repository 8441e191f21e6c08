"""Experiment configs: ``get_config(arg)`` with presets smoke / small / paper."""
