"""Wrapping, filters, merging, saving and bad input, checked on LoRA and peers."""

import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxsuite import lora
from jaxsuite.lora import transformer as tf
from tests.lora import common

P = tf.PROJECTIONS
ALL_METHODS = [
    lora.LoRAConfig(target_modules=("dense", "general", "einsum"), rank=2),
    lora.MoSConfig(
        target_modules=("dense", "general", "einsum"),
        rank=2,
        equivalent_rank=2,
        private_rank=1,
        shards_per_vector=2,
    ),
    lora.VeRAConfig(target_modules=("dense", "general", "einsum"), rank=16),
    lora.TiedLoRAConfig(target_modules=("dense", "general", "einsum"), rank=2),
    lora.PRoLoRAConfig(
        target_modules=("dense", "general", "einsum"),
        rank=3,
        unshared_rank=1,
        sharing_a=2,
        sharing_b=2,
    ),
]


def test_patterns_select_layers_by_suffix_glob_and_regex():
    names = lambda pats: lora.wrap(
        tf.Transformer(common.TINY, rngs=nnx.Rngs(0)),
        lora.LoRAConfig(target_modules=pats, rank=2),
    )
    assert names(("q_proj", "attn.v_proj")) == tuple(
        f"layers.{i}.attn.{p}" for i in range(3) for p in ("q_proj", "v_proj")
    )
    assert names("layers.[02].mlp.*") == tuple(
        f"layers.{i}.mlp.{p}"
        for i in (0, 2)
        for p in ("down_proj", "gate_proj", "up_proj")
    )
    assert names("re:layers\\.1\\..*_proj") == tuple(
        f"layers.1.{m}.{p}"
        for m, ps in (
            ("attn", ("k_proj", "o_proj", "q_proj", "v_proj")),
            ("mlp", ("down_proj", "gate_proj", "up_proj")),
        )
        for p in ps
    )
    assert names("mlp.*_proj") == tuple(
        f"layers.{i}.mlp.{p}"
        for i in range(3)
        for p in ("down_proj", "gate_proj", "up_proj")
    )
    # "proj" is not a suffix component of any name: no match.
    with pytest.raises(ValueError, match="layers.0.attn.k_proj"):
        names("proj")


def test_lora_output_is_base_plus_scaled_low_rank_update():
    layer = nnx.Linear(5, 7, rngs=nnx.Rngs(0))
    holder = nnx.Dict(lin=layer)
    w, bias = np.asarray(layer.kernel[...]), np.asarray(layer.bias[...])
    for rslora, scale in ((False, 12.0 / 3), (True, 12.0 / np.sqrt(3))):
        model = nnx.Dict(lin=nnx.Linear(5, 7, rngs=nnx.Rngs(0)))
        lora.wrap(
            model,
            lora.LoRAConfig(
                target_modules="lin", rank=3, alpha=12.0, use_rslora=rslora
            ),
        )
        common.randomize(model)
        a = np.asarray(model["lin"].lora_a[...])
        b = np.asarray(model["lin"].lora_b[...])
        x = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
        expected = x @ w + bias + scale * (x @ a) @ b
        np.testing.assert_allclose(
            model["lin"](jnp.asarray(x)), expected, rtol=1e-5, atol=1e-5
        )
    del holder


def test_lora_init_is_kaiming_uniform_a_and_zero_b():
    model = tf.Transformer(common.TINY, rngs=nnx.Rngs(0))
    x = jnp.zeros((2, 8), jnp.int32)
    before = model(x)
    lora.wrap(model, lora.LoRAConfig(target_modules=P, rank=4))
    np.testing.assert_array_equal(model(x), before)  # B = 0: no change at init
    a = np.asarray(model.layers[0].mlp.down_proj.lora_a[...])
    bound = 1 / np.sqrt(common.TINY.d_ff)
    assert a.shape == (common.TINY.d_ff, 4) and np.abs(a).max() <= bound
    assert np.abs(a).max() > 0.8 * bound  # uniform over the whole range


def test_optimizer_trains_adapters_only_and_select_picks_layers():
    model = tf.Transformer(common.TINY, rngs=nnx.Rngs(0))
    lora.wrap(model, lora.LoRAConfig(target_modules=P, rank=2))
    tokens = jax.random.randint(jax.random.PRNGKey(1), (4, 8), 0, 24)
    loss_fn = lambda m: optax.softmax_cross_entropy_with_integer_labels(
        m(tokens[:, :-1]), tokens[:, 1:]
    ).mean()
    for wrt, changed_prefix in ((lora.trainable, None), (lora.select("layers.1.*"), 1)):
        m = tf.Transformer(common.TINY, rngs=nnx.Rngs(0))
        lora.wrap(m, lora.LoRAConfig(target_modules=P, rank=2))
        common.randomize(m)
        before = common.flat(m)
        opt = nnx.Optimizer(m, optax.sgd(0.1), wrt=wrt)

        @nnx.jit
        def step(m, opt, wrt=wrt):
            opt.update(m, nnx.grad(loss_fn, argnums=nnx.DiffState(0, wrt))(m))

        step(m, opt)
        after = common.flat(m)
        for path, value in before.items():
            is_adapter = path[-1] in ("lora_a", "lora_b")
            in_scope = is_adapter and (
                changed_prefix is None or path[1] == changed_prefix
            )
            moved = not np.array_equal(value, after[path])
            assert moved == in_scope, path
    del model


