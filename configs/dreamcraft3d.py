"""Config for DreamCraft3D (``jaxsuite.gen3d.experiment``): image-to-3D on
held-out procedural objects with SDS, VSD, BSD x1 and BSD x2 texture stages.

Loss weights, guidance scales, timestep schedules and the BSD cycle are the
released code's (``deepseek-ai/DreamCraft3D`` configs and
``stable_diffusion_bsd_guidance.py``); schedules given at a step of the
released 5000-step stages are stored as fractions of the stage's steps, so
``small`` scales steps and resolution only.

Presets: ``smoke`` (tiny untrained priors and a handful of steps: the whole
pipeline end to end in about a minute), ``small`` (the shipped priors,
held-out objects x seeds, on 2 CPU cores), ``paper`` (the released step
counts; resolution stays at the shipped priors' 32 x 32).
"""

import ml_collections

from jaxsuite.core import config as config_lib

PRESETS = {
    "smoke": {
        "size": 16,
        "prior_source": "tiny",
        "object_seeds": (100_000,),
        "seeds": (0,),
        "variants": ("none", "sds", "bsd1"),
        "coarse.steps": 6,
        "coarse.num_samples": 16,
        "geometry.steps": 4,
        "geometry.grid": 16,
        "texture.steps": 10,
        "eval.azimuths": 4,
        "eval.grid": 24,
        "field.hash_levels": 4,
        "field.hash_log2_table": 8,
        "field.hidden": 16,
        "coarse.band_start_level": 2,
        "checkpoint_every": 5,
        "log_every": 2,
    },
    "small": {},
    "paper": {
        "coarse.steps": 5000,
        "geometry.steps": 5000,
        "texture.steps": 5000,
        "coarse.num_samples": 512,
        "geometry.grid": 128,
        "field.hash_levels": 16,
        "field.hash_log2_table": 19,
        "field.hash_max_resolution": 4096.0,
        "field.hidden": 64,
        "coarse.band_start_level": 8,
    },
}


def _base() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.size = 32
    c.fov = 20.0
    c.prior_source = "assets"  # "assets" (shipped), "tiny" (untrained) or a folder
    c.prompt_groups = ("class", "view")
    c.object_seeds = (100_000, 100_001, 100_002, 100_003)
    c.seeds = (0, 1)
    c.variants = ("none", "sds", "vsd", "bsd1", "bsd2")
    c.elevation_range = (-10.0, 45.0)
    c.azimuth_range = (-180.0, 180.0)
    c.checkpoint_every = 100
    c.log_every = 25

    c.field = ml_collections.ConfigDict()
    c.field.hash_levels = 8
    c.field.hash_features = 2
    c.field.hash_log2_table = 12
    c.field.hash_base_resolution = 8
    c.field.hash_max_resolution = 128.0
    c.field.hidden = 32
    c.field.bound = 1.0
    c.field.blob_density = 10.0
    c.field.blob_radius = 0.5

    c.coarse = ml_collections.ConfigDict()
    c.coarse.steps = 300
    c.coarse.lr = 0.01
    c.coarse.num_samples = 48
    c.coarse.views = 1
    c.coarse.cfg_image = 20.0
    c.coarse.cfg_view = 5.0
    c.coarse.lambda_sd = 0.1
    c.coarse.lambda_3d_sd = 0.1
    c.coarse.lambda_rgb = 1000.0
    c.coarse.lambda_mask = 100.0
    c.coarse.lambda_depth_rel = 0.05
    c.coarse.lambda_sparsity = (0.1, 10.0)
    c.coarse.lambda_opaque = (0.1, 10.0)
    c.coarse.reg_switch = 0.4  # step 2000 of 5000
    c.coarse.t_min = (0.7, 0.2)
    c.coarse.t_max = (0.85, 0.5)
    c.coarse.anneal_until = 0.04  # 200 of 5000 steps
    c.coarse.progressive_until = 0.04  # 200 of 5000 steps
    c.coarse.band_start_level = 4  # half the levels (8 of 16 released)
    c.coarse.band_start = 0.4  # step 2000 of 5000
    c.coarse.band_every = 0.1  # one level per 500 of 5000 steps

    c.geometry = ml_collections.ConfigDict()
    c.geometry.steps = 200
    c.geometry.grid = 48
    c.geometry.lr = 0.005
    c.geometry.color_lr = 0.01
    c.geometry.iso_threshold = 10.0
    c.geometry.beta = 0.02
    c.geometry.num_samples = 24
    c.geometry.band = 0.15
    c.geometry.views = 1
    c.geometry.n_rgb = 4
    c.geometry.cfg_image = 20.0
    c.geometry.cfg_view = 5.0
    c.geometry.t_image = (0.02, 0.5)
    c.geometry.t_view = (0.2, 0.5)
    c.geometry.lambda_sd = 0.1
    c.geometry.lambda_3d_sd = 0.1
    c.geometry.lambda_rgb = 1000.0
    c.geometry.lambda_mask = 100.0
    c.geometry.lambda_depth_rel = 0.05
    c.geometry.lambda_eikonal = 0.1
    c.geometry.lambda_smooth = (10.0, 1.0)
    c.geometry.smooth_from = 0.2  # steps 1000-2000 of 5000
    c.geometry.smooth_until = 0.4

    c.texture = ml_collections.ConfigDict()
    c.texture.steps = 400
    c.texture.lr = 0.01
    c.texture.views = 1
    c.texture.t_min = 0.05
    c.texture.t_max = (0.5, 0.2)
    c.texture.cfg_sds = 100.0
    c.texture.cfg_vsd = 7.5
    c.texture.cfg_bsd = 2.0
    c.texture.lambda_sd = 0.01
    c.texture.lambda_lora = 0.1
    c.texture.lambda_pretrain = 0.1
    c.texture.lambda_rgb = 1000.0
    c.texture.lambda_mask = 100.0
    c.texture.unet_lr = 1e-5
    c.texture.db_batch = 1
    c.texture.erode_kernel = 9
    c.texture.erode_reference_size = 1024

    c.eval = ml_collections.ConfigDict()
    c.eval.azimuths = 12
    c.eval.elevations = (0.0, 20.0)
    c.eval.grid = 64
    c.eval.bootstrap = 2000
    return c


