"""Config for training the DreamCraft3D priors (``jaxsuite.gen3d.prior_training``).

Presets: ``smoke`` (a tiny UNet at 16 x 16 for a few steps), ``small`` (the
shipped priors: 32 x 32, channels (32, 64, 64), on 2 CPU cores), ``paper``
(a larger run for a GPU; DreamCraft3D itself uses pretrained DeepFloyd IF,
Stable Diffusion 2.1 and Zero-1-to-3, which cannot be trained here).

The shipped weights in ``jaxsuite/assets/gen3d`` were made by::

    python -m launch.gen3d_prior \\
        --config=configs/gen3d_prior.py:small,export_dir=jaxsuite/assets/gen3d \\
        --workdir=runs/gen3d_prior
"""

import ml_collections

from jaxsuite.core import config as config_lib

PRESETS = {
    "smoke": {
        "size": 16,
        "channels": (8,),
        "n_objects": 6,
        "n_heldout": 2,
        "views": 4,
        "image_steps": 4,
        "view_steps": 4,
        "batch": 4,
        "sample_steps": 4,
        "checkpoint_every": 2,
        "log_every": 2,
    },
    "small": {},
    "paper": {
        "size": 64,
        "channels": (64, 128, 256, 256),
        "n_objects": 5000,
        "views": 32,
        "image_steps": 200_000,
        "view_steps": 200_000,
        "batch": 128,
        "lr": 2e-4,
    },
}


def _base() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.size = 32
    c.channels = (32, 64, 64)
    c.schedule = "cosine"
    c.num_timesteps = 1000
    c.n_objects = 320
    c.n_heldout = 6
    c.views = 24
    c.batch = 24
    c.image_steps = 2400
    c.view_steps = 1600
    c.lr = 1e-3
    c.p_normal = 0.25
    c.image_cfg = 5.0
    c.view_cfg = 5.0
    c.sample_steps = 50
    c.checkpoint_every = 200
    c.log_every = 50
    c.export_dir = ""
    c.command = (
        "python -m launch.gen3d_prior --config=configs/gen3d_prior.py:small,"
        "export_dir=jaxsuite/assets/gen3d --workdir=runs/gen3d_prior"
    )
    return c


_pos_int = config_lib.positive_int

SPEC = {
    "seed": config_lib.Int(),
    "size": config_lib.Int(min=8),
    "channels": config_lib.Tuple(_pos_int, min_len=1),
    "schedule": config_lib.Choice("cosine", "linear", "scaled_linear"),
    "num_timesteps": config_lib.Int(min=10),
    "n_objects": _pos_int,
    "n_heldout": _pos_int,
    "views": config_lib.Int(min=2),
    "batch": _pos_int,
    "image_steps": _pos_int,
    "view_steps": _pos_int,
    "lr": config_lib.positive_float,
    "p_normal": config_lib.fraction,
    "image_cfg": config_lib.Float(min=1.0),
    "view_cfg": config_lib.Float(min=1.0),
    "sample_steps": _pos_int,
    "checkpoint_every": _pos_int,
    "log_every": _pos_int,
}


def _fits(c) -> str | None:
    if c.size % (2 ** (len(c.channels) - 1)):
        return (
            f"size={c.size} must be divisible by 2^(len(channels) - 1) = "
            f"{2 ** (len(c.channels) - 1)} (one downsampling per extra level)."
        )
    if any(ch % 8 for ch in c.channels):
        return (
            f"channels={tuple(c.channels)}: each must be a multiple of 8 (GroupNorm)."
        )
    return None


def get_config(arg=None):
    return config_lib.build_config(
        arg, base=_base, presets=PRESETS, spec=SPEC, checks=(_fits,)
    )
