"""Evaluation of the blocking experiment: skill, attributions, sparse models, maps.

Each function takes the fits of ``training`` and the settings it needs and
returns numbers and rows for ``report``; none trains a CNN.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
from flax import nnx

from jaxsuite.climate import explain, learn
from jaxsuite.climate.settings import ExplainSettings, LearnSettings
from jaxsuite.climate.stages import OnsetData, padded_logits, retained
from jaxsuite.climate.training import SourceFit, TransferFit

Skill = dict[str, dict[str, float]]  # metric -> {"mean", "lo", "hi", "seed_std"}


def source_skill(lc: LearnSettings, d: OnsetData, fit: SourceFit) -> Skill:
    """Seed-mean ROC-AUC, BSS and balanced accuracy of the source CNNs, with CIs."""
    base = np.full(lc.seeds, fit.base_rate)
    return learn.bootstrap_ci(d.ys[d.src_test], fit.probs, base, n_boot=lc.n_boot)


def logit_map_fn(model: nnx.Module) -> Callable[[jax.Array], jax.Array]:
    """Jitted (B, H, W) maps -> (B,) logits of ``model`` (its current state)."""
    logit = learn.logits_fn(model)
    params = nnx.state(model)
    return jax.jit(lambda x: logit(params, x[..., None]))


class Attributions(NamedTuple):
    """Expected gradients of the first source CNN and their SHAP cross-check.

    Attributes:
      rho: (explain_samples,) Spearman correlation, per test map, of SHAP
        superpixel values and superpixel sums of expected gradients.
      map_src: (H, W) mean expected gradients over the source test set.
      importance: (H, W) mean |expected gradients| over training maps.
    """

    rho: np.ndarray
    map_src: np.ndarray
    importance: np.ndarray


def attributions(
    ec: ExplainSettings,
    d: OnsetData,
    fit: SourceFit,
    logit_x: Callable[[jax.Array], jax.Array],
    key: jax.Array,
    seed: int,
) -> Attributions:
    """Expected gradients vs SHAP on test maps, the mean map and pixel importance.

    ``logit_x`` is ``logit_map_fn`` of the first source CNN; the background
    is the first ``ec.background`` training maps; every expected-gradients
    call uses ``key``, SHAP's permutations start from ``seed``.
    """
    xs, tr, test = d.xs, fit.train, d.src_test
    bg = xs[tr][: ec.background]
    ex = xs[test[: ec.explain_samples]]
    eg = explain.expected_gradients(logit_x, ex, bg, key, samples=ec.eg_samples)
    shap_vals = explain.shap_superpixels(
        functools.partial(padded_logits, logit_x),
        ex,
        bg,
        block=ec.block,
        max_evals=ec.shap_max_evals,
        seed=seed,
    )
    rho = explain.rank_agreement(explain.superpixel_sums(eg, ec.block), shap_vals)
    eg_all = explain.expected_gradients(
        logit_x, xs[test], bg, key, samples=ec.eg_samples
    )
    eg_train = explain.expected_gradients(
        logit_x, xs[tr[: ec.importance_samples]], bg, key, samples=ec.eg_samples
    )
    return Attributions(rho, eg_all.mean(0), np.abs(eg_train).mean(0))


def sparse_models(
    ec: ExplainSettings,
    d: OnsetData,
    fit: SourceFit,
    importance: np.ndarray,
    cnn_auc: float,
    rng: np.random.Generator,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Logistic regressions on the top pixels by importance, random pixels and all.

    Args:
      ec: ``sparse_fractions`` are the shares of pixels kept.
      d, fit: the source onsets and training split.
      importance: (H, W) pixel importance (``Attributions.importance``).
      cnn_auc: the source CNNs' ROC-AUC, the reference of ``skill_retained``.
      rng: draws the random pixels (one permutation per fraction).

    Returns:
      ``(rows, all_pixels)``: a row per fraction and the row of the model on
      every pixel (fraction 1).
    """
    tr, test = fit.train, d.src_test
    y_tr, y_te = d.ys[tr], d.ys[test]
    flat_tr = d.xs[tr].reshape(len(tr), -1)
    flat_te = d.xs[test].reshape(len(test), -1)
    rows = []
    for frac in ec.sparse_fractions:
        mask = explain.top_fraction_mask(importance, frac).ravel()
        rnd = np.zeros_like(mask)
        rnd[rng.permutation(mask.size)[: mask.sum()]] = True
        auc_top = learn.roc_auc(
            y_te, explain.sparse_model(flat_tr, y_tr, flat_te, mask)
        )
        auc_rnd = learn.roc_auc(y_te, explain.sparse_model(flat_tr, y_tr, flat_te, rnd))
        rows.append(
            {
                "fraction": frac,
                "pixels": int(mask.sum()),
                "auc_top_shap": auc_top,
                "auc_random_pixels": auc_rnd,
                "skill_retained": retained(auc_top, cnn_auc),
            }
        )
    every = np.ones(flat_tr.shape[1], bool)
    full = learn.roc_auc(y_te, explain.sparse_model(flat_tr, y_tr, flat_te, every))
    return rows, {
        "fraction": 1.0,
        "pixels": int(flat_tr.shape[1]),
        "auc_top_shap": full,
        "auc_random_pixels": full,
        "skill_retained": retained(full, cnn_auc),
    }


def transfer_rows(
    lc: LearnSettings,
    d: OnsetData,
    fits: dict[int, TransferFit],
    source_base_rate: float,
) -> list[dict[str, Any]]:
    """Bootstrap skill of every regime and size on the target test set.

    Returns:
      one row per (size, regime), in ``fits`` and ``training.REGIMES`` order:
      ``regime``, ``n_train`` and ``<metric>_{mean,lo,hi,seed_std}`` for
      ``auc``, ``bss`` and ``bacc``.
    """
    y = d.yt[d.tgt_test]
    rows = []
    for n, fit in fits.items():
        for reg, p in fit.probs.items():
            # Zero-shot has no target training: its reference rate is the source one.
            if reg == "zero-shot":
                br = np.full(lc.seeds, source_base_rate)
            else:
                br = np.asarray(fit.base_rates)
            ci = learn.bootstrap_ci(y, np.stack(p), br, n_boot=lc.n_boot)
            row = {"regime": reg, "n_train": int(n)}
            for k, v in ci.items():
                row.update(
                    {
                        f"{k}_mean": v["mean"],
                        f"{k}_lo": v["lo"],
                        f"{k}_hi": v["hi"],
                        f"{k}_seed_std": v["seed_std"],
                    }
                )
            rows.append(row)
    return rows


def transfer_maps(
    ec: ExplainSettings,
    d: OnsetData,
    logit_before: Callable[[jax.Array], jax.Array],
    logit_after: Callable[[jax.Array], jax.Array],
    key: jax.Array,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Mean expected gradients on the target test set before and after transfer.

    The background is the first ``ec.background`` maps of the target pool.

    Returns:
      ``(before, after, r)``: two (H, W) maps and their Pearson correlation.
    """
    bg = d.xt[d.tgt_pool][: ec.background]
    x = d.xt[d.tgt_test]
    before = explain.expected_gradients(
        logit_before, x, bg, key, samples=ec.eg_samples
    ).mean(0)
    after = explain.expected_gradients(
        logit_after, x, bg, key, samples=ec.eg_samples
    ).mean(0)
    return before, after, float(np.corrcoef(before.ravel(), after.ravel())[0, 1])
