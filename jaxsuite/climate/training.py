"""Training of the blocking experiment: source CNNs and the transfer regimes.

Every fit is cached in ``workdir/fits/<tag>.npz`` (``stages.fit_cached``), so
a resumed run reloads finished fits instead of training them again.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np
from flax import nnx

from jaxsuite.climate import learn
from jaxsuite.climate.settings import LearnSettings
from jaxsuite.climate.stages import OnsetData, fit_cached, load_params, val_split

REGIMES = ("direct", "zero-shot", "head-only", "fine-tune")


def make_cnn(d: OnsetData, seed: int) -> learn.BlockingCNN:
    """A fresh CNN for (B, H, W, 1) inputs of ``d``'s grid, initialised by ``seed``."""
    return learn.make_model(d.xs.shape[1], d.xs.shape[2], seed)


class SourceFit(NamedTuple):
    """The source CNNs, one per seed, and their test probabilities.

    Attributes:
      models: S trained CNNs (seed s at position s).
      probs: (S, n_test) probabilities on ``d.src_test``.
      train: (n_train,) indices of ``d.xs`` trained on.
      val: (n_val,) indices of ``d.xs`` used for model selection.
      base_rate: persistent fraction of the training onsets.
    """

    models: list[nnx.Module]
    probs: np.ndarray
    train: np.ndarray
    val: np.ndarray
    base_rate: float


def train_source(
    lc: LearnSettings, d: OnsetData, workdir: str, rng: np.random.Generator
) -> SourceFit:
    """Trains the source CNN for seeds ``0..lc.seeds-1`` on the source pool.

    ``rng`` draws the train/validation split of ``d.src_pool`` (the caller
    keeps using the same generator afterwards).
    """
    tr, va = val_split(len(d.src_pool), lc.val_fraction, rng)
    tr, va = d.src_pool[tr], d.src_pool[va]
    xs, ys = d.xs, d.ys
    models, probs = [], []
    for s in range(lc.seeds):
        m = fit_cached(
            workdir,
            f"source_{s}",
            lambda s=s: make_cnn(d, s),
            xs[tr],
            ys[tr],
            xs[va],
            ys[va],
            seed=s,
            batch_size=lc.batch_size,
            steps=lc.source_steps,
            learning_rate=lc.learning_rate,
        )
        models.append(m)
        probs.append(learn.predict_proba(m, xs[d.src_test]))
    return SourceFit(models, np.stack(probs), tr, va, float(ys[tr].mean()))


class TransferFit(NamedTuple):
    """Target-test probabilities of every regime at one training size.

    Attributes:
      probs: regime (``REGIMES``) -> S arrays (n_test,) on ``d.tgt_test``.
      base_rates: (S,) persistent fraction of each seed's training onsets.
    """

    probs: dict[str, list[np.ndarray]]
    base_rates: list[float]


def transfer_sizes(lc: LearnSettings, d: OnsetData) -> list[int]:
    """The configured target sizes the pool can hold (else the whole pool)."""
    pool = len(d.tgt_pool)
    return [n for n in lc.target_sizes if n <= pool] or [pool]


def train_transfer(
    lc: LearnSettings,
    d: OnsetData,
    source_models: list[nnx.Module],
    workdir: str,
) -> dict[int, TransferFit]:
    """Direct, zero-shot, head-only and fine-tuned CNNs at each target size.

    For size n and seed s, n onsets of the target pool are drawn (seed
    ``1000 n + s``) and split into training and validation; the regimes
    start from a fresh CNN (direct) or from source model s.

    Returns:
      size n -> its :class:`TransferFit`, sizes in ``transfer_sizes`` order.
    """
    out = {}
    for n in transfer_sizes(lc, d):
        fit = TransferFit({r: [] for r in REGIMES}, [])
        for s in range(lc.seeds):
            models, base = _fit_regimes(lc, d, source_models[s], n, s, workdir)
            fit.base_rates.append(base)
            for reg in REGIMES:
                fit.probs[reg].append(
                    learn.predict_proba(models[reg], d.xt[d.tgt_test])
                )
        out[n] = fit
    return out


def _fit_regimes(
    lc: LearnSettings,
    d: OnsetData,
    source_model: nnx.Module,
    n: int,
    s: int,
    workdir: str,
) -> tuple[dict[str, nnx.Module], float]:
    """The four regimes' models for size ``n`` and seed ``s``; the base rate."""
    r = np.random.default_rng(1000 * n + s)
    sub = r.choice(d.tgt_pool, size=n, replace=False)
    a, b = val_split(n, lc.val_fraction, r)
    a, b = sub[a], sub[b]
    xt, yt = d.xt, d.yt
    if yt[a].min() == yt[a].max():
        a = sub  # too few positives for a split: validate on the subset
    data = (xt[a], yt[a], xt[b], yt[b])
    common = dict(seed=s, batch_size=lc.batch_size, steps=lc.target_steps)
    direct = fit_cached(
        workdir,
        f"direct_{n}_{s}",
        lambda: make_cnn(d, 100 + s),
        *data,
        learning_rate=lc.learning_rate,
        **common,
    )
    head = fit_cached(
        workdir,
        f"head_{n}_{s}",
        lambda: nnx.clone(source_model),
        *data,
        trainable="head",
        learning_rate=lc.learning_rate,
        **common,
    )
    fine = fit_cached(
        workdir,
        f"fine_{n}_{s}",
        lambda: nnx.clone(source_model),
        *data,
        learning_rate=lc.finetune_learning_rate,
        **common,
    )
    models = {"direct": direct, "zero-shot": source_model, "head-only": head}
    models["fine-tune"] = fine
    return models, float(yt[a].mean())


def load_fit(workdir: str, tag: str, d: OnsetData) -> nnx.Module:
    """The CNN cached as ``workdir/fits/<tag>.npz`` (see ``stages.fit_cached``)."""
    return load_params(os.path.join(workdir, "fits", f"{tag}.npz"), make_cnn(d, 0))
