"""Flattening of configs and settings trees, for the settings tests."""

from __future__ import annotations

import dataclasses


def leaves(tree, prefix=""):
    """``{"a.b": value}`` for every leaf of a nested dict or dataclass."""
    if dataclasses.is_dataclass(tree):
        tree = {f.name: getattr(tree, f.name) for f in dataclasses.fields(tree)}
    if not isinstance(tree, dict):
        return {prefix[:-1]: tree}
    out = {}
    for k, v in tree.items():
        out.update(leaves(v, f"{prefix}{k}."))
    return out
