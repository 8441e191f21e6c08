"""Four radiance-field architectures behind PVD's shared block structure.

Every architecture maps points ``x (N, 3)`` in the scene cube
``[-bound, bound]^3`` and unit view directions ``d (N, 3)`` to a
:class:`FieldOutput`:

* ``feature (N, 16)``: the aligned intermediate ``[log-density pre-activation,
  15 geometry features]`` (``None`` for ``dense``, which has none);
* ``log_sigma (N,)``: the density pre-activation clamped to ``[-2, 7]``
  (PVD's "range clamp"), so ``sigma = trunc_exp(log_sigma)`` lies in
  ``[0.135, 1096.6]``;
* ``rgb (N, 3)`` in ``[0, 1]``.

Architectures (parameter names match across architectures wherever PVD's do,
so a student can inherit a teacher's matching tensors):

* ``hash`` (Instant-NGP): ``encoder.table`` multiresolution hash grid
  (``jaxsuite.kernels.hash_encoding``) -> ``sigma_net`` ``L*F -> 64 -> 16``
  -> ``color_net``.
* ``mlp`` (NeRF): positional encoding (10 frequencies, 63-d) -> ReLU MLP with a
  skip connection -> ``L*F`` (replacing the hash encoder) -> the same
  ``sigma_net`` and ``color_net``.
* ``vm`` (TensoRF): density from rank-``R_s`` vector-matrix planes and lines
  (summed), colour features from rank-``R_c`` ones through ``basis_mat`` to 15;
  feature ``= [sigma_feat, colour_feat]`` -> ``color_net``.
* ``dense`` (Plenoxels-like): a dense grid of 28 channels (density plus 3 x 9
  SH coefficients, bands ``l <= 2``), trilinear; colour ``= sigmoid(sum_k
  Y_k(d) c_k)``.

The architectures are ``nnx.Module``s (``jaxsuite.nerf.modules.Field``); the
functions here are their pure-function API over plain parameter dicts (the
module's ``nnx.split`` state as a pure dict), reached through ``nnx.merge``.

``color_net`` takes the 16 SH components (bands ``l <= 3``) of ``d`` and the 15
geometry features: ``31 -> 64 -> 64 -> 3`` with ReLU and a sigmoid; like
``sigma_net`` it has no biases (as in PVD).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsuite.core.encoding import positional_encoding as _positional_encoding

ARCHS = ("hash", "dense", "vm", "mlp")
LOG_SIGMA_MIN = -2.0
LOG_SIGMA_MAX = 7.0
FEATURE_DIM = 16
Params = dict[str, Any]


@jax.custom_jvp
def trunc_exp(x: jax.Array) -> jax.Array:
    """``exp(x)`` whose derivative is ``exp(clip(x, -12, 12))`` (PVD/torch-ngp)."""
    return jnp.exp(x)


@trunc_exp.defjvp
def _trunc_exp_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return jnp.exp(x), t * jnp.exp(jnp.clip(x, -12.0, 12.0))


class FieldOutput(NamedTuple):
    """Per-point outputs; ``feature`` is ``None`` for ``dense``."""

    feature: jax.Array | None  # (N, 16)
    log_sigma: jax.Array  # (N,) clamped pre-activation
    rgb: jax.Array  # (N, 3)


@dataclasses.dataclass(frozen=True)
class FieldConfig:
    """Sizes of all four architectures (hashable: a static argument).

    ``hash_*`` set the hash grid, whose output width ``L * F`` is also the
    MLP encoder's output width (so ``sigma_net`` shapes agree); ``hidden`` is
    the width of ``sigma_net`` and ``color_net``.
    """

    bound: float = 1.0
    hidden: int = 64
    hash_levels: int = 8
    hash_features: int = 2
    hash_log2_table: int = 14
    hash_base_resolution: int = 16
    hash_max_resolution: float = 256.0
    hash_implementation: str = "auto"
    mlp_depth: int = 4
    mlp_width: int = 64
    mlp_freqs: int = 10
    vm_resolution: int = 64
    vm_sigma_rank: int = 8
    vm_color_rank: int = 16
    dense_resolution: int = 32

    @property
    def enc_dim(self) -> int:
        return self.hash_levels * self.hash_features

    def hash_config(self):
        from jaxsuite.kernels.hash_encoding.reference import HashEncodingConfig

        return HashEncodingConfig(
            num_levels=self.hash_levels,
            features_per_level=self.hash_features,
            log2_table_size=self.hash_log2_table,
            base_resolution=self.hash_base_resolution,
            max_resolution=self.hash_max_resolution,
        )


def hash_encode(x01: jax.Array, table: jax.Array, cfg: FieldConfig) -> jax.Array:
    """Hash encoding of points in ``[0, 1]^3``: ``(N, 3) -> (N, L*F)``.

    Uses the kernel package's public ``api.hash_encode`` (``"auto"``: the
    Pallas kernel on GPU, the reference elsewhere) when present, else its
    reference implementation.
    """
    hcfg = cfg.hash_config()
    try:
        from jaxsuite.kernels.hash_encoding import api
    except ImportError:
        api = None
    if api is not None and hasattr(api, "hash_encode"):
        impl = None if cfg.hash_implementation == "auto" else cfg.hash_implementation
        return api.hash_encode(x01, table, config=hcfg, implementation=impl)
    from jaxsuite.kernels.hash_encoding.reference import hash_encode_reference

    return hash_encode_reference(x01, table, hcfg)


# ----------------------------------------------------------------------------
# Building blocks.


def _linear_init(key: jax.Array, n_in: int, n_out: int) -> jax.Array:
    """PyTorch's default ``nn.Linear`` weight init, U(+-1/sqrt(n_in)): ``(in, out)``."""
    bound = 1.0 / np.sqrt(n_in)
    return jax.random.uniform(key, (n_in, n_out), minval=-bound, maxval=bound)


