"""GraphSAGE-mean against a per-node numpy reference; data parallelism; training
transparency (identical parameters under every cache)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxsuite.core import devices
from jaxsuite.gnn import cache as cache_lib
from jaxsuite.gnn import fetcher as fetcher_lib
from jaxsuite.gnn import graph as graph_lib
from jaxsuite.gnn import model, storage
from jaxsuite.gnn import sampler as sampler_lib

N_DEV = 8


def _reference(params, x0, x1, x2, m1, m2):
    """Node-by-node 2-layer GraphSAGE-mean in float64 numpy."""
    p = [{k: np.asarray(v, np.float64) for k, v in layer.items()} for layer in params]

    def sage(layer, h, nbrs, mask, act):
        nb = [n for n, m in zip(nbrs, mask) if m]
        mean = np.mean(nb, axis=0) if nb else np.zeros_like(h)
        out = h @ layer["w_self"] + mean @ layer["w_neigh"] + layer["b"]
        return np.maximum(out, 0) if act else out

    logits = []
    for b in range(x0.shape[0]):
        h1_nbrs = [
            sage(p[0], x1[b, i], x2[b, i], m2[b, i], True) for i in range(x1.shape[1])
        ]
        h0 = sage(p[0], x0[b], x1[b], m1[b], True)
        logits.append(sage(p[1], h0, h1_nbrs, m1[b], False))
    return np.stack(logits)


def test_apply_sage_matches_reference():
    rng = np.random.default_rng(0)
    b, f1, f2, d = 3, 4, 2, 5
    params = model.init_sage(jax.random.PRNGKey(0), (d, 6, 3))
    x0 = rng.standard_normal((b, d))
    x1 = rng.standard_normal((b, f1, d))
    x2 = rng.standard_normal((b, f1, f2, d))
    m1 = rng.random((b, f1)) < 0.7
    m2 = rng.random((b, f1, f2)) < 0.7
    m1[0] = False  # a seed without neighbours
    got = model.apply_sage(
        params, [jnp.asarray(a, jnp.float32) for a in (x0, x1, x2)], [m1, m2]
    )
    want = _reference(params, x0, x1, x2, m1, m2)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-5)


def test_graphsage_module_is_the_pure_function():
    rng = np.random.default_rng(2)
    b, f1, f2, d = 3, 4, 2, 5
    module = model.GraphSAGE((d, 6, 3), rngs=nnx.Rngs(7))
    x = [rng.standard_normal(s).astype(np.float32) for s in ((b, d), (b, f1, d))]
    x.append(rng.standard_normal((b, f1, f2, d)).astype(np.float32))
    masks = [rng.random((b, f1)) < 0.7, rng.random((b, f1, f2)) < 0.7]
    params = module.to_params()
    got = module(x, masks)
    np.testing.assert_array_equal(got, model.apply_sage(params, x, masks))
    np.testing.assert_allclose(
        got, _reference(params, *x, *masks), rtol=1e-4, atol=1e-5
    )
    # Loading another parameter list makes it compute that list's logits.
    other = model.init_sage(jax.random.PRNGKey(3), (d, 6, 3))
    np.testing.assert_array_equal(
        module.load_params(other)(x, masks), model.apply_sage(other, x, masks)
    )
    # nnx.grad through the module gives the pure function's gradients.
    labels = jnp.asarray([0, 2, 1])

    def loss(logits):
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    grads = nnx.grad(lambda m: loss(m(x, masks)))(module)
    want = jax.grad(lambda p: loss(model.apply_sage(p, x, masks)))(other)
    for i, layer in enumerate(want):
        for name, value in layer.items():
            np.testing.assert_allclose(
                getattr(grads, name)[i][...], value, rtol=1e-6, atol=1e-7
            )
    with pytest.raises(ValueError, match="layers"):
        module.load_params(other[:1])


def test_data_parallel_step_equals_global_batch_gradient():
    rng = np.random.default_rng(1)
    u, b, f1, f2, d, c = 20, 4, 3, 2, 6, 3
    mesh = devices.make_mesh((N_DEV,), ("dev",))
    feats = rng.standard_normal((N_DEV, u, d)).astype(np.float32)
    pos = (
        rng.integers(0, u, (N_DEV, b)).astype(np.int32),
        rng.integers(0, u, (N_DEV, b, f1)).astype(np.int32),
        rng.integers(0, u, (N_DEV, b, f1, f2)).astype(np.int32),
    )
    masks = (rng.random((N_DEV, b, f1)) < 0.8, rng.random((N_DEV, b, f1, f2)) < 0.8)
    labels = rng.integers(0, c, (N_DEV, b)).astype(np.int32)
    params = model.init_sage(jax.random.PRNGKey(1), (d, 8, c))
    tx = optax.sgd(1.0)
    step = model.make_train_step(mesh, "dev", tx)
    new, _, loss, _ = step(params, tx.init(params), feats, pos, masks, labels)

    def global_loss(p):
        losses = [
            model.loss_and_accuracy(
                p,
                feats[i],
                [q[i] for q in pos],
                [m[i] for m in masks],
                labels[i],
            )[0]
            for i in range(N_DEV)
        ]
        return jnp.mean(jnp.stack(losses))

    ref_loss, grads = jax.jit(jax.value_and_grad(global_loss))(params)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    for a, p, g in zip(
        jax.tree.leaves(new), jax.tree.leaves(params), jax.tree.leaves(grads)
    ):
        np.testing.assert_allclose(a, p - g, rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    g = graph_lib.power_law_graph(2, 1500, avg_degree=8, num_classes=4)
    x = graph_lib.class_features(3, g.labels, 16, 4, noise=1.0)
    path = storage.write_features(str(tmp_path_factory.mktemp("m") / "x.f32"), x)
    store = storage.FeatureStore(path, g.num_nodes, 16)
    train, _, test = graph_lib.split_nodes(0, g.num_nodes)
    s = sampler_lib.NodeSampler(g, train[:512], (4, 3), 8, N_DEV, seed=5)
    return g, store, s, test


def _train(world, cfg):
    g, store, s, _ = world
    mesh = devices.make_mesh((N_DEV,), ("dev",))
    batches = [s.batch(*es) for es in s.schedule(2)]
    inputs = [(b.inputs, b.num_inputs) for b in batches]
    reuse = (
        None
        if cfg.mode == "none"
        else fetcher_lib.ReuseSchedule(inputs, cfg.mode == "shared")
    )
    static = graph_lib.quantize_u8(graph_lib.reverse_pagerank(g))
    f = fetcher_lib.FeatureFetcher(cfg, mesh, "dev", store, static, reuse, s.input_len)
    tx = optax.adam(1e-2)
    step = model.make_train_step(mesh, "dev", tx)
    params = model.init_sage(jax.random.PRNGKey(0), (16, 16, 4))
    opt, state = tx.init(params), f.init_state()
    for t, b in enumerate(batches):
        state, feats, _ = f.step(state, t, b)
        params, opt, _, _ = step(params, opt, feats, b.positions, b.masks, b.labels)
    return params


def test_training_is_identical_under_every_cache(world):
    spec = cache_lib.PolicySpec("hybrid", window=4, protect=2)
    cfgs = [
        fetcher_lib.FetchConfig("none"),
        fetcher_lib.FetchConfig(
            "independent", cache_lib.PolicySpec("lru"), num_sets=8, ways=4
        ),
        fetcher_lib.FetchConfig(
            "shared", spec, num_sets=8, ways=4, victim=True, ring_slots=8, ring_depth=16
        ),
    ]
    results = [_train(world, c) for c in cfgs]
    for other in results[1:]:
        for a, b in zip(jax.tree.leaves(results[0]), jax.tree.leaves(other)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    g, store, s, test = world
    acc = model.evaluate(results[0], s, store, test[:300], chunk=128)
    assert acc > 1.5 / g.num_classes  # well above chance after two epochs
