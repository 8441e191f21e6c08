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


def assert_same_leaves(config, got: dict) -> None:
    """Every field of ``config`` (but ``preset``) is in the flattened
    settings ``got`` under the same dotted name, with its value and type
    (lists compare as tuples)."""
    want = leaves(config.to_dict())
    want.pop("preset")
    assert got.keys() == want.keys()
    for key, value in want.items():
        expected = tuple(value) if isinstance(value, (list, tuple)) else value
        assert got[key] == expected and type(got[key]) is type(expected), key
