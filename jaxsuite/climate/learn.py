"""CNN classifier of block persistence (Flax NNX), training regimes and skill metrics.

The network and its sizes are this package's choice (the paper's layers were
not available): three 3x3 conv + ReLU + 2x2 average-pool stages, a dense
hidden layer (the ``features``) and a one-logit ``head``. Inputs are
(batch, rows, nlon, 1) Z500 anomalies divided by a fixed scale.

Training is plain Adam on the binary cross-entropy with the step of lowest
validation loss kept. ``trainable="head"`` freezes everything but the head
(head-only transfer); ``"all"`` trains every parameter (fine-tuning when
started from a pre-trained model, direct training from a fresh one).

Metrics: ROC-AUC, Brier skill score against the training base rate, and
balanced accuracy at the threshold p = base rate; ``bootstrap_ci`` resamples
the test set (the same resample for every seed) for the CI of the seed mean.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from sklearn import metrics as skm

from jaxsuite.core import optim


class BlockingCNN(nnx.Module):
    """(B, H, W, 1) anomaly maps -> (B,) persistence logits.

    Args:
      height, width: input grid (H, W); each must be divisible by 8.
      channels: conv widths of the three stages.
      hidden: width of the dense feature layer.
      rngs: NNX random streams.
    """

    def __init__(
        self,
        height: int,
        width: int,
        *,
        channels: tuple[int, int, int] = (8, 16, 16),
        hidden: int = 32,
        rngs: nnx.Rngs,
    ):
        if height % 8 or width % 8:
            raise ValueError(f"input {height}x{width} must be divisible by 8")
        c_in = 1
        convs = []
        for c in channels:
            convs.append(nnx.Conv(c_in, c, (3, 3), padding="SAME", rngs=rngs))
            c_in = c
        self.convs = nnx.List(convs)
        flat = (height // 8) * (width // 8) * channels[-1]
        self.dense = nnx.Linear(flat, hidden, rngs=rngs)
        self.head = nnx.Linear(hidden, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        for conv in self.convs:
            x = nnx.relu(conv(x))
            # nnx.avg_pool's divisor is an int64 NumPy count; this mean divides
            # by a float, which strict dtype promotion accepts (same values).
            x = nnx.pool(x, 0.0, jax.lax.add, (2, 2), (2, 2), "VALID") / 4.0
        x = nnx.relu(self.dense(x.reshape(x.shape[0], -1)))
        return self.head(x)[:, 0]


def make_model(height: int, width: int, seed: int, **kw) -> BlockingCNN:
    return BlockingCNN(height, width, rngs=nnx.Rngs(seed), **kw)


def logits_fn(model: BlockingCNN) -> Callable[[Any, jax.Array], jax.Array]:
    """A pure ``(params, x) -> logits`` for a model's graph (for jit/grad)."""
    graphdef, _ = nnx.split(model)

    def apply(params, x):
        return nnx.merge(graphdef, params)(x)

    return apply


def predict_proba(model: BlockingCNN, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """(n, H, W) or (n, H, W, 1) inputs -> (n,) probabilities.

    Batches are zero-padded to ``batch`` rows so one compilation serves all n.
    """
    graphdef, params = nnx.split(model)
    x = np.asarray(x, np.float32)
    if x.ndim == 3:
        x = x[..., None]
    out = []
    for i in range(0, len(x), batch):
        chunk = x[i : i + batch]
        pad = np.zeros((batch - len(chunk),) + x.shape[1:], np.float32)
        p = _predict(graphdef, params, jnp.asarray(np.concatenate([chunk, pad])))
        out.append(np.asarray(p)[: len(chunk)])
    return np.concatenate(out) if out else np.zeros(0, np.float32)


@functools.partial(jax.jit, static_argnums=0)
def _predict(graphdef, params, x):
    return jax.nn.sigmoid(nnx.merge(graphdef, params)(x))


def _bce(logits, y):
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, y))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _train_step(graphdef, tx, params, opt_state, x, y, learning_rate):
    """One Adam step; ``learning_rate`` is an argument, so every rate shares it."""

    def loss_fn(p):
        return _bce(nnx.merge(graphdef, p)(x), y)

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = optim.update(tx, grads, opt_state, params)
    step = -learning_rate
    updates = jax.tree.map(lambda u: step * u, updates)
    return optax.apply_updates(params, updates), opt_state, loss


@functools.partial(jax.jit, static_argnums=0)
def _eval_loss(graphdef, params, x, y):
    return _bce(nnx.merge(graphdef, params)(x), y)


def _head_labels(params):
    """Labels every parameter under ``head`` "train" and the rest "freeze"."""

    def label(path, _):
        names = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
        return "train" if "head" in names else "freeze"

    return jax.tree_util.tree_map_with_path(label, params)


@functools.lru_cache(maxsize=2)
def _optimizer(head_only: bool) -> optax.GradientTransformation:
    """Adam's scaling (``_train_step`` applies the rate), or the head's only.

    Cached so jit sees the same object. Frozen parameters get zero updates.
    """
    if not head_only:
        return optax.scale_by_adam()
    return optax.multi_transform(
        {"train": optax.scale_by_adam(), "freeze": optax.set_to_zero()}, _head_labels
    )


