"""The experiments' configs, read once into the typed settings the package takes.

:func:`from_config` is the one place that reads the ``ml_collections`` config
of ``configs/dreamcraft3d.py``; it returns a :class:`Settings` that
``experiment`` hands to the stages (``stages.make_context`` keeps it as the
static part of every jitted update; ``stages`` and ``texture`` read its
``field``, ``coarse``, ``geometry`` and ``texture`` parts) and whose
``eval`` part goes to the measurements. :func:`prior_from_config` does the
same for ``configs/gen3d_prior.py``: its :class:`PriorSettings` go to
``prior_training``.

Every settings class is a frozen dataclass of hashable values (sequences
become tuples), so a :class:`Settings` can be a static argument under ``jit``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jaxsuite.core import config as config_lib
from jaxsuite.gen3d.geometry import FieldSpec

# A loss weight: constant, or ``(start, end)`` of a schedule.
Weight = float | tuple[float, float]


@dataclasses.dataclass(frozen=True)
class CoarseSettings:
    """Stage 1, the coarse radiance field (``stages.coarse_stage``).

    Fractions are of the stage's ``steps`` (the released 5000-step stage's
    schedule points, scaled).

    Attributes:
      steps: optimisation steps (even steps fit the reference, odd ones guide).
      lr: Adam's learning rate.
      num_samples: samples per ray.
      views: random views per guidance step.
      cfg_image: classifier-free guidance scale of the image prior.
      cfg_view: the same for the view prior.
      lambda_sd: weight of the image prior's score distillation.
      lambda_3d_sd: weight of the view prior's score distillation.
      lambda_rgb: weight of the reference colour MSE.
      lambda_mask: weight of the reference mask MSE.
      lambda_depth_rel: weight of the relative (Pearson) depth loss.
      lambda_sparsity: ``(before, after)`` ``reg_switch``, sparsity weight.
      lambda_opaque: ``(before, after)`` ``reg_switch``, opaqueness weight.
      reg_switch: fraction at which the regularisers switch weights.
      t_min: ``(start, end)`` of the lower timestep bound (fraction of T).
      t_max: ``(start, end)`` of the upper timestep bound.
      anneal_until: fraction by which the timestep bounds reach their end.
      progressive_until: fraction by which the random views reach the full
        camera ranges.
      band_start_level: hash levels on at the start.
      band_start: fraction from which further levels switch on.
      band_every: fraction between two more levels.
    """

    steps: int
    lr: float
    num_samples: int
    views: int
    cfg_image: float
    cfg_view: float
    lambda_sd: Weight
    lambda_3d_sd: Weight
    lambda_rgb: Weight
    lambda_mask: Weight
    lambda_depth_rel: Weight
    lambda_sparsity: Weight
    lambda_opaque: Weight
    reg_switch: float
    t_min: tuple[float, float]
    t_max: tuple[float, float]
    anneal_until: float
    progressive_until: float
    band_start_level: int
    band_start: float
    band_every: float


@dataclasses.dataclass(frozen=True)
class GeometrySettings:
    """Stage 2, the SDF grid (``stages.geometry_stage``).

    Attributes:
      steps: optimisation steps.
      grid: side ``G`` of the ``(G, G, G)`` SDF grid.
      lr: Adam's learning rate of the SDF grid.
      color_lr: Adam's learning rate of the colour field.
      iso_threshold: coarse density whose level set is the initial surface.
      beta: scale of VolSDF's Laplace density.
      num_samples: samples per ray in the band around the surface.
      band: half-width of that band in world units.
      views: random views per step.
      n_rgb: one step in ``n_rgb`` guides the colour render (the rest the
        normal map).
      cfg_image: classifier-free guidance scale of the image prior.
      cfg_view: the same for the view prior.
      t_image: ``(low, high)`` timesteps of the image prior (fraction of T).
      t_view: the same for the view prior.
      lambda_sd: weight of the image prior's score distillation.
      lambda_3d_sd: weight of the view prior's score distillation.
      lambda_rgb: weight of the reference colour MSE.
      lambda_mask: weight of the reference mask MSE.
      lambda_depth_rel: weight of the relative (Pearson) depth loss.
      lambda_eikonal: weight of the eikonal loss.
      lambda_smooth: ``(start, end)`` weight of the Laplacian smoothness.
      smooth_from: fraction at which that weight starts to change.
      smooth_until: fraction at which it reaches its end.
    """

    steps: int
    grid: int
    lr: float
    color_lr: float
    iso_threshold: float
    beta: float
    num_samples: int
    band: float
    views: int
    n_rgb: int
    cfg_image: float
    cfg_view: float
    t_image: tuple[float, float]
    t_view: tuple[float, float]
    lambda_sd: Weight
    lambda_3d_sd: Weight
    lambda_rgb: Weight
    lambda_mask: Weight
    lambda_depth_rel: Weight
    lambda_eikonal: Weight
    lambda_smooth: Weight
    smooth_from: float
    smooth_until: float


@dataclasses.dataclass(frozen=True)
class TextureSettings:
    """Stage 3, texture boosting on frozen geometry (``texture.texture_stage``).

    Attributes:
      steps: optimisation steps of each variant.
      lr: Adam's learning rate of the colour field.
      views: random views per guidance step.
      t_min: lower timestep bound (fraction of T).
      t_max: ``(start, end)`` of the upper bound (and SDEdit's strength).
      cfg_sds: classifier-free guidance scale of SDS.
      cfg_vsd: the same for VSD.
      cfg_bsd: the same for BSD.
      lambda_sd: weight of the score distillation.
      lambda_lora: weight of the estimator's denoising loss (VSD, BSD).
      lambda_pretrain: weight of the DreamBooth denoising loss (BSD).
      lambda_rgb: weight of the reference L1 inside the eroded mask.
      lambda_mask: weight of the reference mask MSE.
      unet_lr: AdamW's learning rate of both UNet copies.
      db_batch: cached augmented renders per DreamBooth step.
      erode_kernel: the released erosion kernel side (pixels).
      erode_reference_size: the render size that kernel is meant for.
    """

    steps: int
    lr: float
    views: int
    t_min: float
    t_max: tuple[float, float]
    cfg_sds: float
    cfg_vsd: float
    cfg_bsd: float
    lambda_sd: Weight
    lambda_lora: Weight
    lambda_pretrain: Weight
    lambda_rgb: Weight
    lambda_mask: Weight
    unet_lr: float
    db_batch: int
    erode_kernel: int
    erode_reference_size: int


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """The turntable measurements and their bootstrap.

    Attributes:
      azimuths: turntable azimuths per elevation ring.
      elevations: the rings' elevations in degrees.
      grid: side of the grid the geometry is resampled to (Chamfer, IoU,
        mesh export).
      bootstrap: paired-bootstrap resamples of the comparisons.
    """

    azimuths: int
    elevations: tuple[float, ...]
    grid: int
    bootstrap: int


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every setting of the DreamCraft3D experiment, typed.

    Attributes:
      preset: the ``--config`` argument string (e.g. ``"small"``); a comma
        (an override) marks the run as an ablation in the verdict.
      seed: the config's top-level seed, recorded with the run; the runs
        draw their keys from ``seeds`` and their objects from ``object_seeds``.
      size: render and prior resolution (``size x size``).
      fov: vertical field of view in degrees.
      prior_source: ``"assets"`` (shipped priors), ``"tiny"`` (untrained) or
        a folder holding ``image_prior/`` and ``view_prior/``.
      prompt_groups: attribute groups of the view-dependent prompt.
      object_seeds: held-out objects.
      seeds: run seeds per object.
      variants: texture variants (``none``, ``sds``, ``vsd``, ``bsdK``).
      elevation_range: ``(low, high)`` of the random views in degrees.
      azimuth_range: the same for azimuths.
      checkpoint_every: steps between checkpoints of every stage.
      log_every: steps between logged metrics.
      field: the radiance and colour field.
      coarse: see :class:`CoarseSettings`.
      geometry: see :class:`GeometrySettings`.
      texture: see :class:`TextureSettings`.
      eval: see :class:`EvalSettings`.
    """

    preset: str
    seed: int
    size: int
    fov: float
    prior_source: str
    prompt_groups: tuple[str, ...]
    object_seeds: tuple[int, ...]
    seeds: tuple[int, ...]
    variants: tuple[str, ...]
    elevation_range: tuple[float, float]
    azimuth_range: tuple[float, float]
    checkpoint_every: int
    log_every: int
    field: FieldSpec
    coarse: CoarseSettings
    geometry: GeometrySettings
    texture: TextureSettings
    eval: EvalSettings


@dataclasses.dataclass(frozen=True)
class PriorSettings:
    """Every setting of the priors' training run (``configs/gen3d_prior.py``).

    Attributes:
      seed: seed of the datasets, the UNets' initialisation and their steps.
      size: image side of the priors (``size x size``).
      channels: UNet channels per resolution level.
      schedule: noise schedule (``cosine``, ``linear`` or ``scaled_linear``).
      num_timesteps: diffusion timesteps T.
      n_objects: training objects (seeds ``0..n_objects-1``).
      n_heldout: held-out objects.
      views: rendered views per object.
      batch: images per step.
      image_steps: steps of the image prior.
      view_steps: steps of the view prior.
      lr: peak learning rate.
      p_normal: share of normal-map images in the image prior's batches.
      image_cfg: guidance scale of the image prior's samples.
      view_cfg: guidance scale of the view prior's novel views.
      sample_steps: DDIM steps of every sample.
      checkpoint_every: steps between checkpoints.
      log_every: steps between logged metrics.
      export_dir: folder the saved priors are copied to (empty: none).
      command: the command recorded in the saved priors' ``config.json``.
    """

    seed: int
    size: int
    channels: tuple[int, ...]
    schedule: str
    num_timesteps: int
    n_objects: int
    n_heldout: int
    views: int
    batch: int
    image_steps: int
    view_steps: int
    lr: float
    p_normal: float
    image_cfg: float
    view_cfg: float
    sample_steps: int
    checkpoint_every: int
    log_every: int
    export_dir: str
    command: str


def from_config(config: Any) -> Settings:
    """The typed settings of the experiment's ``config``
    (``configs/dreamcraft3d.py``)."""
    return config_lib.settings_from(
        Settings,
        config,
        preset=str(config.get("preset", "")),
        field=config_lib.settings_from(FieldSpec, config.field),
        coarse=config_lib.settings_from(CoarseSettings, config.coarse),
        geometry=config_lib.settings_from(GeometrySettings, config.geometry),
        texture=config_lib.settings_from(TextureSettings, config.texture),
        eval=config_lib.settings_from(EvalSettings, config.eval),
    )


def prior_from_config(config: Any) -> PriorSettings:
    """The typed settings of the priors' ``config`` (``configs/gen3d_prior.py``)."""
    return config_lib.settings_from(PriorSettings, config)
