"""Finding the layers an adapter wraps: names, patterns, shapes, groups.

A layer is any ``nnx.Linear``, ``nnx.LinearGeneral`` (without batch axes) or
``nnx.Einsum`` in a model's graph. Its name is its dotted path
(``layers.3.attn.q_proj``). Each adapted layer is described by a ``Target``:
its kernel seen as a matrix from ``d_in`` (the input axes flattened) to
``d_out`` (the output axes flattened), plus the leading ``stack`` axes a
kernel has when the layers were created with ``nnx.vmap`` and run with
``nnx.scan`` (one module holding L layers).

Layers whose names differ only in integer components (``layers.0.mlp.up``,
``layers.1.mlp.up``) form a *group*: the projection type of MoS pools and
Tied-LoRA's tied matrices.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import re
from collections.abc import Sequence
from typing import Any

from flax import nnx

ADAPTABLE = (nnx.Linear, nnx.LinearGeneral, nnx.Einsum)
_SHOWN_NAMES = 40


def path_name(path: Sequence[Any]) -> str:
    """``('layers', 3, 'q')`` -> ``'layers.3.q'``."""
    return ".".join(str(p) for p in path)


def group_name(path: Sequence[Any]) -> str:
    """The projection type of a layer: its path with integers replaced by ``*``."""
    return ".".join("*" if isinstance(p, int) else str(p) for p in path)


def matches(name: str, pattern: str) -> bool:
    """Whether a dotted layer ``name`` matches one ``target_modules`` pattern."""
    if pattern.startswith("re:"):
        return re.fullmatch(pattern[3:], name) is not None
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(
            name, "*." + pattern
        )
    return name == pattern or name.endswith("." + pattern)


def matches_any(name: str, patterns: Sequence[str]) -> bool:
    return any(matches(name, p) for p in patterns)


def describe_names(names: Sequence[str]) -> str:
    """A short listing of layer names for error messages."""
    names = list(names)
    if not names:
        return "(none)"
    shown = ", ".join(names[:_SHOWN_NAMES])
    more = len(names) - _SHOWN_NAMES
    return shown + (f", ... ({more} more)" if more > 0 else "")


@dataclasses.dataclass(frozen=True)
class Target:
    """One adapted layer (or a stack of L layers sharing one module).

    Attributes:
      name: dotted path of the layer in the model.
      path: the same path as a tuple of keys.
      kind: ``"linear"``, ``"general"`` or ``"einsum"``.
      in_shape: the kernel's input axes (contracted with the input).
      out_shape: the kernel's output axes.
      stack: leading kernel axes of a stacked (scanned) layer; () if none.
      group: the projection type (``group_name``).
      in_axes, out_axes: positions of the input and output axes in the
        (unstacked) kernel; ``in_axes + out_axes`` is a permutation.
      einsum_str: the ``nnx.Einsum`` equation, if any.
      input_axes: for ``general``, the input's axes that are contracted.
    """

    name: str
    path: tuple
    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    stack: tuple[int, ...] = ()
    group: str = ""
    in_axes: tuple[int, ...] = ()
    out_axes: tuple[int, ...] = ()
    einsum_str: str | None = None
    input_axes: tuple[int, ...] = ()

    @property
    def d_in(self) -> int:
        return math.prod(self.in_shape)

    @property
    def d_out(self) -> int:
        return math.prod(self.out_shape)

    @property
    def n_layers(self) -> int:
        """How many layers this target holds (the product of ``stack``)."""
        return math.prod(self.stack)

    @property
    def kernel_shape(self) -> tuple[int, ...]:
        """The kernel shape without stack axes."""
        shape = [0] * (len(self.in_axes) + len(self.out_axes))
        for ax, n in zip(self.in_axes, self.in_shape):
            shape[ax] = n
        for ax, n in zip(self.out_axes, self.out_shape):
            shape[ax] = n
        return tuple(shape)


def matrix_target(name: str, d_in: int, d_out: int, stack=()) -> Target:
    """A ``Target`` for a plain (d_in, d_out) kernel, e.g. to count parameters."""
    path = tuple(int(p) if p.isdigit() else p for p in name.split("."))
    return Target(
        name=name,
        path=path,
        kind="linear",
        in_shape=(d_in,),
        out_shape=(d_out,),
        stack=tuple(stack),
        group=group_name(path),
        in_axes=(0,),
        out_axes=(1,),
    )


def _einsum_axes(einsum_str: str, name: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    spec = einsum_str.replace(" ", "")
    if "->" not in spec or spec.count(",") != 1:
        raise ValueError(f"Layer {name}: cannot adapt einsum {einsum_str!r}.")
    operands, out = spec.split("->")
    lhs, rhs = operands.split(",")
    if "." in rhs:
        raise ValueError(
            f"Layer {name}: einsum {einsum_str!r} has an ellipsis in the kernel."
        )
    in_axes, out_axes = [], []
    for i, c in enumerate(rhs):
        if c in out and c in lhs:
            raise ValueError(
                f"Layer {name}: kernel axis {c!r} of einsum {einsum_str!r} is a batch "
                "axis (in both input and output); a low-rank update is undefined."
            )
        (out_axes if c in out else in_axes).append(i)
    if not in_axes or not out_axes:
        raise ValueError(f"Layer {name}: einsum {einsum_str!r} is not a projection.")
    return tuple(in_axes), tuple(out_axes)


def describe(path: tuple, module: nnx.Module) -> Target:
    """The ``Target`` of one adaptable module found at ``path``."""
    name = path_name(path)
    kernel_shape = tuple(module.kernel.shape)
    if isinstance(module, nnx.Linear):
        base = (module.in_features, module.out_features)
        in_axes, out_axes, kind, einsum_str, input_axes = (0,), (1,), "linear", None, ()
    elif isinstance(module, nnx.LinearGeneral):
        if module.batch_axis:
            raise ValueError(
                f"Layer {name}: LinearGeneral with batch_axis is not supported."
            )
        n_in, n_out = len(module.in_features), len(module.out_features)
        base = (*module.in_features, *module.out_features)
        in_axes = tuple(range(n_in))
        out_axes = tuple(range(n_in, n_in + n_out))
        kind, einsum_str, input_axes = "general", None, tuple(module.axis)
    elif isinstance(module, nnx.Einsum):
        if module.einsum_str is None:
            raise ValueError(
                f"Layer {name}: an Einsum without a fixed einsum_str cannot be adapted."
            )
        base = tuple(module.kernel_shape)
        in_axes, out_axes = _einsum_axes(module.einsum_str, name)
        kind, einsum_str, input_axes = "einsum", module.einsum_str, ()
    else:
        raise TypeError(f"Layer {name}: {type(module).__name__} is not adaptable.")
    n_stack = len(kernel_shape) - len(base)
    if n_stack < 0 or tuple(kernel_shape[n_stack:]) != tuple(base):
        raise ValueError(
            f"Layer {name}: kernel shape {kernel_shape} does not end with the "
            f"layer's declared shape {base}."
        )
    return Target(
        name=name,
        path=tuple(path),
        kind=kind,
        in_shape=tuple(base[i] for i in in_axes),
        out_shape=tuple(base[i] for i in out_axes),
        stack=tuple(kernel_shape[:n_stack]),
        group=group_name(path),
        in_axes=in_axes,
        out_axes=out_axes,
        einsum_str=einsum_str,
        input_axes=input_axes,
    )


def _sort_key(path: tuple) -> tuple:
    return tuple((0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in path)


def candidate_layers(model: nnx.Module, skip: type | tuple = ()) -> list[tuple]:
    """Paths of every adaptable layer in ``model``, in path order.

    Layers inside a module of a type in ``skip`` (an existing adapter
    wrapper) are left out.
    """
    inside = set()
    found = []
    for path, module in nnx.iter_modules(model):
        if skip and isinstance(module, skip):
            inside.add(tuple(path))
    for path, module in nnx.iter_modules(model):
        path = tuple(path)
        if any(path[: len(p)] == p for p in inside):
            continue
        if isinstance(module, ADAPTABLE):
            found.append(path)
    return sorted(found, key=_sort_key)


def find_targets(
    model: nnx.Module, patterns: Sequence[str], skip: type | tuple = ()
) -> list[tuple[Target, nnx.Module]]:
    """The adaptable layers of ``model`` whose names match ``patterns``.

    Raises:
      ValueError: a pattern matches no layer; the message lists the layers
        seen.
    """
    paths = candidate_layers(model, skip)
    names = [path_name(p) for p in paths]
    modules = dict(nnx.iter_modules(model))
    unmatched = [p for p in patterns if not any(matches(n, p) for n in names)]
    if unmatched:
        raise ValueError(
            f"target_modules pattern(s) {unmatched} match no adaptable layer "
            f"(nnx.Linear, nnx.LinearGeneral, nnx.Einsum). Layers seen: "
            f"{describe_names(names)}"
        )
    chosen = []
    for path, name in zip(paths, names):
        if matches_any(name, patterns):
            chosen.append((describe(path, modules[path]), modules[path]))
    return chosen


def group_targets(targets: Sequence[Target]) -> dict[str, list[Target]]:
    """Targets by group, groups in order of first appearance."""
    groups: dict[str, list[Target]] = {}
    for t in targets:
        groups.setdefault(t.group, []).append(t)
    return groups
