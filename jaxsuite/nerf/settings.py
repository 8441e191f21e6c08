"""The experiment's config, read once into the typed settings the package takes.

:func:`from_config` is the one place that reads the ``ml_collections``
config of ``configs/pvd.py``; it returns a :class:`Settings` whose parts go
to the library functions: ``fields.FieldConfig`` (every field),
``trainer.OccConfig`` (``trainer.train_from_images``), the scene to
``experiment.make_data``, and the rest to the experiment's helpers that build
``trainer.OptimConfig``, ``distill.DistillConfig`` and the two runs'
``loop.Schedule``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jaxsuite.core import config as config_lib
from jaxsuite.nerf.fields import FieldConfig
from jaxsuite.nerf.trainer import OccConfig


@dataclasses.dataclass(frozen=True)
class SceneSettings:
    """The analytic scene and its posed views.

    Attributes:
      size: image side in pixels (train and test views are ``size x size``).
      n_train: train views.
      n_test: held-out test views.
      density: density inside the scene's solids.
      elevation_range_deg: ``(low, high)`` camera elevations in degrees.
    """

    size: int
    n_train: int
    n_test: int
    density: float
    elevation_range_deg: tuple[float, float]


@dataclasses.dataclass(frozen=True)
class RetimeSettings:
    """Re-timings of a finished run's step function (the timing noise).

    Attributes:
      steps: steps of each re-timing.
      repeats: re-timings.
    """

    steps: int
    repeats: int


@dataclasses.dataclass(frozen=True)
class DistillSettings:
    """Budget, stages and random-pose data of every distillation.

    Attributes:
      seconds: optimisation seconds of each distillation.
      steps: cap on its steps.
      stage1_steps: last step of stage 1 (feature loss only).
      stage2_steps: last step of stage 2 (plus density and colour losses).
      poses_per_epoch: random cameras drawn per epoch.
      steps_per_epoch: steps between two draws of cameras.
    """

    seconds: float
    steps: int
    stage1_steps: int
    stage2_steps: int
    poses_per_epoch: int
    steps_per_epoch: int


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every setting of the PVD experiment, typed.

    Attributes:
      seed: seed of the scene's views, the fields and the rays.
      archs: the architectures trained from scratch (and students).
      teachers: the architectures distilled into every other one.
      scratch_seconds: optimisation seconds of each from-scratch run.
      steps: cap on the steps of a from-scratch run.
      batch_rays: rays per step (from scratch and distillation).
      num_samples: samples per ray.
      num_evals: wall-time evaluation marks up to the distillation budget
        (and evaluations over the steps of a run without a budget).
      first_eval_seconds: the first of those marks.
      buckets: compaction buckets of empty-space skipping.
      retime: re-timings after each run.
      scene: the analytic scene and its views.
      occ: the occupancy grid of the from-scratch runs.
      distill: every distillation's budget and stages.
      field: sizes of the four architectures.
      lr_grid: per architecture, Adam's learning rate of grid/table tensors.
      lr_net: per architecture, the same for network weights.
    """

    seed: int
    archs: tuple[str, ...]
    teachers: tuple[str, ...]
    scratch_seconds: float
    steps: int
    batch_rays: int
    num_samples: int
    num_evals: int
    first_eval_seconds: float
    buckets: int
    retime: RetimeSettings
    scene: SceneSettings
    occ: OccConfig
    distill: DistillSettings
    field: FieldConfig
    lr_grid: dict[str, float]
    lr_net: dict[str, float]


def from_config(config: Any) -> Settings:
    """The typed settings of the experiment's ``config`` (``configs/pvd.py``)."""
    scene = config_lib.settings_from(SceneSettings, config.scene)
    elevations = tuple(scene.elevation_range_deg)
    return Settings(
        seed=config.seed,
        archs=tuple(config.archs),
        teachers=tuple(config.teachers),
        scratch_seconds=config.scratch_seconds,
        steps=config.steps,
        batch_rays=config.batch_rays,
        num_samples=config.num_samples,
        num_evals=config.num_evals,
        first_eval_seconds=config.first_eval_seconds,
        buckets=config.buckets,
        retime=config_lib.settings_from(RetimeSettings, config.retime),
        scene=dataclasses.replace(scene, elevation_range_deg=elevations),
        occ=config_lib.settings_from(OccConfig, config.occ),
        distill=config_lib.settings_from(DistillSettings, config.distill),
        field=FieldConfig(**dict(config.field)),
        lr_grid=dict(config.lr_grid),
        lr_net=dict(config.lr_net),
    )
