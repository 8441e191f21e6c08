"""The experiment's config, read once into the typed settings the package takes.

:func:`from_config` is the one place that reads the ``ml_collections``
config of ``configs/deblur3dgs.py``; it returns a :class:`Settings` whose
parts go to the library functions: ``data.DataSettings`` (``make_data``,
``initial_gaussians``), ``render.RasterSettings`` (every render),
``train.OptimizerSettings`` (``make_optimizer``), one
``train.DeblurSettings`` per blur type (:func:`deblur_settings`),
``evaluate.EvalSettings`` and the :class:`TrainSettings` of
``methods.train_method``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jaxsuite.core import config as config_lib
from jaxsuite.splat.data import DataSettings
from jaxsuite.splat.evaluate import EvalSettings
from jaxsuite.splat.render import RasterSettings
from jaxsuite.splat.train import DeblurSettings, OptimizerSettings

# Keys whose ``motion_<key>`` twin holds the camera-motion variant's value.
MOTION_KEYS = (
    "lambda_s",
    "lambda_p",
    "prune_opacity",
    "max_clamp",
    "mlp_scale_bias",
    "mlp_rotation_bias",
    "mlp_rotation_factors",
    "mlp_relative_factors",
    "grad_threshold",
)


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """How ``methods.train_method`` trains each method.

    Attributes:
      seed: the training draws come from ``PRNGKey(seed + 7)``.
      steps: the training steps.
      sh_degree: the largest SH degree; it rises by one every ``sh_every``
        steps.
      sh_every: see ``sh_degree``.
      num_moments: the camera-motion MLP's ``M`` (``M + 1`` renders).
      max_gaussians: the Gaussian slots of the fixed-capacity buffer.
      known_blur_samples: the true blur sub-cameras ``known_blur`` averages.
      percent_dense: 3DGS's clone/split size boundary (times the extent).
      prune_world_size: world-size pruning (0: none).
      depth_axis: the world axis of the depth-based pruning threshold.
      densify_every: steps between densifications (0: never).
      densify_from: the first step that densifies.
      densify_until: the last step that densifies or resets opacities.
      gs_grad_threshold: 3DGS's densification gradient threshold.
      gs_prune_opacity: 3DGS's opacity pruning threshold.
      opacity_reset_every: 3DGS's steps between opacity resets (0: none).
      max_screen_size: 3DGS's screen-size pruning in pixels (0: none).
      compensate_at: Deblurring-3DGS's point-compensation step (0: never).
      compensate_points: the most points it adds.
      compensate_distance: how far from the Gaussians they may lie.
      checkpoint_every: steps between checkpoints.
      log_every: steps between logged scalars.
      step_delay: seconds slept per step.
    """

    seed: int
    steps: int
    sh_degree: int
    sh_every: int
    num_moments: int
    max_gaussians: int
    known_blur_samples: int
    percent_dense: float
    prune_world_size: float
    depth_axis: int
    densify_every: int
    densify_from: int
    densify_until: int
    gs_grad_threshold: float
    gs_prune_opacity: float
    opacity_reset_every: int
    max_screen_size: float
    compensate_at: int
    compensate_points: int
    compensate_distance: float
    checkpoint_every: int
    log_every: int
    step_delay: float


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every setting of the experiment, typed.

    Attributes:
      data: the scene, cameras, blur and initial points.
      raster: the rasteriser's workspace (training and test renders).
      optimizer: the learning rates.
      train: the training loop, densification and compensation.
      evaluation: the test renders and scores.
      defocus: Deblurring-3DGS's MLP and pruning settings for defocus.
      motion: the same for camera motion.
      methods: the compared methods (``methods.METHODS``).
    """

    data: DataSettings
    raster: RasterSettings
    optimizer: OptimizerSettings
    train: TrainSettings
    evaluation: EvalSettings
    defocus: DeblurSettings
    motion: DeblurSettings
    methods: tuple[str, ...]

    def deblur(self, blur: str) -> DeblurSettings:
        """The Deblurring-3DGS settings of blur type ``blur``."""
        return self.motion if blur == "motion" else self.defocus


def deblur_settings(config: Any, blur: str) -> DeblurSettings:
    """Deblurring-3DGS's settings for one blur type of ``config``.

    The MLP and pruning keys without a prefix are the defocus variant's; for
    ``blur == "motion"`` each ``motion_<key>`` replaces ``<key>`` (see
    :data:`MOTION_KEYS`), so the two variants can be set apart.
    """
    prefix = "motion_" if blur == "motion" else ""
    values = {k: config[prefix + k] for k in MOTION_KEYS}
    return DeblurSettings(mlp_center_offsets=config.mlp_center_offsets, **values)


def raster_settings(config: Any) -> RasterSettings:
    """The rasteriser of ``config`` (``implementation`` ``""``: ``None``)."""
    return RasterSettings(
        capacity=config.capacity,
        max_per_tile=config.max_per_tile,
        tile=config.tile,
        implementation=config.implementation or None,
    )


def from_config(config: Any) -> Settings:
    """The typed settings of the experiment's ``config`` (``configs/deblur3dgs.py``)."""
    raster = raster_settings(config)
    return Settings(
        data=config_lib.settings_from(DataSettings, config),
        raster=raster,
        optimizer=config_lib.settings_from(OptimizerSettings, config),
        train=config_lib.settings_from(TrainSettings, config),
        evaluation=EvalSettings(
            sh_degree=config.sh_degree,
            raster=raster,
            lpips=bool(config.lpips),
            fps_repeats=config.fps_repeats,
        ),
        defocus=deblur_settings(config, "defocus"),
        motion=deblur_settings(config, "motion"),
        methods=tuple(config.methods),
    )