@pytest.mark.parametrize("cfg", ALL_METHODS, ids=lambda c: c.method)
def test_merged_equals_unmerged_and_unwrap_restores_architecture(cfg):
    model = common.Mixed(nnx.Rngs(0))
    x = jax.random.normal(jax.random.PRNGKey(2), (2, 3, 6))
    base_out = model(x)
    kernels = common.flat(model, nnx.Param)
    lora.wrap(model, cfg)
    common.randomize(model)
    out = model(x)
    assert float(jnp.abs(out - base_out).max()) > 1e-3  # the update is active
    lora.merge(model)
    np.testing.assert_allclose(model(x), out, rtol=1e-4, atol=1e-5)
    lora.unmerge(model)
    np.testing.assert_allclose(model(x), out, rtol=1e-4, atol=1e-5)
    lora.unwrap(model)  # merges, then restores the original module tree
    assert isinstance(model.general, nnx.LinearGeneral)
    np.testing.assert_allclose(model(x), out, rtol=1e-4, atol=1e-5)
    assert set(common.flat(model, nnx.Param)) == set(kernels)


def test_save_and_load_adapters_roundtrip_and_refuse_another_model(tmp_path):
    cfg = lora.LoRAConfig(target_modules=("q_proj", "v_proj"), rank=2)
    model = tf.Transformer(common.TINY, rngs=nnx.Rngs(0))
    lora.wrap(model, cfg)
    common.randomize(model)
    path = lora.save_adapters(model, str(tmp_path / "adapters"))
    size = sum(
        os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs
    )
    assert size < 200_000  # adapters only: no base weights
    other = tf.Transformer(common.TINY, rngs=nnx.Rngs(7))
    lora.wrap(other, cfg)
    lora.load_adapters(other, path)
    chex.assert_trees_all_equal(lora.adapter_arrays(model), lora.adapter_arrays(other))
    # Another model: fewer layers, or other shapes, is refused by name.
    small = tf.Transformer(
        tf.TransformerConfig(vocab=24, d_model=24, n_layers=2, n_heads=2, d_ff=24),
        rngs=nnx.Rngs(0),
    )
    lora.wrap(small, cfg)
    with pytest.raises(ValueError, match="layers.2.attn.q_proj"):
        lora.load_adapters(small, path)
    wide = tf.Transformer(
        tf.TransformerConfig(vocab=24, d_model=32, n_layers=3, n_heads=2, d_ff=24),
        rngs=nnx.Rngs(0),
    )
    lora.wrap(wide, cfg)
    with pytest.raises(ValueError, match="layers.0.attn.q_proj: file"):
        lora.load_adapters(wide, path)


def test_bad_input_errors_name_the_layers():
    model = tf.Transformer(common.TINY, rngs=nnx.Rngs(0))
    with pytest.raises(
        ValueError, match=r"\['qkv'\].*Layers seen: .*layers.0.attn.k_proj"
    ):
        lora.wrap(model, lora.LoRAConfig(target_modules=("q_proj", "qkv"), rank=2))
    with pytest.raises(ValueError, match=r"layers.0.attn.q_proj.*24 x 24"):
        lora.wrap(model, lora.LoRAConfig(target_modules="q_proj", rank=25))
    with pytest.raises(
        ValueError, match="divide d_in=24 and d_out=24 of layer layers.0"
    ):
        lora.wrap(
            model,
            lora.MoSConfig(
                target_modules="up_proj", rank=2, equivalent_rank=2, shards_per_vector=5
            ),
        )
    # Nothing was wrapped by the failed calls.
    assert not lora.adapted_layers(model)
    uneven = nnx.Dict(
        layers=nnx.List(
            [nnx.Linear(4, 4, rngs=nnx.Rngs(0)), nnx.Linear(4, 6, rngs=nnx.Rngs(0))]
        )
    )
    with pytest.raises(ValueError, match="shapes differ.*layers.0: 4x4, layers.1: 4x6"):
        lora.wrap(uneven, lora.TiedLoRAConfig(target_modules="layers.*", rank=2))


def test_dropout_acts_in_training_only():
    cfg = lora.LoRAConfig(target_modules="dense", rank=2, dropout=0.5)
    model = common.Mixed(nnx.Rngs(0))
    lora.wrap(model, cfg)
    common.randomize(model)
    x = jnp.ones((2, 3, 6))
    first, second = model(x), model(x)
    assert float(jnp.abs(first - second).max()) > 1e-4  # fresh masks per call
    model.eval()
    plain = common.Mixed(nnx.Rngs(0))
    lora.wrap(plain, lora.LoRAConfig(target_modules="dense", rank=2))
    common.randomize(plain)
    np.testing.assert_allclose(model(x), plain(x), rtol=1e-6)