class _Weight(config_lib.Rule):
    """A non-negative loss weight, or a (start, end) pair of them."""

    def describe(self) -> str:
        return "a number >= 0 or a pair of them"

    def check(self, value):
        pair = config_lib.Tuple(config_lib.non_negative_float, length=2)
        if isinstance(value, tuple | list):
            return pair.check(value)
        return config_lib.non_negative_float.check(value)


_WEIGHT = _Weight()
_pos_int = config_lib.positive_int
_pos = config_lib.positive_float
_nonneg = config_lib.non_negative_float
_frac = config_lib.fraction
_pair = config_lib.Tuple(config_lib.Float(), length=2)
_frac_pair = config_lib.Tuple(_frac, length=2)
_variant = config_lib.Choice("none", "sds", "vsd", *[f"bsd{k}" for k in range(1, 11)])
_group = config_lib.Choice("class", "color_a", "color_b", "pattern", "view")

SPEC = {
    "seed": config_lib.Int(),
    "size": config_lib.Int(min=8),
    "fov": config_lib.Float(min=1.0, max=120.0),
    "prompt_groups": config_lib.Tuple(_group, unique=True),
    "object_seeds": config_lib.Tuple(
        config_lib.non_negative_int, min_len=1, unique=True
    ),
    "seeds": config_lib.Tuple(config_lib.Int(), min_len=1, unique=True),
    "variants": config_lib.Tuple(_variant, min_len=1, unique=True),
    "elevation_range": config_lib.Tuple(
        config_lib.Float(min=-89.0, max=89.0), length=2
    ),
    "azimuth_range": _pair,
    "checkpoint_every": _pos_int,
    "log_every": _pos_int,
    "field.hash_*": _pos,
    "field.hidden": _pos_int,
    "field.bound": _pos,
    "field.blob_*": _pos,
    "*.steps": config_lib.Int(min=2),
    "*.lr": _pos,
    "*.color_lr": _pos,
    "*.unet_lr": _nonneg,
    "*.views": _pos_int,
    "*.num_samples": config_lib.Int(min=2),
    "*.cfg_*": config_lib.Float(min=1.0),
    "*.lambda_*": _WEIGHT,
    "coarse.t_min": _frac_pair,
    "coarse.t_max": _frac_pair,
    "coarse.band_start_level": _pos_int,
    "coarse.band_start": _frac,
    "coarse.band_every": _frac,
    "coarse.anneal_until": _frac,
    "coarse.progressive_until": _frac,
    "coarse.reg_switch": _frac,
    "geometry.grid": config_lib.Int(min=8),
    "geometry.t_image": _frac_pair,
    "geometry.t_view": _frac_pair,
    "geometry.n_rgb": _pos_int,
    "geometry.beta": _pos,
    "geometry.band": _pos,
    "geometry.iso_threshold": _pos,
    "geometry.smooth_*": _frac,
    "texture.t_min": _frac,
    "texture.t_max": _frac_pair,
    "texture.db_batch": _pos_int,
    "texture.erode_*": _pos_int,
    "eval.azimuths": config_lib.Int(min=4),
    "eval.elevations": config_lib.Tuple(
        config_lib.Float(min=-89.0, max=89.0), min_len=1
    ),
    "eval.grid": config_lib.Int(min=8),
    "eval.bootstrap": _pos_int,
}


def _fits(c) -> str | None:
    lo, hi = c.elevation_range
    if lo > hi:
        return f"elevation_range=({lo}, {hi}): the first must not exceed the second."
    if c.texture.t_min >= min(c.texture.t_max):
        return f"texture.t_min={c.texture.t_min} must lie below texture.t_max."
    if c.coarse.band_start_level > c.field.hash_levels:
        return (
            f"coarse.band_start_level={c.coarse.band_start_level} exceeds "
            f"field.hash_levels={c.field.hash_levels}."
        )
    if c.prior_source == "assets" and c.size != 32:
        return f"size={c.size}: the shipped priors work at 32x32 (or set prior_source)."
    return None


def get_config(arg=None):
    return config_lib.build_config(
        arg, base=_base, presets=PRESETS, spec=SPEC, checks=(_fits,)
    )
