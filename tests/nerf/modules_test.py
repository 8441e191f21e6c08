"""The NNX modules reproduce the former pure-function fields exactly.

The reference below is the pure-function implementation the modules replaced
(parameter dicts in, arrays out), kept verbatim apart from names.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxsuite.core import sh
from jaxsuite.nerf import fields as F
from jaxsuite.nerf import modules

CFG = F.FieldConfig(
    hidden=16,
    hash_levels=2,
    hash_log2_table=8,
    hash_max_resolution=16.0,
    mlp_depth=3,
    mlp_width=16,
    mlp_freqs=4,
    vm_resolution=8,
    vm_sigma_rank=2,
    vm_color_rank=2,
    dense_resolution=6,
)


def old_init(key: jax.Array, arch: str, cfg: F.FieldConfig) -> F.Params:
    """Parameters of architecture ``arch`` (one of ``F.ARCHS``)."""
    k_enc, k_sig, k_col = jax.random.split(key, 3)
    color_net = F._mlp_init(k_col, (16 + 15, cfg.hidden, cfg.hidden, 3))
    sigma_net = F._mlp_init(k_sig, (cfg.enc_dim, cfg.hidden, F.FEATURE_DIM))
    if arch == "hash":
        from jaxsuite.kernels.hash_encoding.reference import init_table

        table = init_table(k_enc, cfg.hash_config())
        return {
            "encoder": {"table": table},
            "sigma_net": sigma_net,
            "color_net": color_net,
        }
    if arch == "mlp":
        d_in = 3 + 6 * cfg.mlp_freqs
        keys = jax.random.split(k_enc, cfg.mlp_depth + 1)
        layers, n_in = {}, d_in
        for i in range(cfg.mlp_depth):
            if i == cfg.mlp_depth // 2 and i > 0:
                n_in += d_in
            layers[f"w{i}"] = F._linear_init(keys[i], n_in, cfg.mlp_width)
            layers[f"b{i}"] = jnp.zeros((cfg.mlp_width,))
            n_in = cfg.mlp_width
        layers["w_out"] = F._linear_init(keys[-1], n_in, cfg.enc_dim)
        layers["b_out"] = jnp.zeros((cfg.enc_dim,))
        return {"encoder": layers, "sigma_net": sigma_net, "color_net": color_net}
    if arch == "vm":
        r, rs, rc = cfg.vm_resolution, cfg.vm_sigma_rank, cfg.vm_color_rank
        ks = jax.random.split(k_enc, 5)
        enc = {
            "sigma_planes": 0.1 * jax.random.normal(ks[0], (3, r, r, rs)),
            "sigma_lines": 0.1 * jax.random.normal(ks[1], (3, r, rs)),
            "color_planes": 0.1 * jax.random.normal(ks[2], (3, r, r, rc)),
            "color_lines": 0.1 * jax.random.normal(ks[3], (3, r, rc)),
            "basis_mat": F._linear_init(ks[4], 3 * rc, F.FEATURE_DIM - 1),
        }
        return {"encoder": enc, "color_net": color_net}
    if arch == "dense":
        r = cfg.dense_resolution
        grid = 0.1 * jax.random.normal(k_enc, (r, r, r, 1 + 3 * 9))
        return {"encoder": {"grid": grid}}
    raise ValueError(f"Unknown architecture {arch!r}; choose from {F.ARCHS}.")


def old_feature(
    params: F.Params, arch: str, cfg: F.FieldConfig, x: jax.Array
) -> jax.Array:
    """The aligned 16-d feature ``(N, 16)`` (not defined for ``dense``)."""
    enc = params["encoder"]
    if arch == "hash":
        h = F.hash_encode(F._to_unit(x, cfg), enc["table"], cfg)
        return F._mlp_apply(params["sigma_net"], h)
    if arch == "mlp":
        pe = F.positional_encoding(x / cfg.bound, cfg.mlp_freqs)
        h = pe
        for i in range(cfg.mlp_depth):
            if i == cfg.mlp_depth // 2 and i > 0:
                h = jnp.concatenate([h, pe], axis=-1)
            h = jax.nn.relu(h @ enc[f"w{i}"] + enc[f"b{i}"][None])
        h = h @ enc["w_out"] + enc["b_out"][None]
        return F._mlp_apply(params["sigma_net"], h)
    if arch == "vm":
        u = F._to_unit(x, cfg)
        sig = jnp.sum(F._vm_features(enc["sigma_planes"], enc["sigma_lines"], u), -1)
        col = (
            F._vm_features(enc["color_planes"], enc["color_lines"], u)
            @ enc["basis_mat"]
        )
        return jnp.concatenate([sig[:, None], col], axis=-1)
    raise ValueError(f"Architecture {arch!r} has no aligned feature.")


def old_log_sigma(
    params: F.Params, arch: str, cfg: F.FieldConfig, x: jax.Array
) -> jax.Array:
    """Clamped density pre-activation only, ``(N, 3) -> (N,)`` (for occupancy)."""
    if arch == "dense":
        return F.clamp_log_sigma(
            F.sample_grid(params["encoder"]["grid"][..., :1], F._to_unit(x, cfg))[:, 0]
        )
    return F.clamp_log_sigma(old_feature(params, arch, cfg, x)[:, 0])


def old_query(
    params: F.Params, arch: str, cfg: F.FieldConfig, x: jax.Array, d: jax.Array
) -> F.FieldOutput:
    """Evaluates the field at points ``x (N, 3)`` seen along unit ``d (N, 3)``."""
    if arch == "dense":
        vals = F.sample_grid(params["encoder"]["grid"], F._to_unit(x, cfg))
        coeffs = vals[:, 1:].reshape(-1, 3, 9)
        rgb = jax.nn.sigmoid(jnp.einsum("nck,nk->nc", coeffs, sh.sh_basis(d, 2)))
        return F.FieldOutput(None, F.clamp_log_sigma(vals[:, 0]), rgb)
    h = old_feature(params, arch, cfg, x)
    inp = jnp.concatenate([sh.sh_basis(d, 3), h[:, 1:]], axis=-1)
    rgb = jax.nn.sigmoid(F._mlp_apply(params["color_net"], inp))
    return F.FieldOutput(h, F.clamp_log_sigma(h[:, 0]), rgb)


@pytest.mark.parametrize("arch", F.ARCHS)
def test_module_matches_the_pure_function_exactly(arch):
    key = jax.random.key(7)
    module = modules.Field(arch, CFG, key)
    assert isinstance(module, nnx.Module)
    params = nnx.to_pure_dict(nnx.split(module)[1])
    old = old_init(key, arch, CFG)
    assert jax.tree.structure(params) == jax.tree.structure(old)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(old)):
        np.testing.assert_array_equal(a, b)
    # Trained-like values: perturb every tensor, then compare outputs.
    leaves, tree = jax.tree.flatten(old)
    keys = jax.random.split(jax.random.key(8), len(leaves))
    old = jax.tree.unflatten(
        tree, [v + 0.3 * jax.random.normal(k, v.shape) for v, k in zip(leaves, keys)]
    )
    x = jax.random.uniform(jax.random.key(2), (64, 3), minval=-1.0, maxval=1.0)
    d = jax.random.normal(jax.random.key(3), (64, 3))
    d = d / jnp.linalg.norm(d, axis=-1, keepdims=True)
    new_out = jax.jit(F.query, static_argnums=(1, 2))(old, arch, CFG, x, d)
    old_out = jax.jit(old_query, static_argnums=(1, 2))(old, arch, CFG, x, d)
    for a, b in zip(jax.tree.leaves(new_out), jax.tree.leaves(old_out)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    log_sigma = jax.jit(F.log_sigma, static_argnums=(1, 2))
    old_ls = jax.jit(old_log_sigma, static_argnums=(1, 2))
    np.testing.assert_allclose(
        log_sigma(old, arch, CFG, x), old_ls(old, arch, CFG, x), atol=1e-6
    )
    # Gradients through nnx.merge equal those of the pure function.
    grad = jax.jit(
        jax.grad(lambda q, f: jnp.sum(f(q, arch, CFG, x, d).rgb ** 2)),
        static_argnums=1,
    )
    g_new, g_old = grad(old, F.query), grad(old, old_query)
    for a, b in zip(jax.tree.leaves(g_new), jax.tree.leaves(g_old)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