def _stacked_values(scanned, unrolled, seed=3):
    """Random adapter values for the scanned model and the same, unstacked."""
    rng = np.random.default_rng(seed)
    s_vals, u_vals = {}, {}
    for path, value in common.flat(scanned, lora.AdapterParam).items():
        v = rng.normal(size=value.shape).astype(np.float32) * 0.2
        s_vals[path] = v
        if path[-2] == "shared_arrays":  # owned by layer 0 when unrolled
            u_vals[(path[0], 0, *path[1:])] = v
        else:
            for i in range(v.shape[0]):
                u_vals[(path[0], i, *path[1:])] = v[i]
    return s_vals, u_vals


@pytest.mark.parametrize(
    "cfg",
    [
        lora.LoRAConfig(target_modules=P, rank=2),
        lora.MoSConfig(
            target_modules=P, rank=4, equivalent_rank=2, shards_per_vector=2
        ),
    ],
    ids=lambda c: c.method,
)
def test_scanned_layers_match_unrolled_layers(cfg):
    scanned = tf.Transformer(
        tf.TransformerConfig(**{**common.TINY.__dict__, "scan_layers": True}),
        rngs=nnx.Rngs(0),
    )
    unrolled = tf.Transformer(common.TINY, rngs=nnx.Rngs(1))
    base = {}
    for path, value in common.flat(scanned, nnx.Param).items():
        if path[0] == "layers":
            for i in range(value.shape[0]):
                base[(path[0], i, *path[1:])] = value[i]
        else:
            base[path] = value
    common.set_flat(unrolled, base)
    s_names, u_names = lora.wrap(scanned, cfg), lora.wrap(unrolled, cfg)
    assert len(s_names) == 7 and len(u_names) == 21
    # Identical seeds give identical index sets, layer by layer.
    if cfg.method == "mos":
        s_idx = common.flat(scanned, lora.AdapterState)
        u_idx = common.flat(unrolled, lora.AdapterState)
        for path, v in s_idx.items():
            for i in range(3):
                np.testing.assert_array_equal(v[i], u_idx[(path[0], i, *path[1:])])
    s_vals, u_vals = _stacked_values(scanned, unrolled)
    common.set_flat(scanned, s_vals)
    common.set_flat(unrolled, u_vals)
    tokens = jax.random.randint(jax.random.PRNGKey(0), (2, 8), 0, 24)
    np.testing.assert_allclose(
        common.run(scanned, tokens), common.run(unrolled, tokens), rtol=1e-4, atol=1e-5
    )

    def loss(model):
        return jnp.mean(model(tokens) ** 2)

    gs = common.adapter_grads(loss, scanned)
    gu = common.adapter_grads(loss, unrolled)
    gs = {p: np.asarray(v[...]) for p, v in nnx.to_flat_state(gs)}
    gu = {p: np.asarray(v[...]) for p, v in nnx.to_flat_state(gu)}
    # float32 sums in another order: the tolerance scales with the gradient.
    for path, g in gs.items():
        if path[-2] == "shared_arrays":
            ref = gu[(path[0], 0, *path[1:])]
            np.testing.assert_allclose(g, ref, rtol=1e-3, atol=1e-4 * np.abs(ref).max())
        else:
            for i in range(3):
                ref = gu[(path[0], i, *path[1:])]
                np.testing.assert_allclose(
                    g[i], ref, rtol=1e-3, atol=1e-4 * np.abs(ref).max()
                )
    # Merging a stacked layer folds every layer's update into its kernel slice.
    lora.merge(scanned)
    np.testing.assert_allclose(
        common.run(scanned, tokens), common.run(unrolled, tokens), rtol=1e-4, atol=1e-5
    )


def test_scan_without_broadcasting_shared_arrays_is_refused():
    class Stack(nnx.Module):
        def __init__(self, rngs):
            @nnx.split_rngs(splits=3)
            @nnx.vmap(in_axes=(0,), out_axes=0)
            def make(rngs):
                return nnx.Dict(q=nnx.Linear(4, 4, rngs=rngs))

            self.layers = make(rngs)

        def __call__(self, x):
            @nnx.scan(in_axes=(0, nnx.Carry), out_axes=nnx.Carry)
            def body(layer, h):
                return layer["q"](h)

            return body(self.layers, x)

    model = Stack(nnx.Rngs(0))
    lora.wrap(
        model,
        lora.MoSConfig(target_modules="q", rank=2, equivalent_rank=1, private_rank=0),
    )
    with pytest.raises(ValueError, match="scan_axes"):
        model(jnp.ones((2, 4)))
