"""The experiment's config, read once into the typed settings the package takes.

:func:`from_config` is the one place that reads the ``ml_collections``
config of ``configs/blocking.py``; it returns a :class:`Settings` whose
parts go to ``stages`` (model runs, onset data, cached fits), ``training``
(source CNNs, transfer regimes), ``evaluation`` (attributions, sparse
model, transfer skill) and ``report``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jaxsuite.climate import blocking
from jaxsuite.core import config as config_lib


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    """One QG model configuration and the length of its ensemble run.

    Attributes:
      members: ensemble members M (the last ``test_members`` are held out).
      test_members: members whose onsets form the test set.
      spinup_days: days discarded at the start of every member.
      days: daily Z500 fields kept per member after the spin-up.
      chunk_days: days per checkpointed chunk of the run.
      dtype: ``"float32"`` or ``"float64"``.
      dt: RK4 time step in seconds.
      tau_ekman_days: Ekman drag time scale in days.
      rossby_radius_1_km: first Rossby radius of deformation in km.
      rossby_radius_2_km: second Rossby radius of deformation in km.
      tau_selective_s: hyperdiffusion time scale in seconds.
      tau_thermal_days: thermal relaxation time scale in days.
    """

    members: int
    test_members: int
    spinup_days: int
    days: int
    chunk_days: int
    dtype: str
    dt: float
    tau_ekman_days: float
    rossby_radius_1_km: float
    rossby_radius_2_km: float
    tau_selective_s: float
    tau_thermal_days: float


@dataclasses.dataclass(frozen=True)
class LearnSettings:
    """The CNN's training regimes and the bootstrap of its skill.

    Attributes:
      seeds: CNN seeds S per regime and training size.
      source_steps: Adam steps of the source CNN.
      target_steps: Adam steps of every transfer regime.
      batch_size: minibatch size (capped at the training set's size).
      learning_rate: Adam step size of source, direct and head-only training.
      finetune_learning_rate: Adam step size of full fine-tuning.
      val_fraction: share of a training pool held out for model selection.
      target_sizes: target training sizes (onsets) of the transfer sweep.
      n_boot: bootstrap resamples of the test set.
    """

    seeds: int
    source_steps: int
    target_steps: int
    batch_size: int
    learning_rate: float
    finetune_learning_rate: float
    val_fraction: float
    target_sizes: tuple[int, ...]
    n_boot: int


@dataclasses.dataclass(frozen=True)
class ExplainSettings:
    """Attributions (expected gradients, SHAP) and the sparse model.

    Attributes:
      background: reference maps b drawn from the training set.
      eg_samples: expected-gradients draws per explained map.
      explain_samples: test maps explained by both SHAP and expected gradients.
      importance_samples: training maps whose mean |EG| ranks the pixels.
      block: SHAP superpixel size (rows, columns).
      shap_max_evals: model evaluations per SHAP explanation.
      sparse_fractions: shares of pixels kept by the sparse models.
    """

    background: int
    eg_samples: int
    explain_samples: int
    importance_samples: int
    block: tuple[int, int]
    shap_max_evals: int
    sparse_fractions: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything the blocking experiment reads from its config.

    Attributes:
      seed: seed of the source run (the target run uses ``seed + 1``), the
        data split, the attributions and the random-pixel baseline.
      source: the source model configuration (the MM93/pyshqg T21 model).
      target: the target model configuration (the reanalysis stand-in).
      onset: the Atlantic onset definition.
      learn: see :class:`LearnSettings`.
      explain: see :class:`ExplainSettings`.
      pyshqg_python: pyshqg's interpreter for the side-by-side speed
        comparison (empty or missing: skipped).
      throughput_days: model days of each side-by-side speed measurement.
    """

    seed: int
    source: ModelSettings
    target: ModelSettings
    onset: blocking.OnsetSpec
    learn: LearnSettings
    explain: ExplainSettings
    pyshqg_python: str
    throughput_days: int


def from_config(config: Any) -> Settings:
    """The typed settings of the experiment's ``config`` (``configs/blocking.py``)."""
    learn = config_lib.settings_from(LearnSettings, config.learn)
    explain = config_lib.settings_from(ExplainSettings, config.explain)
    return Settings(
        seed=config.seed,
        source=config_lib.settings_from(ModelSettings, config.source),
        target=config_lib.settings_from(ModelSettings, config.target),
        onset=blocking.OnsetSpec(
            threshold=config.onset.threshold,
            persistence_days=config.onset.persistence_days,
        ),
        learn=dataclasses.replace(learn, target_sizes=tuple(learn.target_sizes)),
        explain=dataclasses.replace(
            explain,
            block=tuple(explain.block),
            sparse_fractions=tuple(explain.sparse_fractions),
        ),
        pyshqg_python=config.pyshqg_python,
        throughput_days=config.throughput_days,
    )
