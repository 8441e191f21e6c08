"""Attributions: expected gradients in JAX, SHAP on superpixels, sparse models.

* ``expected_gradients``: ``E_{x' ~ background, a ~ U(0,1)} [(x - x') *
  grad f(x' + a (x - x'))]`` of the logit, per pixel (Erion et al. 2021; the
  algorithm behind shap's GradientExplainer, which does not accept JAX).
* ``shap_superpixels``: Shapley values from ``shap.PermutationExplainer`` of
  the model wrapped as a numpy function, on ``block``-sized superpixels: for
  a sample x, feature k switches superpixel k between each background map
  and x, and the output is the logit averaged over the background maps, so
  both explainers attribute ``f(x) - E f(background)`` (EG approximately).
* ``superpixel_sums`` / ``rank_agreement``: the cross-check (Spearman rank
  correlation of the two attributions per sample).
* ``sparse_model``: logistic regression on the top-k% pixels by mean |EG|.
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats
from sklearn.linear_model import LogisticRegression


def expected_gradients(
    logit_fn: Callable[[jax.Array], jax.Array],
    x: np.ndarray,
    background: np.ndarray,
    key: jax.Array,
    *,
    samples: int = 64,
) -> np.ndarray:
    """Expected-gradients attributions of ``logit_fn`` at each input.

    Args:
      logit_fn: (B, H, W) -> (B,) logits (pure, jittable).
      x: (n, H, W) inputs to explain.
      background: (b, H, W) reference inputs.
      key: PRNG key for the reference and interpolation draws.
      samples: draws per input.

    Returns:
      (n, H, W) attributions; each sums to about ``f(x) - E f(background)``.
    """
    bg = jnp.asarray(background, jnp.float32)
    one = _eg_one(logit_fn, samples)
    keys = jax.random.split(key, len(x))
    xs = jnp.asarray(x, jnp.float32)
    return np.stack([np.asarray(one(xs[i], keys[i], bg)) for i in range(len(x))])


@functools.lru_cache(maxsize=8)
def _eg_one(logit_fn: Callable, samples: int) -> Callable:
    grad_fn = jax.grad(lambda z: jnp.sum(logit_fn(z)))

    @jax.jit
    def one(xi, k, bg):
        k1, k2 = jax.random.split(k)
        ref = bg[jax.random.randint(k1, (samples,), 0, bg.shape[0])]
        alpha = jax.random.uniform(k2, (samples, 1, 1))
        diff = xi[None] - ref
        g = grad_fn(ref + alpha * diff)
        return jnp.mean(g * diff, axis=0)

    return one


def _import_shap():
    """Imports shap, silencing the deprecation notices its import raises.

    When this call is the one that loads shap, shap's numba kernels are left
    as Python functions (``numba.config.DISABLE_JIT`` during the import).
    For the permutation explainer they only copy masked rows and average the
    outputs over one background row, so they give the same values; running
    them as Python takes milliseconds per explanation, while compiling them
    takes about 10 s in every new process.
    """
    if "shap" not in sys.modules:
        import numba

        jit_was_disabled = numba.config.DISABLE_JIT
        numba.config.DISABLE_JIT = True
        try:
            return _import_quietly()
        finally:
            numba.config.DISABLE_JIT = jit_was_disabled
    return _import_quietly()


def _import_quietly():
    """``import shap`` with its deprecation and future warnings ignored."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        import shap
    return shap


def superpixel_index(shape: tuple[int, int], block: tuple[int, int]) -> np.ndarray:
    """(H, W) map from pixel to superpixel id (row-major blocks)."""
    H, W = shape
    if H % block[0] or W % block[1]:
        raise ValueError(f"{shape} is not divisible into {block} blocks")
    r = np.arange(H)[:, None] // block[0]
    c = np.arange(W)[None, :] // block[1]
    return r * (W // block[1]) + c


def superpixel_sums(attr: np.ndarray, block: tuple[int, int]) -> np.ndarray:
    """(n, H, W) pixel attributions -> (n, K) superpixel sums."""
    idx = superpixel_index(attr.shape[-2:], block).ravel()
    K = idx.max() + 1
    flat = attr.reshape(attr.shape[0], -1)
    out = np.zeros((attr.shape[0], K))
    np.add.at(out.T, idx, flat.T)
    return out


def shap_superpixels(
    logit_np: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    background: np.ndarray,
    *,
    block: tuple[int, int],
    max_evals: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Superpixel Shapley values with ``shap.PermutationExplainer``.

    Args:
      logit_np: numpy function (B, H, W) -> (B,) logits.
      x: (n, H, W) inputs to explain.
      background: (b, H, W) reference maps.
      block: superpixel size (rows, columns).
      max_evals: model evaluations per sample (default 10 * K + 1).
      seed: permutation seed.

    Returns:
      (n, K) Shapley values of the superpixels.
    """
    shap = _import_shap()
    idx = superpixel_index(x.shape[-2:], block)
    K = int(idx.max()) + 1
    onehot = (idx[None] == np.arange(K)[:, None, None]).astype(np.float32)  # (K,H,W)
    bg = np.asarray(background, np.float32)
    out = np.zeros((len(x), K))
    for i, xi in enumerate(np.asarray(x, np.float32)):

        def g(masks, xi=xi):
            masks = np.asarray(masks, np.float32)  # (m, K) in {0, 1}
            sel = np.einsum("mk,khw->mhw", masks, onehot)  # (m, H, W)
            inp = bg[None] + sel[:, None] * (xi[None, None] - bg[None])
            logits = logit_np(inp.reshape(-1, *xi.shape))
            return logits.reshape(len(masks), len(bg)).mean(axis=1)

        masker = shap.maskers.Independent(np.zeros((1, K), np.float32))
        explainer = shap.PermutationExplainer(g, masker, seed=seed + i)
        res = explainer(np.ones((1, K), np.float32), max_evals=max_evals or 10 * K + 1)
        out[i] = np.asarray(res.values)[0]
    return out


def rank_agreement(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n,) Spearman correlation between rows of two (n, K) attribution arrays."""
    return np.array([stats.spearmanr(u, v).statistic for u, v in zip(a, b)])


def top_fraction_mask(importance: np.ndarray, fraction: float) -> np.ndarray:
    """Bool mask of the ``fraction`` most important entries (at least one)."""
    flat = np.asarray(importance).ravel()
    k = max(1, int(round(fraction * flat.size)))
    mask = np.zeros(flat.size, bool)
    mask[np.argsort(flat)[::-1][:k]] = True
    return mask.reshape(np.shape(importance))


def sparse_model(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    mask: np.ndarray,
    *,
    C: float = 1.0,
) -> np.ndarray:
    """Logistic regression on the masked pixels; returns (n_test,) probabilities."""
    ftr = np.asarray(x_train)[:, mask]
    fte = np.asarray(x_test)[:, mask]
    clf = LogisticRegression(C=C, max_iter=2000)
    clf.fit(ftr, y_train)
    return clf.predict_proba(fte)[:, 1]
