"""Config presets and ``preset,key=value`` argument strings.

Every ``configs/<paper>.py`` exposes ``get_config(arg=None)`` in the style of
big_vision: ``arg`` is the text after the colon of ``--config=FILE:ARG`` and
reads ``preset[,key=value,...]``, e.g. ``small,steps=2000,model.width=64``.
The first item without ``=`` names the preset; the rest override fields.

A config file usually reads::

    def get_config(arg=None):
        return config_lib.build_config(arg, base=_base, presets=PRESETS)

where ``_base()`` returns the full ``ConfigDict`` and ``PRESETS`` maps preset
names to dicts of (possibly dotted) overrides. Unknown presets and keys raise
``ValueError`` listing the valid ones, and override values are parsed to the
type of the field they replace: ``steps=1e3`` is the integer 1000 but
``steps=1.5`` is refused, a tuple override is parsed element by element
against the type of the base tuple's elements (``strategies=(ep,fssdp)``), and
a group of settings (a sub-``ConfigDict``) cannot be replaced by a value.

A config file can also declare what each value may be, and the built config
is checked against it (presets included)::

    SPEC = {
        "steps": config_lib.positive_int,
        "batch_size": config_lib.positive_int,
        "lr": config_lib.positive_float,
        "hidden": config_lib.Tuple(config_lib.positive_int, min_len=1),
        "kind": config_lib.Choice("mlp", "hash"),
        "lr_groups.*": config_lib.positive_float,  # fnmatch patterns
    }

    def get_config(arg=None):
        return config_lib.build_config(arg, base=_base, presets=PRESETS, spec=SPEC)

Every rejection is a ``ValueError`` that names the key, the value and what is
allowed.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import fnmatch
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ml_collections

from jaxsuite.core.config_rules import (  # noqa: F401 - re-exported
    Choice,
    Float,
    Int,
    Rule,
    Tuple,
    boolean,
    fraction,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)

ConfigDict = ml_collections.ConfigDict

DEFAULT_PRESET = "small"
# Fields that may change between a run and its resumption: they name or pace
# the run but do not change what it computes.
RESUME_IGNORED = ("preset", "log_every", "checkpoint_every", "step_delay")


def parse_arg(arg: str | None) -> tuple[str | None, dict[str, str]]:
    """Splits ``"preset,key=value,..."`` into the preset name and raw overrides.

    Args:
      arg: the config argument string, or None.

    Returns:
      ``(preset, overrides)``: preset is None when ``arg`` names none;
      overrides maps dotted keys to their unparsed value strings, in order.
    """
    preset = None
    overrides: dict[str, str] = {}
    if not arg:
        return preset, overrides
    for item in _split_top_level(arg):
        item = item.strip()
        if not item:
            continue
        if "=" in item:
            key, value = item.split("=", 1)
            overrides[key.strip()] = value.strip()
        elif preset is None:
            preset = item
        else:
            raise ValueError(
                f"Config argument {arg!r} names two presets ({preset!r} and "
                f"{item!r}); overrides must be written key=value."
            )
    return preset, overrides


def _split_top_level(text: str) -> list[str]:
    """Splits on commas that are not inside brackets or quotes."""
    parts, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _parse_int(raw: str, key: str) -> int:
    text = raw.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if math.isfinite(value) and value.is_integer():
        return int(value)
    raise ValueError(f"{key}={raw!r}: expected an integer.")


def _parse_float(raw: str, key: str) -> float:
    try:
        value = float(raw)
    except ValueError as e:
        raise ValueError(f"{key}={raw!r}: expected a number.") from e
    if not math.isfinite(value):
        raise ValueError(f"{key}={raw!r}: expected a finite number.")
    return value


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _parse_scalar(raw: str, current: Any, key: str) -> Any:
    """Parses ``raw`` to the type of the scalar ``current``."""
    if isinstance(current, bool):
        lowered = raw.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ValueError(f"{key}={raw!r}: expected a boolean (true/false).")
    if isinstance(current, int):
        return _parse_int(raw, key)
    if isinstance(current, float):
        return _parse_float(raw, key)
    if isinstance(current, str):
        return _unquote(raw) if raw.strip()[:1] in "'\"" else raw
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


def _element_type(items: tuple) -> type | None:
    """The one scalar type of a tuple's elements (int counts as float's), or None."""
    kinds = {type(v) for v in items}
    if kinds == {int, float}:
        return float
    if len(kinds) == 1:
        (kind,) = kinds
        if kind in (bool, int, float, str):
            return kind
    return None


def _parse_tuple(raw: str, current: tuple, key: str) -> tuple:
    """Parses ``raw`` as a tuple whose elements have the type of ``current``'s."""
    text = raw.strip()
    if text[:1] in "([" and text[-1:] in ")]":
        text = text[1:-1]
    items = [t.strip() for t in _split_top_level(text)] if text.strip() else []
    if items and not items[-1]:
        items = items[:-1]  # a trailing comma, as in "(3,)"
    kind = _element_type(current)
    out = []
    for i, item in enumerate(items):
        name = f"{key}[{i}]"
        if not item:
            raise ValueError(f"{key}={raw!r}: element {i} is empty.")
        if kind is None:
            try:
                out.append(ast.literal_eval(item))
            except (ValueError, SyntaxError):
                out.append(_unquote(item))
        else:
            out.append(_parse_scalar(item, kind(), name))
    return tuple(out)


