"""Saving and loading adapters alone (Orbax), checked against the model.

An adapter directory holds two Orbax items: ``adapters`` (a flat dict from
dotted variable path to array: every ``AdapterParam`` and ``AdapterState``
of the model, or those matching a filter) and ``meta`` (JSON: the adapter
configs, each adapted layer's method and shape, and each saved array's
shape). Base weights are never saved, so a LoRA file is a few KB.

``load_adapters`` restores into a model wrapped with the same configs and
refuses a file made for another model, naming the layers and shapes that do
not fit.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from jaxsuite.lora import adapters as adapters_lib
from jaxsuite.lora import targets as targets_lib


def _flat(model: nnx.Module, filter_) -> dict[str, nnx.Variable]:
    state = nnx.state(model, filter_)
    return {targets_lib.path_name(path): var for path, var in nnx.to_flat_state(state)}


def adapter_arrays(
    model: nnx.Module, filter_: Any = adapters_lib.adapter_vars
) -> dict[str, jax.Array]:
    """``{dotted path: array}`` of the adapter variables matching ``filter_``."""
    return {name: var[...] for name, var in _flat(model, filter_).items()}


def set_adapter_arrays(model: nnx.Module, arrays: dict[str, Any]) -> None:
    """Writes ``arrays`` (as from ``adapter_arrays``) into ``model``'s adapters.

    Raises:
      ValueError: a name is not an adapter variable of ``model`` or a shape
        differs.
    """
    current = _flat(model, adapters_lib.adapter_vars)
    unknown = sorted(set(arrays) - set(current))
    if unknown:
        raise ValueError(
            f"Adapter arrays {targets_lib.describe_names(unknown)} do not exist in "
            f"this model, whose adapter arrays are "
            f"{targets_lib.describe_names(sorted(current))}."
        )
    bad = [
        f"{n}: file {tuple(np.shape(a))} vs model {tuple(current[n].shape)}"
        for n, a in arrays.items()
        if tuple(np.shape(a)) != tuple(current[n].shape)
    ]
    if bad:
        raise ValueError("Adapter array shapes differ: " + "; ".join(bad))
    for name, value in arrays.items():
        current[name][...] = jax.numpy.asarray(value, dtype=current[name].dtype)


def save_adapters(
    model: nnx.Module, directory: str, filter_: Any = adapters_lib.adapter_vars
) -> str:
    """Saves the adapter variables of ``model`` (matching ``filter_``).

    Returns:
      The absolute path written (Orbax writes atomically; the directory
      must not exist yet).
    """
    directory = os.path.abspath(directory)
    arrays = {k: np.asarray(v) for k, v in adapter_arrays(model, filter_).items()}
    if not arrays:
        raise ValueError("No adapter variables match the filter; nothing to save.")
    meta = adapters_lib.describe_adapters(model)
    meta["arrays"] = {k: list(v.shape) for k, v in arrays.items()}
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckptr:
        ckptr.save(
            directory,
            args=ocp.args.Composite(
                adapters=ocp.args.StandardSave(arrays), meta=ocp.args.JsonSave(meta)
            ),
        )
    return directory


def read_meta(directory: str) -> dict[str, Any]:
    """The JSON metadata of an adapter directory."""
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckptr:
        restored = ckptr.restore(
            os.path.abspath(directory),
            args=ocp.args.Composite(meta=ocp.args.JsonRestore()),
        )
    return restored["meta"]


def check_compatible(model: nnx.Module, meta: dict[str, Any]) -> None:
    """Raises ``ValueError`` naming what differs between a file and ``model``."""
    mine = adapters_lib.describe_adapters(model)["layers"]
    theirs = meta["layers"]
    missing = sorted(set(theirs) - set(mine))
    if missing:
        raise ValueError(
            f"The adapter file was made for another model: its layers "
            f"{targets_lib.describe_names(missing)} are not adapted here. "
            f"Adapted layers of this model: {targets_lib.describe_names(list(mine))}. "
            f"Layers in the file: {targets_lib.describe_names(list(theirs))}."
        )
    bad = [
        f"{name}: file {theirs[name]} vs model {mine[name]}"
        for name in theirs
        if theirs[name] != mine[name]
    ]
    if bad:
        raise ValueError("The adapter file does not fit this model: " + "; ".join(bad))


def load_adapters(model: nnx.Module, directory: str) -> tuple[str, ...]:
    """Restores adapters saved by ``save_adapters`` into ``model`` (in place).

    ``model`` must already be wrapped with the same configs. Returns the
    names of the arrays restored.

    Raises:
      ValueError: the file was made for another model or other adapters
        (names the layers and shapes that differ).
    """
    directory = os.path.abspath(directory)
    meta = read_meta(directory)
    check_compatible(model, meta)
    current = adapter_arrays(model)
    missing = sorted(set(meta["arrays"]) - set(current))
    if missing:
        raise ValueError(
            f"Adapter arrays {targets_lib.describe_names(missing)} in the file do not "
            "exist in this model (another method or config?)."
        )
    target = {
        name: jax.ShapeDtypeStruct(tuple(shape), current[name].dtype)
        for name, shape in meta["arrays"].items()
    }
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckptr:
        restored = ckptr.restore(
            directory,
            args=ocp.args.Composite(adapters=ocp.args.StandardRestore(target)),
        )
    set_adapter_arrays(model, dict(restored["adapters"]))
    return tuple(sorted(restored["adapters"]))
