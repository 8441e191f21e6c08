"""MoS construction and the peers' formulas against independent references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxsuite import lora
from jaxsuite.lora import transformer as tf
from tests.lora import common

P = tf.PROJECTIONS
LLAMA = tf.projection_shapes(tf.LLAMA2_7B)


def test_llama2_7b_trainable_counts_from_shapes():
    mos = lambda e, r: lora.MoSConfig(
        target_modules=P, rank=r, equivalent_rank=e, private_rank=1, shards_per_vector=2
    )
    assert lora.count_from_shapes(mos(2, 8), LLAMA) == 4_997_120
    assert lora.count_from_shapes(mos(8, 32), LLAMA) == 19_988_480
    lora64 = lora.LoRAConfig(target_modules=P, rank=64)
    assert lora.count_from_shapes(lora64, LLAMA) == 159_907_840
    assert lora.count_from_shapes(
        lora.LoRAConfig(target_modules=P, rank=16), LLAMA
    ) == (39_976_960)
    assert lora.count_from_shapes(
        lora.VeRAConfig(target_modules=P, rank=256), LLAMA
    ) == (1_417_216)
    # The same count from a wrapped LLaMA-width model, built abstractly.
    two = tf.TransformerConfig(
        vocab=32000, d_model=4096, n_layers=8, n_heads=32, d_ff=11008
    )

    def build():
        model = tf.Transformer(two, rngs=nnx.Rngs(0))
        lora.wrap(model, mos(2, 8))
        return model

    abstract = nnx.eval_shape(build)
    assert lora.count_params(abstract) == 4_997_120 // 4
    assert (
        lora.count_from_shapes(mos(2, 8), tf.projection_shapes(two)) == 4_997_120 // 4
    )


def test_mos_index_invariants():
    cfg = lora.MoSConfig(
        target_modules="x",
        rank=5,
        equivalent_rank=3,
        private_rank=1,
        shards_per_vector=2,
        seed=4,
    )
    L, sh, r, e, p = 6, 2, 5, 3, 1
    n_public = (e - p) * L * sh
    draws = {w: [lora.mos_indices(cfg, 0, L, k, w) for k in range(L)] for w in (0, 1)}
    privates = []
    for w in (0, 1):
        for k, idx in enumerate(draws[w]):
            assert idx.shape == (r * sh,) and idx.dtype == np.int32
            public, private = idx[: (r - p) * sh], idx[(r - p) * sh :]
            assert len(set(public.tolist())) == len(public)  # no repeats
            assert public.min() >= 0 and public.max() < n_public
            np.testing.assert_array_equal(
                private, n_public + np.arange(k * p * sh, (k + 1) * p * sh)
            )
            if w == 0:
                privates.append(set(private.tolist()))
    for i in range(L):  # private blocks are disjoint
        for j in range(i + 1, L):
            assert not privates[i] & privates[j]
    # A and B draws are independent; the seed reproduces them.
    same = np.mean([np.mean(a == b) for a, b in zip(draws[0], draws[1])])
    assert same < 0.5
    np.testing.assert_array_equal(lora.mos_indices(cfg, 0, L, 2, 0), draws[0][2])
    other = lora.MoSConfig(**{**cfg.__dict__, "seed": 5})
    assert not np.array_equal(lora.mos_indices(other, 0, L, 2, 0), draws[0][2])
    tied = lora.MoSConfig(**{**cfg.__dict__, "pair_dissociation": False})
    np.testing.assert_array_equal(
        lora.mos_indices(tied, 0, L, 3, 0), lora.mos_indices(tied, 0, L, 3, 1)
    )
    pure = lora.MoSConfig(**{**cfg.__dict__, "subset_selection": False})
    assert all(
        np.array_equal(lora.mos_indices(pure, 0, L, k, 0)[:8], np.arange(8))
        for k in range(L)
    )


def _pools(model, group):
    holder = model.layers[0]
    for part in group.split(".")[2:]:
        holder = getattr(holder, part)
    return holder.shared_arrays


@pytest.mark.parametrize("sh", [1, 2])
def test_mos_without_sharing_is_lora_in_outputs_and_gradients(sh):
    e = 2
    mos = tf.Transformer(common.TINY, rngs=nnx.Rngs(0))
    plain = tf.Transformer(common.TINY, rngs=nnx.Rngs(0))
    lora.wrap(
        mos,
        lora.MoSConfig(
            target_modules=P,
            rank=e,
            equivalent_rank=e,
            private_rank=e,
            shards_per_vector=sh,
        ),
    )
    lora.wrap(plain, lora.LoRAConfig(target_modules=P, rank=e))
    common.randomize(mos)
    # Layer k owns pool rows [k e sh, (k + 1) e sh); rank vector j is the
    # concatenation of its sh consecutive shards.
    values = {}
    for name, layer in lora.adapted_layers(mos).items():
        k = int(name.split(".")[1])
        pool_a = np.asarray(layer.shared_arrays.pool_a[...])
        pool_b = np.asarray(layer.shared_arrays.pool_b[...])
        rows = slice(k * e * sh, (k + 1) * e * sh)
        path = tuple(int(p) if p.isdigit() else p for p in name.split("."))
        values[(*path, "lora_a")] = pool_a[rows].reshape(e, -1).T
        values[(*path, "lora_b")] = pool_b[rows].reshape(e, -1)
    common.set_flat(plain, values)
    tokens = jax.random.randint(jax.random.PRNGKey(0), (2, 8), 0, 24)
    np.testing.assert_allclose(
        common.run(mos, tokens), common.run(plain, tokens), rtol=1e-5, atol=1e-6
    )

    def loss(model):
        return jnp.mean(jnp.sin(model(tokens)))

    g_mos = common.adapter_grads(loss, mos)
    g_lora = common.adapter_grads(loss, plain)
    g_lora = {p: np.asarray(v[...]) for p, v in nnx.to_flat_state(g_lora)}
    g_mos = {p: np.asarray(v[...]) for p, v in nnx.to_flat_state(g_mos)}
    for path, g in g_mos.items():
        which = path[-1][-1]  # pool_a or pool_b
        layer_path = path[:-2]
        for k in range(common.TINY.n_layers):
            lp = (layer_path[0], k, *layer_path[2:])
            block = g[k * e * sh : (k + 1) * e * sh].reshape(e, -1)
            ref = g_lora[(*lp, f"lora_{which}")]
            # float32 sums in another order: the tolerance scales with the gradient.
            np.testing.assert_allclose(
                block,
                ref.T if which == "a" else ref,
                rtol=1e-4,
                atol=1e-5 * np.abs(ref).max(),
            )


def test_unused_pool_rows_get_exactly_zero_gradient():
    model = tf.Transformer(common.TINY, rngs=nnx.Rngs(0))
    cfg = lora.MoSConfig(
        target_modules=("q_proj", "up_proj"),
        rank=2,
        equivalent_rank=4,
        private_rank=0,
        shards_per_vector=1,
    )
    lora.wrap(model, cfg)
    common.randomize(model)
    tokens = jax.random.randint(jax.random.PRNGKey(0), (2, 8), 0, 24)
    grads = common.adapter_grads(lambda m: jnp.mean(m(tokens) ** 2), model)
    grads = {p: np.asarray(v[...]) for p, v in nnx.to_flat_state(grads)}
    layers = lora.adapted_layers(model)
    for proj in ("attn.q_proj", "mlp.up_proj"):
        for which in ("a", "b"):
            used = set()
            for k in range(3):
                used |= set(
                    np.asarray(
                        getattr(layers[f"layers.{k}.{proj}"], f"idx_{which}")[...]
                    ).tolist()
                )
            g = grads[("layers", 0, *proj.split("."), "shared_arrays", f"pool_{which}")]
            assert g.shape[0] == 4 * 3  # e * L * l rows
            unused = sorted(set(range(g.shape[0])) - used)
            assert unused, "the draw used every row; pick a larger pool"
            assert np.all(g[unused] == 0.0)
            assert np.all(np.abs(g[sorted(used)]).sum(axis=1) > 0)


def test_mos_factors_concatenate_gathered_shards_in_order():
    cfg = lora.MoSConfig(
        target_modules="lin",
        rank=3,
        equivalent_rank=2,
        private_rank=1,
        shards_per_vector=3,
    )
    model = nnx.Dict(
        layers=nnx.List(
            [nnx.Dict(lin=nnx.Linear(6, 9, rngs=nnx.Rngs(i))) for i in range(2)]
        )
    )
    lora.wrap(model, cfg)
    common.randomize(model)
    layer = model["layers"][1]["lin"]
    pool_a = np.asarray(layer.shared_arrays.pool_a[...])
    pool_b = np.asarray(layer.shared_arrays.pool_b[...])
    ia, ib = np.asarray(layer.idx_a[...]), np.asarray(layer.idx_b[...])
    a, b = layer.factors()
    for j in range(3):
        ref_a = np.concatenate([pool_a[ia[j * 3 + s]] for s in range(3)])
        ref_b = np.concatenate([pool_b[ib[j * 3 + s]] for s in range(3)])
        np.testing.assert_array_equal(np.asarray(a)[:, j], ref_a)
        np.testing.assert_array_equal(np.asarray(b)[j], ref_b)
    # Pools are shared: both layers reference the same arrays.
    assert layer.shared_arrays is model["layers"][0]["lin"].shared_arrays


def _prolora_reference(chunk, unshared, copies, length):
    """The official de_reduce, written with explicit index arithmetic."""
    c, rs = chunk.shape
    shift = max(rs // copies, 1)
    full = np.zeros((c * copies, rs), np.float32)
    for i in range(copies):
        for k in range(rs):
            full[i * c : (i + 1) * c, k] = chunk[:, (k + i * shift) % rs]
    return np.concatenate([full[:length], unshared], axis=1)


def test_peer_factors_match_reference_formulas():
    x = dict(target_modules="lin")
    rng = np.random.default_rng(0)
    for cfg in (
        lora.VeRAConfig(**x, rank=5),
        lora.TiedLoRAConfig(**x, rank=3),
        lora.PRoLoRAConfig(**x, rank=5, unshared_rank=1, sharing_a=3, sharing_b=2),
    ):
        model = nnx.Dict(
            layers=nnx.List(
                [nnx.Dict(lin=nnx.Linear(7, 9, rngs=nnx.Rngs(i))) for i in range(2)]
            )
        )
        lora.wrap(model, cfg)
        common.randomize(model)
        layer = model["layers"][1]["lin"]
        val = lambda n, src=layer: np.asarray(getattr(src, n)[...])
        a, b = map(np.asarray, layer.factors())
        if cfg.method == "vera":
            sh = layer.shared_arrays
            ref_a = val("proj_a", sh)[:7] @ np.diag(val("vera_d"))
            ref_b = (
                np.diag(val("vera_d") * 0 + 1)
                @ val("proj_b", sh)[:, :9]
                @ np.diag(val("vera_b"))
            )
        elif cfg.method == "tied_lora":
            sh = layer.shared_arrays
            assert sh is model["layers"][0]["lin"].shared_arrays
            ref_a = val("tied_a", sh) @ np.diag(val("tied_u"))
            ref_b = val("tied_b", sh) @ np.diag(val("tied_v"))
        else:
            ref_a = _prolora_reference(val("chunk_a"), val("unshared_a"), 3, 7)
            ref_bt = _prolora_reference(val("chunk_b").T, val("unshared_b").T, 2, 9)
            ref_b = ref_bt.T
            assert val("chunk_a").shape == (3, 4) and val("chunk_b").shape == (4, 5)
        np.testing.assert_allclose(a, ref_a, rtol=1e-6)
        np.testing.assert_allclose(b, ref_b, rtol=1e-6)
        # The update is exactly scale * A @ B on the output.
        inp = rng.normal(size=(3, 7)).astype(np.float32)
        base = inp @ val("kernel", layer.base) + val("bias", layer.base)
        np.testing.assert_allclose(
            layer(jnp.asarray(inp)),
            base + cfg.scale * inp @ ref_a @ ref_b,
            rtol=1e-4,
            atol=1e-5,
        )


def test_peer_counts_follow_their_formulas():
    c, L = common.TINY, common.TINY.n_layers
    shapes = {k: v for k, v in tf.projection_shapes(c).items()}
    per_type = {}
    for name, (d_in, d_out) in shapes.items():
        per_type[name.split(".", 2)[2]] = (d_in, d_out)
    r = 3
    tied = sum(r * (i + o) + L * (r + o) for i, o in per_type.values())
    assert (
        lora.count_from_shapes(lora.TiedLoRAConfig(target_modules=P, rank=r), shapes)
        == tied
    )
    pro = lora.PRoLoRAConfig(
        target_modules=P, rank=4, unshared_rank=1, sharing_a=3, sharing_b=3
    )
    expected = L * sum(
        3 * (-(-i // 3) + -(-o // 3)) + (i + o) for i, o in per_type.values()
    )
    assert lora.count_from_shapes(pro, shapes) == expected
    vera = sum(L * (o + 64) for _, o in per_type.values())
    assert (
        lora.count_from_shapes(lora.VeRAConfig(target_modules=P, rank=64), shapes)
        == vera
    )
    for cfg in (lora.TiedLoRAConfig(target_modules=P, rank=r), pro):
        model = tf.Transformer(c, rngs=nnx.Rngs(0))
        lora.wrap(model, cfg)
        assert lora.count_params(model) == lora.count_from_shapes(cfg, shapes)
