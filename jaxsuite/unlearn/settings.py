"""The experiment's config, read once into the typed settings the package takes.

:func:`from_config` is the one place that reads the ``ml_collections``
config of ``configs/s3t.py``; it returns a :class:`Settings` whose parts go
to the experiment's phases (``experiment.pretrain_backbone``,
``experiment.make_adapters``, ``experiment.train_settings``) and to
``report`` (``theory_tables``, ``summarise``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jaxsuite.core import config as config_lib


@dataclasses.dataclass(frozen=True)
class DataSettings:
    """The downstream digits split.

    Attributes:
      test_fraction: share of the downstream images held out for testing.
      max_train: most downstream training images (0: all of them).
    """

    test_fraction: float
    max_train: int


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    """The residual-MLP backbone and what each layer group tunes.

    Attributes:
      width: hidden width of every block.
      depth: blocks; ``depth / num_slices`` blocks per layer group.
      adapters: ``"lora"`` (LoRA on each block's dense layer) or ``"dense"``
        (the dense layers themselves).
      lora_rank: LoRA rank r.
      lora_alpha: LoRA alpha (0: the rank).
      lora_dropout: dropout on the LoRA input.
    """

    width: int
    depth: int
    adapters: str
    lora_rank: int
    lora_alpha: float
    lora_dropout: float


@dataclasses.dataclass(frozen=True)
class PretrainSettings:
    """Pretraining of the backbone on digits 0-4.

    Attributes:
      steps: Adam steps.
      batch_size: rows per step.
      learning_rate: Adam's learning rate.
    """

    steps: int
    batch_size: int
    learning_rate: float


@dataclasses.dataclass(frozen=True)
class StageSettings:
    """How every stage trains (the same for S3T, SISA and the full reference).

    Attributes:
      epochs: passes over a stage's cumulative slices.
      batch_size: rows per Adam step.
      learning_rate: Adam's peak learning rate (decays linearly to 0).
    """

    epochs: int
    batch_size: int
    learning_rate: float


@dataclasses.dataclass(frozen=True)
class MonteCarloSettings:
    """The Monte Carlo of the truncation rule.

    Attributes:
      trials: simulated deletion streams per row.
      prior_budget: sequences per shard of the prior-aware selection rows.
    """

    trials: int
    prior_budget: int


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything the S3T experiment reads from its config.

    Attributes:
      seed: root seed of the split, backbone, stages and deletion stream.
      num_shards: shards m.
      num_slices: slices L per shard (= layer groups = stages per sequence).
      budgets: S3T's sequences B per shard, one run each.
      sequence_method: ``"cyclic"``, ``"bms"`` or ``"prior_bms"``.
      devices: devices that train shards in parallel (0: ``min(devices, m)``).
      full_reference: also train one model on all the data.
      deletions: length of the random deletion stream.
      accuracy_at: deletion counts ``k`` the methods table reports.
      checkpoint_every: steps between pretraining checkpoints.
      log_every: steps between logged pretraining scalars.
      data: see :class:`DataSettings`.
      model: see :class:`ModelSettings`.
      pretrain: see :class:`PretrainSettings`.
      train: see :class:`StageSettings`.
      monte_carlo: see :class:`MonteCarloSettings`.
    """

    seed: int
    num_shards: int
    num_slices: int
    budgets: tuple[int, ...]
    sequence_method: str
    devices: int
    full_reference: bool
    deletions: int
    accuracy_at: tuple[int, ...]
    checkpoint_every: int
    log_every: int
    data: DataSettings
    model: ModelSettings
    pretrain: PretrainSettings
    train: StageSettings
    monte_carlo: MonteCarloSettings


def from_config(config: Any) -> Settings:
    """The typed settings of the experiment's ``config`` (``configs/s3t.py``)."""
    return Settings(
        seed=config.seed,
        num_shards=config.num_shards,
        num_slices=config.num_slices,
        budgets=tuple(config.budgets),
        sequence_method=config.sequence_method,
        devices=config.devices,
        full_reference=config.full_reference,
        deletions=config.deletions,
        accuracy_at=tuple(config.accuracy_at),
        checkpoint_every=config.checkpoint_every,
        log_every=config.log_every,
        data=config_lib.settings_from(DataSettings, config.data),
        model=config_lib.settings_from(ModelSettings, config.model),
        pretrain=config_lib.settings_from(PretrainSettings, config.pretrain),
        train=config_lib.settings_from(StageSettings, config.train),
        monte_carlo=config_lib.settings_from(MonteCarloSettings, config.monte_carlo),
    )