def _parse_value(raw: str, current: Any, key: str) -> Any:
    """Parses ``raw`` to the type of ``current`` (the field's present value)."""
    if isinstance(current, tuple | list):
        value = _parse_tuple(raw, tuple(current), key)
        return list(value) if isinstance(current, list) else value
    return _parse_scalar(raw, current, key)


def _leaf_keys(config: ConfigDict, prefix: str = "") -> list[str]:
    keys = []
    for name, value in config.items():
        full = f"{prefix}{name}"
        if isinstance(value, ConfigDict):
            keys.extend(_leaf_keys(value, full + "."))
        else:
            keys.append(full)
    return keys


def set_field(config: ConfigDict, key: str, value: Any, *, parse: bool) -> None:
    """Sets dotted ``key`` in ``config``; the key must exist.

    Raises:
      ValueError: if the key is unknown, listing the closest valid keys.
    """
    node = config
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.get(part) if isinstance(node, ConfigDict) else None
        if not isinstance(child, ConfigDict):
            node = None
            break
        node = child
    if node is None or parts[-1] not in node:
        valid = _leaf_keys(config)
        close = difflib.get_close_matches(key, valid, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"Unknown config key {key!r}.{hint} Valid keys: {', '.join(valid)}"
        )
    current = node[parts[-1]]
    if isinstance(current, ConfigDict) and not isinstance(value, Mapping | ConfigDict):
        fields = ", ".join(f"{key}.{k}" for k in _leaf_keys(current))
        raise ValueError(
            f"{key}={value!r}: {key} is a group of settings, not a value; set its "
            f"fields instead ({fields})."
        )
    if parse:
        value = _parse_value(value, current, key)
    with node.ignore_type():
        node[parts[-1]] = value


def build_config(
    arg: str | None,
    *,
    base: Callable[[], ConfigDict],
    presets: Mapping[str, Mapping[str, Any]],
    default_preset: str = DEFAULT_PRESET,
    spec: Mapping[str, Rule] | None = None,
    checks: Sequence[Callable[[ConfigDict], str | None]] = (),
) -> ConfigDict:
    """Builds a config from a base, a named preset and ``key=value`` overrides.

    Args:
      arg: ``"preset,key=value,..."`` (see module docstring) or None.
      base: returns the full default ``ConfigDict``; every key a preset or an
        override sets must exist in it.
      presets: preset name -> {dotted key: value}.
      default_preset: used when ``arg`` names no preset.
      spec: dotted key (or ``fnmatch`` pattern such as ``"lr.*"``) -> the
        :class:`Rule` its value must satisfy; see :func:`validate`.
      checks: functions of the built config that return a message when
        settings do not fit together (e.g. ``"known_blur_samples=8 exceeds
        blur_samples=4"``), else None.

    Returns:
      The config, with ``config.preset`` set to ``arg`` (or the default
      preset's name) so results record exactly what produced them.

    Raises:
      ValueError: unknown preset (listing the valid ones), unknown key
        (listing the valid keys), a value of the wrong type or outside its
        declared range, naming the key, the value and what is allowed.
    """
    preset, overrides = parse_arg(arg)
    name = preset or default_preset
    if name not in presets:
        raise ValueError(
            f"Unknown preset {name!r}. Valid presets: {', '.join(sorted(presets))}"
        )
    config = base()
    for key, value in presets[name].items():
        set_field(config, key, value, parse=False)
    for key, value in overrides.items():
        set_field(config, key, value, parse=True)
    _check_types(base(), config)
    validate(config, spec or {}, checks)
    with config.ignore_type():
        config.preset = arg if arg else name
    return config


