"""Markdown tables of result rows (standard library only, so that benchmark
scripts can use it where only JAX is installed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def format_value(value: Any) -> str:
    """Floats to 4 significant digits, anything else as ``str``."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown_table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None
) -> str:
    """Rows of dicts as a markdown table (floats to 4 significant digits).

    ``columns`` defaults to every key, in the order the rows first use them; a
    row without a column shows an empty cell.
    """
    if not rows:
        return "(empty)\n"
    if columns is not None:
        cols = list(columns)
    else:
        cols = list(rows[0])
        for row in rows[1:]:
            cols.extend(k for k in row if k not in cols)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        lines.append(
            "| " + " | ".join(format_value(row.get(c, "")) for c in cols) + " |"
        )
    return "\n".join(lines) + "\n"