def _mlp_init(key: jax.Array, sizes: tuple[int, ...]) -> dict[str, jax.Array]:
    keys = jax.random.split(key, len(sizes) - 1)
    return {
        f"w{i}": _linear_init(k, a, b)
        for i, (k, a, b) in enumerate(zip(keys, sizes[:-1], sizes[1:]))
    }


def _mlp_apply(p: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    """Bias-free ReLU MLP (no activation after the last layer)."""
    n = len(p)
    for i in range(n):
        x = x @ p[f"w{i}"]
        if i < n - 1:
            x = jax.nn.relu(x)
    return x


def positional_encoding(x: jax.Array, num_freqs: int) -> jax.Array:
    """NeRF's encoding ``[x, sin(2^k x)_k, cos(2^k x)_k]``: ``(N, 3) -> (N, 3+6K)``."""
    return _positional_encoding(x, num_freqs, layout="grouped")


def _interp_1d(u: jax.Array, res: int) -> tuple[jax.Array, jax.Array]:
    """Lower cell index and fraction for ``u`` in [0, 1] (corner-aligned)."""
    pos = jnp.clip(u, 0.0, 1.0) * (res - 1)
    i0 = jnp.clip(jnp.floor(pos), 0, res - 2).astype(jnp.int32)
    return i0, pos - i0.astype(pos.dtype)


def sample_line(line: jax.Array, u: jax.Array) -> jax.Array:
    """Linear interpolation of ``line (R, C)`` at ``u (N,)``: ``(N, C)``."""
    i0, f = _interp_1d(u, line.shape[0])
    return line[i0] * (1.0 - f)[:, None] + line[i0 + 1] * f[:, None]


def sample_plane(plane: jax.Array, u: jax.Array, v: jax.Array) -> jax.Array:
    """Bilinear interpolation of ``plane (R, R, C)`` at ``(u, v)``: ``(N, C)``."""
    i, fu = _interp_1d(u, plane.shape[0])
    j, fv = _interp_1d(v, plane.shape[1])
    di = jnp.asarray([0, 1, 0, 1], jnp.int32)[None]
    dj = jnp.asarray([0, 0, 1, 1], jnp.int32)[None]
    wi = jnp.where(di == 1, fu[:, None], 1.0 - fu[:, None])
    wj = jnp.where(dj == 1, fv[:, None], 1.0 - fv[:, None])
    vals = plane[i[:, None] + di, j[:, None] + dj]  # (N, 4, C)
    return jnp.einsum("nkc,nk->nc", vals, wi * wj)


def sample_grid(grid: jax.Array, x01: jax.Array) -> jax.Array:
    """Trilinear interpolation of ``grid (R, R, R, C)`` at ``x01 (N, 3)``:
    ``(N, C)``."""
    res = grid.shape[:3]
    idx, frac = zip(*(_interp_1d(x01[:, a], res[a]) for a in range(3)))
    bits = np.array([[(k >> a) & 1 for k in range(8)] for a in range(3)], np.int32)
    w = jnp.ones((x01.shape[0], 8), grid.dtype)
    corner = []
    for a in range(3):
        b = jnp.asarray(bits[a])[None]
        w = w * jnp.where(b == 1, frac[a][:, None], 1.0 - frac[a][:, None])
        corner.append(idx[a][:, None] + b)
    vals = grid[corner[0], corner[1], corner[2]]  # (N, 8, C)
    return jnp.einsum("nkc,nk->nc", vals, w)


# TensoRF's vector-matrix split: plane over axes MAT[m], line over axis VEC[m].
_MAT = ((0, 1), (0, 2), (1, 2))
_VEC = (2, 1, 0)


def _vm_features(planes: jax.Array, lines: jax.Array, x01: jax.Array) -> jax.Array:
    """Per-component plane*line products: planes ``(3, R, R, r)``, lines
    ``(3, R, r)`` -> ``(N, 3r)`` (mode-major)."""
    u = jnp.stack([x01[:, a] for a, _ in _MAT])  # (3, N)
    v = jnp.stack([x01[:, b] for _, b in _MAT])
    w = jnp.stack([x01[:, c] for c in _VEC])
    p = jax.vmap(sample_plane)(planes, u, v)  # (3, N, r)
    ln = jax.vmap(sample_line)(lines, w)
    return jnp.transpose(p * ln, (1, 0, 2)).reshape(x01.shape[0], -1)


# ----------------------------------------------------------------------------
# Architectures.


def init(key: jax.Array, arch: str, cfg: FieldConfig) -> Params:
    """Parameters of architecture ``arch`` (one of ``ARCHS``): the pure dict of
    the state of ``modules.Field(arch, cfg, key)``."""
    from flax import nnx

    from jaxsuite.nerf import modules

    return nnx.to_pure_dict(nnx.split(modules.Field(arch, cfg, key))[1])


@functools.lru_cache(maxsize=64)
def _graph(arch: str, cfg: FieldConfig):
    from flax import nnx

    from jaxsuite.nerf import modules

    return nnx.split(
        nnx.eval_shape(lambda: modules.Field(arch, cfg, jax.random.key(0)))
    )


def as_module(params: Params, arch: str, cfg: FieldConfig):
    """The ``modules.Field`` holding ``params`` (``nnx.merge``; works on traced
    values inside ``jit``)."""
    from flax import nnx

    graphdef, abstract = _graph(arch, cfg)
    state = jax.tree.map(lambda v: v, abstract)
    nnx.replace_by_pure_dict(state, params)
    return nnx.merge(graphdef, state)


def _to_unit(x: jax.Array, cfg: FieldConfig) -> jax.Array:
    return jnp.clip((x + cfg.bound) / (2.0 * cfg.bound), 0.0, 1.0)


def feature(params: Params, arch: str, cfg: FieldConfig, x: jax.Array) -> jax.Array:
    """The aligned 16-d feature ``(N, 16)`` (not defined for ``dense``)."""
    if arch == "dense":
        raise ValueError(f"Architecture {arch!r} has no aligned feature.")
    return as_module(params, arch, cfg).feature(x)


def clamp_log_sigma(h: jax.Array) -> jax.Array:
    """PVD's range clamp of the density pre-activation to ``[-2, 7]``."""
    return jnp.clip(h, LOG_SIGMA_MIN, LOG_SIGMA_MAX)


def log_sigma(params: Params, arch: str, cfg: FieldConfig, x: jax.Array) -> jax.Array:
    """Clamped density pre-activation only, ``(N, 3) -> (N,)`` (for occupancy)."""
    return as_module(params, arch, cfg).log_sigma(x)


def query(
    params: Params, arch: str, cfg: FieldConfig, x: jax.Array, d: jax.Array
) -> FieldOutput:
    """Evaluates the field at points ``x (N, 3)`` seen along unit ``d (N, 3)``."""
    return as_module(params, arch, cfg)(x, d)


def sigma_from_log(log_sig: jax.Array) -> jax.Array:
    """Density from the clamped pre-activation, through ``trunc_exp``."""
    return trunc_exp(log_sig)


def param_labels(params: Params, arch: str) -> Params:
    """``"grid"`` for explicit grid/table tensors, ``"net"`` for MLP weights
    (the two get different learning rates, as in PVD)."""

    def label(path, _):
        names = [getattr(p, "key", str(p)) for p in path]
        is_grid = names[0] == "encoder" and arch != "mlp" and names[-1] != "basis_mat"
        return "grid" if is_grid else "net"

    return jax.tree_util.tree_map_with_path(label, params)


def count_params(params: Params) -> int:
    return int(sum(np.prod(p.shape) for p in jax.tree.leaves(params)))
