"""S3T data: scikit-learn's bundled digits, pretraining vs downstream, shards.

The 8x8 digits (1,797 images, shipped inside scikit-learn, nothing is
downloaded) are split by class: digits 0-4 pretrain the backbone, digits 5-9
are the downstream task that S3T fine-tunes on and deletes from. The
downstream training set is cut into ``m`` shards of ``L`` equal slices each
(a remainder that does not divide evenly is left out and reported). A
sample's id is its row in the downstream training set.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class DigitsSplit:
    """Pretraining and downstream arrays; images flattened to 64 floats in [0, 1].

    Attributes:
      x_pre, y_pre: pretraining images (N_pre, 64) and labels 0..4.
      x_train, y_train: downstream training images (N, 64), labels 0..4
        (digits 5..9 shifted down); row i is sample id i.
      x_test, y_test: downstream test images and labels.
      left_out: downstream training rows dropped so the slices are equal.
    """

    x_pre: np.ndarray
    y_pre: np.ndarray
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    left_out: int


def load_digits_split(
    *,
    seed: int,
    test_fraction: float,
    num_shards: int,
    num_slices: int,
    max_train: int = 0,
) -> DigitsSplit:
    """Splits the digits into pretraining (0-4) and downstream (5-9) sets.

    Args:
      seed: seeds the train/test split.
      test_fraction: share of downstream images held out for testing
        (stratified by class).
      num_shards: ``m``; the training set is trimmed to a multiple of ``m L``.
      num_slices: ``L``.
      max_train: if positive, keep at most this many training rows (tests).

    Returns:
      A :class:`DigitsSplit`.
    """
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    y = y.astype(np.int32)
    pre = y < 5
    x_down, y_down = x[~pre], y[~pre] - 5
    rng = np.random.default_rng(seed)
    test_rows = []
    for c in range(5):
        rows = np.flatnonzero(y_down == c)
        rng.shuffle(rows)
        test_rows.extend(rows[: int(round(test_fraction * len(rows)))])
    is_test = np.zeros(len(y_down), bool)
    is_test[test_rows] = True
    train_rows = rng.permutation(np.flatnonzero(~is_test))
    if max_train > 0:
        train_rows = train_rows[:max_train]
    per = num_shards * num_slices
    kept = (len(train_rows) // per) * per
    if kept == 0:
        raise ValueError(f"{len(train_rows)} training rows cannot fill {per} slices")
    return DigitsSplit(
        x_pre=x[pre],
        y_pre=y[pre],
        x_train=x_down[train_rows[:kept]],
        y_train=y_down[train_rows[:kept]],
        x_test=x_down[is_test],
        y_test=y_down[is_test],
        left_out=len(train_rows) - kept,
    )


def shard_layout(num_samples: int, num_shards: int, num_slices: int) -> np.ndarray:
    """Sample ids laid out as ``(m, L, n)``: shard, slice, position in the slice.

    Rows are assigned in order (the training set is already shuffled), so
    sample ``i`` sits in shard ``i // (L n)``, slice ``(i // n) % L``.

    Raises:
      ValueError: ``num_samples`` is not a multiple of ``m L``.
    """
    per = num_shards * num_slices
    if num_samples % per:
        raise ValueError(f"{num_samples} samples do not fill {per} equal slices")
    return np.arange(num_samples).reshape(num_shards, num_slices, -1)


def assignment(layout: np.ndarray) -> list[tuple[int, int]]:
    """``(shard, slice)`` of every sample id in ``layout`` (shape ``(m, L, n)``)."""
    out: list[tuple[int, int] | None] = [None] * layout.size
    for s in range(layout.shape[0]):
        for j in range(layout.shape[1]):
            for i in layout[s, j]:
                out[int(i)] = (s, j)
    return out  # type: ignore[return-value]