def train(
    model: BlockingCNN,
    x: np.ndarray,
    y: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    steps: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    trainable: str = "all",
    eval_every: int = 25,
) -> tuple[BlockingCNN, dict[str, float]]:
    """Trains ``model`` (a copy) and returns the lowest-validation-loss version.

    Args:
      model: initial network (fresh or pre-trained); not modified.
      x, y: (n, H, W) inputs and (n,) 0/1 labels.
      x_val, y_val: validation set for model selection.
      steps: Adam steps; batches are drawn with replacement-free shuffles.
      batch_size: capped at n.
      learning_rate: Adam step size.
      seed: shuffling seed.
      trainable: ``"all"`` or ``"head"``.
      eval_every: validation interval in steps.

    Returns:
      ``(best_model, info)`` with the best step and validation loss.
    """
    if trainable not in ("all", "head"):
        raise ValueError(f"trainable must be 'all' or 'head', got {trainable!r}")
    graphdef, params = nnx.split(model)
    tx = _optimizer(trainable == "head")
    lr = jnp.float32(learning_rate)
    opt_state = tx.init(params)
    x = jnp.asarray(np.asarray(x, np.float32)[..., None])
    yj = jnp.asarray(y, jnp.float32)
    xv = jnp.asarray(np.asarray(x_val, np.float32)[..., None])
    yv = jnp.asarray(y_val, jnp.float32)
    n = x.shape[0]
    bs = min(batch_size, n)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    pos = 0
    best = (float(_eval_loss(graphdef, params, xv, yv)), 0, params)
    for step in range(1, steps + 1):
        if pos + bs > n:
            order, pos = rng.permutation(n), 0
        idx = order[pos : pos + bs]
        pos += bs
        params, opt_state, loss = _train_step(
            graphdef, tx, params, opt_state, x[idx], yj[idx], lr
        )
        if step % eval_every == 0 or step == steps:
            if not np.isfinite(float(loss)):
                raise FloatingPointError(f"non-finite training loss at step {step}")
            vl = float(_eval_loss(graphdef, params, xv, yv))
            if vl < best[0]:
                best = (vl, step, params)
    return nnx.merge(graphdef, best[2]), {"val_loss": best[0], "best_step": best[1]}


# -- metrics -----------------------------------------------------------------


def brier_skill_score(y: np.ndarray, p: np.ndarray, base_rate: float) -> float:
    """1 - Brier(p) / Brier(constant base rate)."""
    y = np.asarray(y, np.float64)
    ref = np.mean((base_rate - y) ** 2)
    return float(1.0 - np.mean((np.asarray(p) - y) ** 2) / ref)


def balanced_accuracy(y: np.ndarray, p: np.ndarray, threshold: float) -> float:
    return float(skm.balanced_accuracy_score(np.asarray(y), np.asarray(p) >= threshold))


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    y = np.asarray(y)
    if y.min() == y.max():
        return 0.5
    return float(skm.roc_auc_score(y, p))


def skill(y: np.ndarray, p: np.ndarray, base_rate: float) -> dict[str, float]:
    """ROC-AUC, Brier skill score and balanced accuracy of probabilities p."""
    return {
        "auc": roc_auc(y, p),
        "bss": brier_skill_score(y, p, base_rate),
        "bacc": balanced_accuracy(y, p, base_rate),
    }


def bootstrap_ci(
    y: np.ndarray,
    probs: np.ndarray,
    base_rates: np.ndarray,
    *,
    n_boot: int = 500,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, dict[str, float]]:
    """Seed-mean metrics with percentile CIs from resampling the test set.

    Args:
      y: (n,) test labels.
      probs: (S, n) probabilities of S seeds.
      base_rates: (S,) training base rate of each seed.
      n_boot: bootstrap resamples (the same resample for every seed).
      seed: resampling seed.
      level: CI coverage.

    Returns:
      metric -> {"mean", "lo", "hi", "seed_std"}.
    """
    y = np.asarray(y)
    probs = np.atleast_2d(probs)
    point = [skill(y, p, b) for p, b in zip(probs, base_rates)]
    rng = np.random.default_rng(seed)
    boots = {k: [] for k in point[0]}
    for _ in range(n_boot):
        idx = rng.integers(0, y.size, y.size)
        while y[idx].min() == y[idx].max() and y.min() != y.max():
            idx = rng.integers(0, y.size, y.size)  # both classes, as in the test set
        vals = [skill(y[idx], p[idx], b) for p, b in zip(probs, base_rates)]
        for k in boots:
            boots[k].append(np.mean([v[k] for v in vals]))
    a = (1 - level) / 2
    out = {}
    for k in boots:
        seeds = np.array([pt[k] for pt in point])
        out[k] = {
            "mean": float(seeds.mean()),
            "lo": float(np.quantile(boots[k], a)),
            "hi": float(np.quantile(boots[k], 1 - a)),
            "seed_std": float(seeds.std()),
        }
    return out
