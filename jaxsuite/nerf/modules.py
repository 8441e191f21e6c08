"""The four architectures as Flax NNX modules (``nnx.Module``).

``Field(arch, cfg, key)`` holds exactly the tensors of ``fields.init(key, arch,
cfg)`` under the same names (``encoder/table``, ``sigma_net/w0``, ...), so
``nnx.split`` gives a state whose pure dict is the parameter tree the rest of
the package (inheritance, optimiser labels, checkpoints) works with, and
``fields.query`` / ``fields.feature`` / ``fields.log_sigma`` are these modules
reached through ``nnx.merge``. Shapes: points ``x (N, 3)`` in the scene cube,
unit directions ``d (N, 3)``; outputs as in ``fields``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxsuite.core import sh
from jaxsuite.nerf import fields as F


class BiasFreeMLP(nnx.Module):
    """ReLU MLP without biases (PVD's ``sigma_net`` / ``color_net``):
    weights ``w0 .. w{L-1}`` of shape ``(in, out)``."""

    def __init__(self, key: jax.Array, sizes: tuple[int, ...]):
        self.num_layers = len(sizes) - 1
        for name, w in F._mlp_init(key, sizes).items():
            setattr(self, name, nnx.Param(w))

    def __call__(self, x: jax.Array) -> jax.Array:
        for i in range(self.num_layers):
            x = x @ getattr(self, f"w{i}")[...]
            if i < self.num_layers - 1:
                x = jax.nn.relu(x)
        return x


class HashEncoder(nnx.Module):
    """Multiresolution hash grid: ``table (L, T, F)``; ``(N, 3) -> (N, L F)``."""

    def __init__(self, key: jax.Array, cfg: F.FieldConfig):
        from jaxsuite.kernels.hash_encoding.reference import init_table

        self.cfg = cfg
        self.table = nnx.Param(init_table(key, cfg.hash_config()))

    def __call__(self, x: jax.Array) -> jax.Array:
        return F.hash_encode(F._to_unit(x, self.cfg), self.table[...], self.cfg)


class MLPEncoder(nnx.Module):
    """NeRF's positional encoding and ReLU MLP with a skip connection:
    ``(N, 3) -> (N, L F)``."""

    def __init__(self, key: jax.Array, cfg: F.FieldConfig):
        self.cfg = cfg
        d_in = 3 + 6 * cfg.mlp_freqs
        keys = jax.random.split(key, cfg.mlp_depth + 1)
        n_in = d_in
        for i in range(cfg.mlp_depth):
            if i == cfg.mlp_depth // 2 and i > 0:
                n_in += d_in
            setattr(
                self, f"w{i}", nnx.Param(F._linear_init(keys[i], n_in, cfg.mlp_width))
            )
            setattr(self, f"b{i}", nnx.Param(jnp.zeros((cfg.mlp_width,))))
            n_in = cfg.mlp_width
        self.w_out = nnx.Param(F._linear_init(keys[-1], n_in, cfg.enc_dim))
        self.b_out = nnx.Param(jnp.zeros((cfg.enc_dim,)))

    def __call__(self, x: jax.Array) -> jax.Array:
        cfg = self.cfg
        pe = F.positional_encoding(x / cfg.bound, cfg.mlp_freqs)
        h = pe
        for i in range(cfg.mlp_depth):
            if i == cfg.mlp_depth // 2 and i > 0:
                h = jnp.concatenate([h, pe], axis=-1)
            w, b = getattr(self, f"w{i}")[...], getattr(self, f"b{i}")[...]
            h = jax.nn.relu(h @ w + b[None])
        return h @ self.w_out[...] + self.b_out[...][None]


class VMEncoder(nnx.Module):
    """TensoRF vector-matrix factors; ``(N, 3) -> (N, 16)`` aligned feature."""

    def __init__(self, key: jax.Array, cfg: F.FieldConfig):
        self.cfg = cfg
        r, rs, rc = cfg.vm_resolution, cfg.vm_sigma_rank, cfg.vm_color_rank
        ks = jax.random.split(key, 5)
        self.sigma_planes = nnx.Param(0.1 * jax.random.normal(ks[0], (3, r, r, rs)))
        self.sigma_lines = nnx.Param(0.1 * jax.random.normal(ks[1], (3, r, rs)))
        self.color_planes = nnx.Param(0.1 * jax.random.normal(ks[2], (3, r, r, rc)))
        self.color_lines = nnx.Param(0.1 * jax.random.normal(ks[3], (3, r, rc)))
        self.basis_mat = nnx.Param(F._linear_init(ks[4], 3 * rc, F.FEATURE_DIM - 1))

    def __call__(self, x: jax.Array) -> jax.Array:
        u = F._to_unit(x, self.cfg)
        sig = jnp.sum(
            F._vm_features(self.sigma_planes[...], self.sigma_lines[...], u), -1
        )
        col = (
            F._vm_features(self.color_planes[...], self.color_lines[...], u)
            @ self.basis_mat[...]
        )
        return jnp.concatenate([sig[:, None], col], axis=-1)


class DenseEncoder(nnx.Module):
    """Dense grid ``(R, R, R, 28)``: density and 3 x 9 SH coefficients."""

    def __init__(self, key: jax.Array, cfg: F.FieldConfig):
        self.cfg = cfg
        r = cfg.dense_resolution
        self.grid = nnx.Param(0.1 * jax.random.normal(key, (r, r, r, 1 + 3 * 9)))

    def __call__(self, x: jax.Array) -> jax.Array:
        return F.sample_grid(self.grid[...], F._to_unit(x, self.cfg))


_ENCODERS = {
    "hash": HashEncoder,
    "mlp": MLPEncoder,
    "vm": VMEncoder,
    "dense": DenseEncoder,
}


class Field(nnx.Module):
    """One architecture behind PVD's block structure (see ``fields``)."""

    def __init__(self, arch: str, cfg: F.FieldConfig, key: jax.Array):
        if arch not in _ENCODERS:
            raise ValueError(f"Unknown architecture {arch!r}; choose from {F.ARCHS}.")
        self.arch = arch
        k_enc, k_sig, k_col = jax.random.split(key, 3)
        self.encoder = _ENCODERS[arch](k_enc, cfg)
        if arch in ("hash", "mlp"):
            self.sigma_net = BiasFreeMLP(
                k_sig, (cfg.enc_dim, cfg.hidden, F.FEATURE_DIM)
            )
        if arch != "dense":
            self.color_net = BiasFreeMLP(k_col, (16 + 15, cfg.hidden, cfg.hidden, 3))

    def feature(self, x: jax.Array) -> jax.Array:
        """The aligned 16-d feature ``(N, 16)`` (not defined for ``dense``)."""
        if self.arch == "dense":
            raise ValueError("Architecture 'dense' has no aligned feature.")
        h = self.encoder(x)
        return self.sigma_net(h) if self.arch in ("hash", "mlp") else h

    def log_sigma(self, x: jax.Array) -> jax.Array:
        """Clamped density pre-activation ``(N,)``."""
        if self.arch == "dense":
            u = F._to_unit(x, self.encoder.cfg)
            return F.clamp_log_sigma(
                F.sample_grid(self.encoder.grid[...][..., :1], u)[:, 0]
            )
        return F.clamp_log_sigma(self.feature(x)[:, 0])

    def __call__(self, x: jax.Array, d: jax.Array) -> F.FieldOutput:
        if self.arch == "dense":
            vals = self.encoder(x)
            coeffs = vals[:, 1:].reshape(-1, 3, 9)
            rgb = jax.nn.sigmoid(jnp.einsum("nck,nk->nc", coeffs, sh.sh_basis(d, 2)))
            return F.FieldOutput(None, F.clamp_log_sigma(vals[:, 0]), rgb)
        h = self.feature(x)
        inp = jnp.concatenate([sh.sh_basis(d, 3), h[:, 1:]], axis=-1)
        rgb = jax.nn.sigmoid(self.color_net(inp))
        return F.FieldOutput(h, F.clamp_log_sigma(h[:, 0]), rgb)
