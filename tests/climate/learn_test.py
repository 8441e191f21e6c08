"""CNN training regimes, skill metrics, attributions and the sparse model."""

import jax
import numpy as np
import pytest
from flax import nnx

from jaxsuite.climate import explain, learn


def _toy(n, seed):
    """Label = sign of the mean over a 4x8 patch (a learnable, local rule)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8, 16)).astype(np.float32)
    y = (x[:, :4, 8:].mean(axis=(1, 2)) > 0).astype(np.int32)
    return x, y


def test_metrics_against_closed_forms():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.6, 0.4, 0.9])
    assert learn.roc_auc(y, p) == pytest.approx(0.75)
    # Brier 0.185 vs constant 0.5 -> 0.25.
    assert learn.brier_skill_score(y, p, 0.5) == pytest.approx(1 - 0.185 / 0.25)
    assert learn.balanced_accuracy(y, p, 0.5) == pytest.approx(0.5)
    ci = learn.bootstrap_ci(y, np.stack([p, p]), np.array([0.5, 0.5]), n_boot=50)
    assert ci["auc"]["mean"] == pytest.approx(0.75) and ci["auc"]["seed_std"] == 0
    assert ci["auc"]["lo"] <= 0.75 <= ci["auc"]["hi"]


def test_cnn_learns_and_head_only_freezes_the_features():
    x, y = _toy(384, 0)
    xt, yt = _toy(256, 1)
    model = learn.make_model(8, 16, 0, channels=(4, 4, 4), hidden=8)
    trained, info = learn.train(
        model, x, y, xt, yt, steps=150, batch_size=64, learning_rate=3e-3, seed=0
    )
    auc = learn.roc_auc(yt, learn.predict_proba(trained, xt))
    assert auc > 0.85 and info["best_step"] > 0
    head, _ = learn.train(
        trained,
        x,
        1 - y,
        xt,
        1 - yt,
        steps=150,
        batch_size=64,
        learning_rate=3e-2,
        seed=0,
        trainable="head",
    )
    before, after = nnx.state(trained), nnx.state(head)
    np.testing.assert_array_equal(
        before["convs"][0]["kernel"][...], after["convs"][0]["kernel"][...]
    )
    np.testing.assert_array_equal(
        before["dense"]["kernel"][...], after["dense"]["kernel"][...]
    )
    assert not np.allclose(before["head"]["kernel"][...], after["head"]["kernel"][...])
    # Relabelled data: the new head flips the ranking.
    assert learn.roc_auc(1 - yt, learn.predict_proba(head, xt)) > 0.8


def test_expected_gradients_and_shap_agree_on_a_linear_model():
    """For a linear logit both are exact Shapley values: w * (x - mean background)."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(8, 16)).astype(np.float32)
    logit = lambda x: (x * w[None]).sum(axis=(-2, -1))  # noqa: E731
    x = rng.normal(size=(3, 8, 16)).astype(np.float32)
    bg = rng.normal(size=(6, 8, 16)).astype(np.float32)
    eg = explain.expected_gradients(logit, x, bg, jax.random.PRNGKey(0), samples=512)
    exact = w * (x - bg.mean(0))
    np.testing.assert_allclose(eg.sum((1, 2)), exact.sum((1, 2)), rtol=0.15, atol=0.5)
    block = (4, 8)
    sv = explain.shap_superpixels(lambda z: np.asarray(logit(z)), x, bg, block=block)
    np.testing.assert_allclose(sv, explain.superpixel_sums(exact, block), atol=1e-4)
    rho = explain.rank_agreement(explain.superpixel_sums(eg, block), sv)
    assert np.all(rho > 0.6)


def test_sparse_model_on_the_informative_pixels_keeps_the_skill():
    x, y = _toy(512, 2)
    xt, yt = _toy(256, 3)
    importance = np.zeros((8, 16))
    importance[:4, 8:] = 1.0 + np.arange(32).reshape(4, 8)
    mask = explain.top_fraction_mask(importance, 0.25)
    assert mask.sum() == 32 and mask[:4, 8:].all()
    flat = lambda a: a.reshape(len(a), -1)  # noqa: E731
    p = explain.sparse_model(flat(x), y, flat(xt), mask.ravel())
    assert learn.roc_auc(yt, p) > 0.95
    other = np.zeros((8, 16), bool)
    other[4:, :8] = True
    assert (
        learn.roc_auc(yt, explain.sparse_model(flat(x), y, flat(xt), other.ravel()))
        < 0.7
    )
