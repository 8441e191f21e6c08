"""Config for the example experiment (an MLP fit); see ``jaxsuite.core.example``."""

import ml_collections

from jaxsuite.core import config as config_lib

PRESETS = {
    "smoke": {"steps": 200, "hidden": (32, 32)},
    "small": {"steps": 2000},
    "paper": {"steps": 20000, "hidden": (128, 128, 128)},
}


def _base() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.hidden = (64, 64)
    config.learning_rate = 3e-3
    config.batch_size = 128
    config.steps = 2000
    config.checkpoint_every = 50
    config.log_every = 10
    config.step_delay = 0.0
    return config


SPEC = {
    "seed": config_lib.Int(),
    "hidden": config_lib.Tuple(config_lib.positive_int, min_len=1),
    "learning_rate": config_lib.positive_float,
    "batch_size": config_lib.positive_int,
    "steps": config_lib.positive_int,
    "checkpoint_every": config_lib.positive_int,
    "log_every": config_lib.positive_int,
    "step_delay": config_lib.non_negative_float,
}


def get_config(arg=None):
    return config_lib.build_config(arg, base=_base, presets=PRESETS, spec=SPEC)