def _check_types(reference: ConfigDict, config: ConfigDict, prefix: str = "") -> None:
    """Every value keeps the kind of the base's value (ints may stand for floats)."""
    for name, ref in reference.items():
        key = f"{prefix}{name}"
        value = config[name]
        if isinstance(ref, ConfigDict):
            if not isinstance(value, ConfigDict):
                raise ValueError(
                    f"{key}={value!r}: {key} is a group of settings, not a value."
                )
            _check_types(ref, value, key + ".")
            continue
        if ref is None or value is None:
            continue
        ok = isinstance(value, type(ref))
        if isinstance(ref, float) and not isinstance(value, bool):
            ok = isinstance(value, int | float)
        if isinstance(ref, int) and not isinstance(ref, bool):
            ok = isinstance(value, int) and not isinstance(value, bool)
        if isinstance(ref, tuple | list):
            ok = isinstance(value, tuple | list)
        if not ok:
            raise ValueError(
                f"{key}={value!r}: expected {_kind_name(ref)} like the default "
                f"({ref!r})."
            )


def _kind_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, tuple | list):
        return "a tuple"
    return f"a {type(value).__name__}"


def validate(
    config: ConfigDict,
    spec: Mapping[str, Rule],
    checks: Sequence[Callable[[ConfigDict], str | None]] = (),
) -> ConfigDict:
    """Checks ``config`` against ``spec`` (see :func:`build_config`).

    Returns:
      ``config``, unchanged.

    Raises:
      ValueError: naming the key, its value and what is allowed; or a spec
        key that matches no field of the config (a typo in the spec).
    """
    keys = _leaf_keys(config)
    for pattern, rule in spec.items():
        matched = fnmatch.filter(keys, pattern) if "*" in pattern else [pattern]
        if not matched or (matched == [pattern] and pattern not in keys):
            raise ValueError(f"Config spec names {pattern!r}, which is not a key.")
        for key in matched:
            value = _get(config, key)
            problem = rule.check(value)
            if problem is not None:
                raise ValueError(f"{key}={value!r}: {problem}.")
    for check in checks:
        problem = check(config)
        if problem:
            raise ValueError(problem)
    return config


def _get(config: ConfigDict, key: str) -> Any:
    node = config
    for part in key.split("."):
        node = node[part]
    return node


def settings_from(cls: type, config: ConfigDict | Mapping[str, Any], **given: Any):
    """Dataclass ``cls`` from the same-named values of ``config``.

    This is how a paper's ``settings.from_config`` reads one group of its
    config into frozen, typed settings: every field of ``cls`` not in
    ``given`` takes ``config[name]``, with lists and tuples made tuples (so
    the settings stay hashable and can be static under ``jit``).

    Raises:
      KeyError: when ``config`` lacks a field of ``cls``.
    """
    values = {}
    for field in dataclasses.fields(cls):
        if field.name not in given:
            value = config[field.name]
            values[field.name] = (
                tuple(value) if isinstance(value, list | tuple) else value
            )
    return cls(**values, **given)


def to_dict(config: ConfigDict | Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-ready plain dict of ``config`` (tuples become lists)."""
    if isinstance(config, ConfigDict):
        config = config.to_dict()
    return json.loads(json.dumps(dict(config), default=_json_default))


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, ConfigDict):
        return obj.to_dict()
    return str(obj)
