"""Config for PVD (``jaxsuite.nerf.experiment``): teachers, distillation, baselines.

Every run has a wall-time budget: ``scratch_seconds`` per from-scratch run
(these are also the teachers), ``distill.seconds`` per distillation; ``steps``
and ``distill.steps`` only cap the step counts. Every architecture is a
teacher by default, so all 12 ordered pairs run.

Presets: ``smoke`` (toy sizes, the paper's pair only: a hash teacher and an
MLP student, dense sampling without compaction to keep compilation short),
``small`` (64 px on 2 CPU cores: 4 x 45 s from scratch + 12 x 18 s of
distillation; with compilation, evaluations and re-timings 15 minutes),
``paper`` (the official code's sizes and schedule, for one GPU: the Pallas
hash-encoding kernel; budgets sized from the paper's 30k distillation / 40k
teacher iterations; not measured here).
"""

import ml_collections

from jaxsuite.core import config as config_lib

ARCHS = ("hash", "dense", "vm", "mlp")

PRESETS = {
    "smoke": {
        "scene.size": 16,
        "scene.n_train": 6,
        "scene.n_test": 1,
        "scratch_seconds": 1.0,
        "first_eval_seconds": 0.2,
        "archs": ("hash", "mlp"),
        "teachers": ("hash",),
        "buckets": 1,
        "batch_rays": 64,
        "num_samples": 12,
        "num_evals": 2,
        "occ.resolution": 8,
        "occ.every": 8,
        "occ.warmup": 64,
        "distill.seconds": 0.5,
        "distill.stage1_steps": 2,
        "distill.stage2_steps": 4,
        "retime.steps": 2,
        "retime.repeats": 2,
        "distill.poses_per_epoch": 4,
        "distill.steps_per_epoch": 3,
        "field.hidden": 16,
        "field.hash_levels": 2,
        "field.hash_log2_table": 8,
        "field.hash_max_resolution": 16.0,
        "field.mlp_depth": 2,
        "field.mlp_width": 16,
        "field.mlp_freqs": 4,
        "field.vm_resolution": 8,
        "field.vm_sigma_rank": 2,
        "field.vm_color_rank": 2,
        "field.dense_resolution": 8,
    },
    "small": {},
    "paper": {
        "scene.size": 800,
        "scene.n_train": 100,
        "scene.n_test": 200,
        "scratch_seconds": 1800.0,
        "first_eval_seconds": 5.0,
        "steps": 40000,
        "batch_rays": 4096,
        "num_samples": 1024,
        "num_evals": 16,
        "occ.resolution": 128,
        "distill.seconds": 600.0,
        "distill.steps": 30000,
        "distill.stage1_steps": 2000,
        "distill.stage2_steps": 5000,
        "distill.poses_per_epoch": 312,
        "distill.steps_per_epoch": 100,
        "field.hash_levels": 14,
        "field.hash_log2_table": 19,
        "field.hash_max_resolution": 2048.0,
        "field.mlp_depth": 8,
        "field.mlp_width": 256,
        "field.vm_resolution": 300,
        "field.vm_sigma_rank": 16,
        "field.vm_color_rank": 48,
        "field.dense_resolution": 128,
        "field.hash_implementation": "pallas",
        "buckets": 6,
    },
}


def _base() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.archs = ARCHS
    c.teachers = ARCHS
    c.scratch_seconds = 45.0  # optimisation seconds per from-scratch run
    c.steps = 100000  # cap on from-scratch steps
    c.batch_rays = 512
    c.num_samples = 64
    c.num_evals = 8  # wall-time marks up to distill.seconds (+ half as many after)
    c.first_eval_seconds = 1.0
    c.buckets = 4  # empty-space skipping: compaction capacities N S / 2^k
    c.retime = ml_collections.ConfigDict({"steps": 12, "repeats": 3})
    c.scene = ml_collections.ConfigDict(
        {
            "size": 64,
            "n_train": 40,
            "n_test": 2,
            "density": 40.0,
            "elevation_range_deg": (5.0, 75.0),
        }
    )
    c.occ = ml_collections.ConfigDict(
        {"resolution": 32, "every": 16, "warmup": 64, "decay": 0.95, "threshold": 10.0}
    )
    c.distill = ml_collections.ConfigDict(
        {
            "seconds": 18.0,  # optimisation seconds per distillation
            "steps": 100000,  # cap on distillation steps
            "stage1_steps": 100,
            "stage2_steps": 250,
            "poses_per_epoch": 64,
            "steps_per_epoch": 50,
        }
    )
    c.field = ml_collections.ConfigDict(
        {
            "bound": 1.0,
            "hidden": 64,
            "hash_levels": 8,
            "hash_features": 2,
            "hash_log2_table": 14,
            "hash_base_resolution": 16,
            "hash_max_resolution": 128.0,
            "hash_implementation": "auto",
            "mlp_depth": 4,
            "mlp_width": 64,
            "mlp_freqs": 10,
            "vm_resolution": 64,
            "vm_sigma_rank": 8,
            "vm_color_rank": 16,
            "dense_resolution": 32,
        }
    )
    # Learning rates for grid/table tensors and for network weights (PVD:
    # 1e-2 for hash, VM and Plenoxels grids, 1e-3 for the MLP and VM nets).
    c.lr_grid = ml_collections.ConfigDict(
        {"hash": 1e-2, "dense": 5e-2, "vm": 2e-2, "mlp": 1e-3}
    )
    c.lr_net = ml_collections.ConfigDict(
        {"hash": 1e-2, "dense": 1e-2, "vm": 1e-3, "mlp": 1e-3}
    )
    return c


