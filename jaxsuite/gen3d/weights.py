"""UNet weights on disk: diffusers safetensors and Flax msgpack, without pickle.

A weights folder holds ``config.json`` (diffusers' ``UNet2DModel`` config,
see :meth:`UNetConfig.to_diffusers`) and one of

* ``diffusion_pytorch_model.safetensors``: diffusers' PyTorch layout, keys
  such as ``down_blocks.0.resnets.0.conv1.weight``; convolutions are
  ``(O, I, kh, kw)``, linear layers ``(out, in)``, norms ``weight``/``bias``;
* ``diffusion_flax_model.msgpack``: diffusers-Flax layout, a nested dict whose
  list indices are joined to names (``down_blocks_0/resnets_0/conv1``), with
  ``kernel`` (HWIO / ``(in, out)``), ``bias`` and ``scale``.

The folder may also be a model repository with the weights under ``unet/``.
Loading converts the keys and layouts to this package's NNX tree (which
mirrors diffusers' names), checks every key and shape and raises one error
that lists all missing keys, unexpected keys and wrong shapes. A real
checkpoint in PyTorch's pickle format (``.bin`` / ``.ckpt``) is not read:
convert it once, offline, with ``safetensors.torch.save_file`` on its
``state_dict``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxsuite.gen3d import unet as unet_lib

CONFIG = "config.json"
SAFETENSORS = "diffusion_pytorch_model.safetensors"
MSGPACK = "diffusion_flax_model.msgpack"


class WeightsError(ValueError):
    """A weights file does not match the model it is loaded into."""


def _path_key(path: tuple) -> tuple[str, str]:
    """NNX path -> (diffusers module key, our leaf name)."""
    *mods, leaf = (str(p) for p in path)
    return ".".join(mods), leaf


def _to_torch(leaf: str, x: np.ndarray) -> tuple[str, np.ndarray]:
    if leaf == "kernel":
        return "weight", (x.transpose(3, 2, 0, 1) if x.ndim == 4 else x.T)
    if leaf == "scale":
        return "weight", x
    return leaf, x


def _from_torch(leaf: str, x: np.ndarray) -> np.ndarray:
    if leaf == "kernel":
        return x.transpose(2, 3, 1, 0) if x.ndim == 4 else x.T
    return x


def _torch_name(leaf: str) -> str:
    return "weight" if leaf in ("kernel", "scale") else leaf


def model_arrays(model: nnx.Module) -> dict[tuple, np.ndarray]:
    """The model's parameters as ``{nnx path: numpy array}``."""
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    return {tuple(p): np.asarray(v.get_value()) for p, v in flat}


def to_diffusers_state_dict(model: nnx.Module) -> dict[str, np.ndarray]:
    """diffusers PyTorch-layout ``{key: array}`` of ``model``."""
    out = {}
    for path, x in model_arrays(model).items():
        mod, leaf = _path_key(path)
        name, arr = _to_torch(leaf, x)
        out[f"{mod}.{name}"] = np.ascontiguousarray(arr)
    return out


def _flax_module_name(mod: str) -> tuple[str, ...]:
    return tuple(re.sub(r"(\w+)\.(\d+)", r"\1_\2", mod).split("."))


def to_flax_params(model: nnx.Module) -> dict:
    """diffusers-Flax nested params dict of ``model``."""
    tree: dict = {}
    for path, x in model_arrays(model).items():
        mod, leaf = _path_key(path)
        node = tree
        for part in _flax_module_name(mod):
            node = node.setdefault(part, {})
        node[leaf] = x
    return tree


