"""Config for the S3T exact-unlearning experiment; see ``jaxsuite.unlearn.experiment``.

``smoke`` checks the pipeline in under a minute (2 shards x 2 slices);
``small`` is the headline comparison (m=5 shards, L=4 slices, B in {1, 4, 24}
sequences per shard against SISA, 120 deletions) and writes
``benchmarks/results/s3t.json``; ``paper`` keeps the paper's full-budget
setting (5 shards x 4 slices x 24 permutations) with a larger backbone and
longer stages, for machines with accelerators.
"""

import math

import ml_collections

from jaxsuite.core import config as config_lib

PRESETS = {
    "smoke": {
        "num_shards": 2,
        "num_slices": 2,
        "budgets": (1, 2),
        "deletions": 8,
        "accuracy_at": (0, 2, 4, 8),
        "full_reference": False,
        "devices": 1,
        "model.width": 16,
        "model.depth": 2,
        "pretrain.steps": 300,
        "train.epochs": 10,
        "data.max_train": 80,
        "monte_carlo.trials": 500,
    },
    "small": {},
    "paper": {
        "model.width": 256,
        "model.depth": 12,
        "model.lora_rank": 16,
        "pretrain.steps": 5000,
        "train.epochs": 15,
        "train.batch_size": 128,
        "train.learning_rate": 2e-4,
        "deletions": 300,
        "accuracy_at": (0, 10, 25, 50, 100, 200, 300),
        "monte_carlo.trials": 100000,
    },
}


def _base() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.num_shards = 5  # m
    config.num_slices = 4  # L (= layer groups = stages per sequence)
    config.budgets = (1, 4, 24)  # B: sequences per shard for S3T
    config.sequence_method = "cyclic"  # cyclic | bms | prior_bms
    config.devices = 0  # devices that train shards in parallel; 0 = min(devices, m)
    config.full_reference = True  # also train one model on all data (no sharding)
    config.deletions = 120  # length of the random deletion stream
    config.accuracy_at = (0, 5, 10, 20, 40, 80, 120)  # k reported in the table
    config.checkpoint_every = 200  # pretraining checkpoint interval (steps)
    config.log_every = 50

    config.data = ml_collections.ConfigDict()
    config.data.test_fraction = 0.25
    config.data.max_train = 0  # 0 = every downstream training image

    config.model = ml_collections.ConfigDict()
    config.model.width = 64
    config.model.depth = 8  # blocks; depth / L blocks per layer group
    # What a layer group tunes: "lora" (jaxsuite.lora on each block's dense
    # layer, rsLoRA with alpha = rank and dropout 0.1 as in the reference
    # code) or "dense" (the dense layers themselves).
    config.model.adapters = "lora"
    config.model.lora_rank = 4  # r scales with the width (paper: r=16 at 768)
    config.model.lora_alpha = 0.0  # 0 = rank
    config.model.lora_dropout = 0.1

    config.pretrain = ml_collections.ConfigDict()
    config.pretrain.steps = 1500
    config.pretrain.batch_size = 64
    config.pretrain.learning_rate = 3e-3

    # Each stage: a fresh Adam (learning rate decaying linearly to 0) over the
    # stage's cumulative slices; the same settings for S3T, SISA and the
    # full-data reference. The reference code's ViT runs use lr 2e-4, batch
    # 128, 15 epochs (the paper preset); on ~33-image slices a 64-wide MLP
    # needs more steps and a larger rate.
    config.train = ml_collections.ConfigDict()
    config.train.epochs = 20
    config.train.batch_size = 32
    config.train.learning_rate = 3e-3

    config.monte_carlo = ml_collections.ConfigDict()
    config.monte_carlo.trials = 20000
    # Sequence selection under a skewed prior: slice j is hit with probability
    # proportional to L - j (0.4, 0.3, 0.2, 0.1 for L = 4), B sequences.
    config.monte_carlo.prior_budget = 2
    return config


_pos_int, _pos = config_lib.positive_int, config_lib.positive_float
SPEC = {
    "seed": config_lib.Int(min=0),
    "num_shards": _pos_int,
    "num_slices": config_lib.Int(min=1, max=8),
    "budgets": config_lib.Tuple(_pos_int, min_len=1, unique=True),
    "sequence_method": config_lib.Choice("cyclic", "bms", "prior_bms"),
    "devices": config_lib.non_negative_int,
    "full_reference": config_lib.boolean,
    "deletions": _pos_int,
    "accuracy_at": config_lib.Tuple(config_lib.non_negative_int, min_len=1),
    "checkpoint_every": _pos_int,
    "log_every": _pos_int,
    "data.test_fraction": config_lib.Float(min=0.0, max=1.0, open_min=True),
    "data.max_train": config_lib.non_negative_int,
    "model.width": _pos_int,
    "model.depth": _pos_int,
    "model.adapters": config_lib.Choice("lora", "dense"),
    "model.lora_rank": _pos_int,
    "model.lora_alpha": config_lib.non_negative_float,
    "model.lora_dropout": config_lib.Float(min=0.0, max=0.95),
    "pretrain.steps": _pos_int,
    "pretrain.batch_size": _pos_int,
    "pretrain.learning_rate": _pos,
    "train.epochs": _pos_int,
    "train.batch_size": _pos_int,
    "train.learning_rate": _pos,
    "monte_carlo.trials": config_lib.Int(min=2),
    "monte_carlo.prior_budget": _pos_int,
}


def _fits(c) -> str | None:
    if c.model.depth % c.num_slices:
        return (
            f"model.depth={c.model.depth} must be a multiple of "
            f"num_slices={c.num_slices} (one layer group per stage)."
        )
    most = (
        math.factorial(c.num_slices) if c.sequence_method == "cyclic" else c.num_slices
    )
    if max(c.budgets) > most:
        return (
            f"budgets={tuple(c.budgets)}: {c.sequence_method} sequences of "
            f"{c.num_slices} slices allow at most {most} per shard."
        )
    if max(c.accuracy_at) > c.deletions:
        return f"accuracy_at={tuple(c.accuracy_at)} exceeds deletions={c.deletions}."
    if c.devices > c.num_shards:
        return f"devices={c.devices} exceeds num_shards={c.num_shards}."
    return None


def get_config(arg=None):
    return config_lib.build_config(
        arg, base=_base, presets=PRESETS, spec=SPEC, checks=(_fits,)
    )