_pos_int, _pos = config_lib.positive_int, config_lib.positive_float
_arch = config_lib.Choice(*ARCHS)
SPEC = {
    "seed": config_lib.Int(),
    "archs": config_lib.Tuple(_arch, min_len=2, unique=True),
    "teachers": config_lib.Tuple(_arch, min_len=1, unique=True),
    "steps": _pos_int,
    "scratch_seconds": _pos,
    "first_eval_seconds": _pos,
    "buckets": _pos_int,
    "retime.steps": config_lib.non_negative_int,
    "retime.repeats": config_lib.non_negative_int,
    "distill.seconds": _pos,
    "batch_rays": _pos_int,
    "num_samples": config_lib.Int(min=2),
    "num_evals": _pos_int,
    "scene.size": config_lib.Int(min=2),
    "scene.n_train": _pos_int,
    "scene.n_test": _pos_int,
    "scene.density": _pos,
    "scene.elevation_range_deg": config_lib.Tuple(
        config_lib.Float(min=-90.0, max=90.0), length=2
    ),
    "occ.resolution": config_lib.Int(min=2),
    "occ.every": _pos_int,
    "occ.warmup": config_lib.non_negative_int,
    "occ.decay": config_lib.fraction,
    "occ.threshold": config_lib.non_negative_float,
    "distill.steps": _pos_int,
    "distill.stage1_steps": config_lib.non_negative_int,
    "distill.stage2_steps": config_lib.non_negative_int,
    "distill.poses_per_epoch": _pos_int,
    "distill.steps_per_epoch": _pos_int,
    "field.bound": _pos,
    "field.hash_max_resolution": _pos,
    "field.hash_implementation": config_lib.Choice("auto", "reference", "pallas"),
    "field.hash_levels": _pos_int,
    "field.hash_features": _pos_int,
    "field.hash_log2_table": config_lib.Int(min=1, max=30),
    "field.hash_base_resolution": _pos_int,
    "field.hidden": _pos_int,
    "field.mlp_*": _pos_int,
    "field.vm_*": _pos_int,
    "field.dense_resolution": config_lib.Int(min=2),
    "lr_grid.*": _pos,
    "lr_net.*": _pos,
}


def _fits(c) -> str | None:
    extra = [t for t in c.teachers if t not in c.archs]
    if extra:
        return f"teachers={tuple(c.teachers)}: {extra} not in archs={tuple(c.archs)}."
    if c.distill.stage1_steps > c.distill.stage2_steps:
        return (
            f"distill.stage1_steps={c.distill.stage1_steps} exceeds "
            f"distill.stage2_steps={c.distill.stage2_steps}."
        )
    for group in ("lr_grid", "lr_net"):
        missing = [a for a in c.archs if a not in c[group]]
        if missing:
            return f"{group} has no learning rate for {missing}."
    if c.distill.seconds > c.scratch_seconds:
        return (
            f"distill.seconds={c.distill.seconds} exceeds scratch_seconds="
            f"{c.scratch_seconds}: equal-time comparisons need the from-scratch "
            "curve to cover the distillation."
        )
    lo, hi = c.scene.elevation_range_deg
    if lo > hi:
        return (
            f"scene.elevation_range_deg=({lo}, {hi}): the first must not exceed "
            "the second."
        )
    return None


def get_config(arg=None):
    return config_lib.build_config(
        arg, base=_base, presets=PRESETS, spec=SPEC, checks=(_fits,)
    )