def _torch_shape(leaf: str, shape: tuple) -> tuple:
    if leaf == "kernel":
        return (
            (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else shape[::-1]
        )
    return shape


def _check_and_update(
    model: nnx.Module,
    found: Mapping[tuple, np.ndarray],
    names: Mapping[tuple, str],
    file_shape=lambda path, shape: shape,
) -> None:
    """Checks ``found`` (nnx path -> array) against ``model`` and loads it.

    ``file_shape(path, shape)`` maps a model shape to the file's layout for
    error messages.
    """
    expected = model_arrays(model)
    missing = [names[p] for p in expected if p not in found]
    shapes = [
        f"{names[p]}: file {file_shape(p, tuple(found[p].shape))}, "
        f"model {file_shape(p, tuple(x.shape))}"
        for p, x in expected.items()
        if p in found and tuple(found[p].shape) != tuple(x.shape)
    ]
    if missing or shapes:
        lines = []
        if missing:
            lines.append(f"missing keys ({len(missing)}): " + ", ".join(missing))
        if shapes:
            lines.append(f"wrong shapes ({len(shapes)}): " + "; ".join(shapes))
        raise WeightsError("Weights do not match the model:\n  " + "\n  ".join(lines))
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    for path, var in flat:
        var.set_value(jnp.asarray(found[tuple(path)], var.get_value().dtype))
    nnx.update(model, nnx.from_flat_state(flat))


def load_diffusers_state_dict(
    model: nnx.Module, state: Mapping[str, np.ndarray], *, strict: bool = True
) -> list[str]:
    """Loads a diffusers PyTorch-layout ``{key: array}`` into ``model``.

    Returns:
      Unexpected keys (keys in ``state`` the model has no place for); with
      ``strict`` they are an error instead.

    Raises:
      WeightsError: listing missing keys, wrong shapes (and, when strict,
        unexpected keys).
    """
    found, names, used = {}, {}, set()
    for path in model_arrays(model):
        mod, leaf = _path_key(path)
        key = f"{mod}.{_torch_name(leaf)}"
        names[path] = key
        if key in state:
            found[path] = _from_torch(leaf, np.asarray(state[key], np.float32))
            used.add(key)
    unexpected = sorted(set(state) - used)
    to_file = lambda path, shape: _torch_shape(str(path[-1]), shape)
    if strict and unexpected:
        try:
            _check_and_update(model, found, names, to_file)
        except WeightsError as e:
            raise WeightsError(
                f"{e}\n  unexpected keys ({len(unexpected)}): " + ", ".join(unexpected)
            ) from None
        raise WeightsError(
            f"unexpected keys ({len(unexpected)}): " + ", ".join(unexpected)
        )
    _check_and_update(model, found, names, to_file)
    return unexpected


def load_flax_params(model: nnx.Module, params: Mapping, *, strict: bool = True):
    """Loads a diffusers-Flax nested params dict into ``model`` (see above)."""
    flat = {}

    def walk(node, prefix):
        for k, v in node.items():
            if isinstance(v, Mapping):
                walk(v, prefix + (k,))
            else:
                flat[prefix + (k,)] = np.asarray(v, np.float32)

    walk(params, ())
    found, names, used = {}, {}, set()
    for path in model_arrays(model):
        mod, leaf = _path_key(path)
        key = _flax_module_name(mod) + (leaf,)
        names[path] = "/".join(key)
        if key in flat:
            found[path] = flat[key]
            used.add(key)
    unexpected = sorted("/".join(k) for k in set(flat) - used)
    if strict and unexpected:
        raise WeightsError(
            f"unexpected keys ({len(unexpected)}): " + ", ".join(unexpected)
        )
    _check_and_update(model, found, names)
    return unexpected


def _folder(path: str) -> str:
    if not os.path.isdir(path):
        raise FileNotFoundError(f"No weights folder at {path!r}.")
    if not os.path.exists(os.path.join(path, CONFIG)) and os.path.isdir(
        os.path.join(path, "unet")
    ):
        return os.path.join(path, "unet")
    return path


def read_config(path: str) -> unet_lib.UNetConfig:
    """The :class:`UNetConfig` of a weights folder's ``config.json``."""
    path = _folder(path)
    cfg_path = os.path.join(path, CONFIG)
    if not os.path.exists(cfg_path):
        raise FileNotFoundError(f"{path!r} has no {CONFIG}.")
    with open(cfg_path) as f:
        return unet_lib.UNetConfig.from_diffusers(json.load(f))


def load_unet(path: str, *, seed: int = 0, strict: bool = True) -> unet_lib.UNet:
    """Builds the UNet of a weights folder and loads its weights.

    Reads ``diffusion_pytorch_model.safetensors`` if present, else
    ``diffusion_flax_model.msgpack``.

    Raises:
      FileNotFoundError: no folder, config or weights file.
      WeightsError: missing keys, wrong shapes or unexpected keys.
    """
    path = _folder(path)
    cfg = read_config(path)
    model = unet_lib.create(cfg, seed)
    st_path, mp_path = os.path.join(path, SAFETENSORS), os.path.join(path, MSGPACK)
    if os.path.exists(st_path):
        from safetensors.numpy import load_file

        load_diffusers_state_dict(model, load_file(st_path), strict=strict)
    elif os.path.exists(mp_path):
        from flax import serialization

        with open(mp_path, "rb") as f:
            params = serialization.msgpack_restore(f.read())
        load_flax_params(model, params, strict=strict)
    else:
        raise FileNotFoundError(f"{path!r} holds neither {SAFETENSORS} nor {MSGPACK}.")
    return model


def save_unet(
    model: unet_lib.UNet,
    path: str,
    *,
    fmt: str = "safetensors",
    dtype: str = "float32",
    extra_config: Mapping | None = None,
) -> str:
    """Writes ``config.json`` and the weights (``fmt``: safetensors | msgpack).

    Args:
      model: the UNet.
      path: the folder (created).
      fmt: ``"safetensors"`` (diffusers PyTorch layout) or ``"msgpack"``
        (diffusers-Flax layout).
      dtype: stored dtype, ``"float32"`` or ``"float16"``.
      extra_config: more entries for ``config.json`` (e.g. the schedule).

    Returns:
      The path of the weights file.
    """
    os.makedirs(path, exist_ok=True)
    cfg = model.cfg.to_diffusers()
    cfg.update(dict(extra_config or {}))
    with open(os.path.join(path, CONFIG), "w") as f:
        json.dump(cfg, f, indent=2)
    cast = lambda x: np.asarray(x, dtype)
    if fmt == "safetensors":
        from safetensors.numpy import save_file

        out = os.path.join(path, SAFETENSORS)
        state = {k: cast(v) for k, v in to_diffusers_state_dict(model).items()}
        save_file(state, out)
    elif fmt == "msgpack":
        from flax import serialization

        out = os.path.join(path, MSGPACK)
        params = jax.tree.map(cast, to_flax_params(model))
        with open(out, "wb") as f:
            f.write(serialization.msgpack_serialize(params))
    else:
        raise ValueError(f"fmt must be 'safetensors' or 'msgpack', got {fmt!r}.")
    return out


def read_extra_config(path: str) -> dict:
    """The full ``config.json`` dict of a weights folder."""
    with open(os.path.join(_folder(path), CONFIG)) as f:
        return json.load(f)
