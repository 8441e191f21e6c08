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
type of the field they replace.
"""

from __future__ import annotations

import ast
import difflib
import json
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections

ConfigDict = ml_collections.ConfigDict

DEFAULT_PRESET = "small"


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


def _parse_value(raw: str, current: Any, key: str) -> Any:
    """Parses ``raw`` to the type of ``current`` (the field's present value)."""
    if isinstance(current, bool):
        lowered = raw.lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ValueError(f"{key}={raw!r}: expected a boolean (true/false).")
    if isinstance(current, int):
        try:
            return int(float(raw)) if "e" in raw.lower() else int(raw)
        except ValueError as e:
            raise ValueError(f"{key}={raw!r}: expected an integer.") from e
    if isinstance(current, float):
        try:
            return float(raw)
        except ValueError as e:
            raise ValueError(f"{key}={raw!r}: expected a number.") from e
    if isinstance(current, str):
        return raw
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    if isinstance(current, tuple) and isinstance(value, list):
        value = tuple(value)
    if isinstance(current, tuple) and not isinstance(value, tuple):
        value = (value,)
    return value


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
) -> ConfigDict:
    """Builds a config from a base, a named preset and ``key=value`` overrides.

    Args:
      arg: ``"preset,key=value,..."`` (see module docstring) or None.
      base: returns the full default ``ConfigDict``; every key a preset or an
        override sets must exist in it.
      presets: preset name -> {dotted key: value}.
      default_preset: used when ``arg`` names no preset.

    Returns:
      The config, with ``config.preset`` set to ``arg`` (or the default
      preset's name) so results record exactly what produced them.

    Raises:
      ValueError: unknown preset (listing the valid ones), unknown key
        (listing the valid keys) or a value of the wrong type.
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
    with config.ignore_type():
        config.preset = arg if arg else name
    return config


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
