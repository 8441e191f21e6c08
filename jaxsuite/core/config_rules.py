"""Declared ranges and types of config values (used by ``config.build_config``).

A config file maps keys to rules::

    SPEC = {"steps": positive_int, "hidden": Tuple(positive_int, min_len=1)}

Each rule's ``check(value)`` returns None for an allowed value, else a message
that says what is allowed (``"expected an integer >= 1"``); ``describe()``
states the rule. The names are re-exported by ``jaxsuite.core.config``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any


@dataclasses.dataclass(frozen=True)
class Rule:
    """What a config value may be; ``check`` returns a message or None."""

    def check(self, value: Any) -> str | None:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Int(Rule):
    """An integer (not a bool) in ``[min, max]`` (either end optional)."""

    min: int | None = None
    max: int | None = None

    def describe(self) -> str:
        return "an integer" + _bounds(self.min, self.max, False)

    def check(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"expected {self.describe()}"
        if self.min is not None and value < self.min:
            return f"expected {self.describe()}"
        if self.max is not None and value > self.max:
            return f"expected {self.describe()}"
        return None


@dataclasses.dataclass(frozen=True)
class Float(Rule):
    """A finite number in ``[min, max]``; ``open_min`` excludes ``min``."""

    min: float | None = None
    max: float | None = None
    open_min: bool = False

    def describe(self) -> str:
        return "a finite number" + _bounds(self.min, self.max, self.open_min)

    def check(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"expected {self.describe()}"
        if not math.isfinite(value):
            return f"expected {self.describe()}"
        if self.min is not None and (
            value < self.min or (self.open_min and value == self.min)
        ):
            return f"expected {self.describe()}"
        if self.max is not None and value > self.max:
            return f"expected {self.describe()}"
        return None


@dataclasses.dataclass(frozen=True)
class Choice(Rule):
    """One of the given values."""

    values: tuple[Any, ...]

    def __init__(self, *values: Any):
        object.__setattr__(self, "values", tuple(values))

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)

    def check(self, value: Any) -> str | None:
        return None if value in self.values else f"expected {self.describe()}"


@dataclasses.dataclass(frozen=True)
class Tuple(Rule):
    """A tuple whose elements each satisfy ``item``, of bounded length.

    ``length`` fixes the length; ``unique`` forbids repeated elements.
    """

    item: Rule | None = None
    min_len: int = 0
    max_len: int | None = None
    length: int | None = None
    unique: bool = False

    def describe(self) -> str:
        parts = ["a tuple"]
        if self.length is not None:
            parts.append(f"of {self.length}")
        elif self.min_len or self.max_len is not None:
            parts.append(
                f"of {self.min_len}"
                + ("+" if self.max_len is None else f" to {self.max_len}")
            )
        if self.item is not None:
            parts.append(f"elements, each {self.item.describe()}")
        elif len(parts) > 1:
            parts.append("elements")
        if self.unique:
            parts.append("(no repeats)")
        return " ".join(parts)

    def check(self, value: Any) -> str | None:
        if not isinstance(value, tuple | list):
            return f"expected {self.describe()}"
        n = len(value)
        if self.length is not None and n != self.length:
            return f"expected {self.describe()}"
        if n < self.min_len or (self.max_len is not None and n > self.max_len):
            return f"expected {self.describe()}"
        if self.unique and len(set(value)) != n:
            return f"expected {self.describe()}"
        if self.item is not None:
            for i, v in enumerate(value):
                problem = self.item.check(v)
                if problem is not None:
                    return f"element {i} ({v!r}): {problem}"
        return None


def _bounds(lo: Any, hi: Any, open_lo: bool) -> str:
    if lo is not None and hi is not None:
        left = "(" if open_lo else "["
        return f" in {left}{lo}, {hi}]"
    if lo is not None:
        return f" > {lo}" if open_lo else f" >= {lo}"
    if hi is not None:
        return f" <= {hi}"
    return ""


positive_int = Int(min=1)
non_negative_int = Int(min=0)
positive_float = Float(min=0.0, open_min=True)
non_negative_float = Float(min=0.0)
fraction = Float(min=0.0, max=1.0)
boolean = Choice(True, False)
