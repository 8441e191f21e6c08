"""Config for PVD (``jaxsuite.nerf.experiment``): teachers, distillation, baselines.

Presets: ``smoke`` (every architecture is a teacher, so all 12 ordered pairs
run, at toy sizes, in under a minute), ``small`` (a hash-grid teacher
distilled into the three other architectures on 2 CPU cores), ``paper`` (the
official code's sizes and schedule, for a GPU).
"""

import ml_collections

from jaxsuite.core import config as config_lib

ARCHS = ("hash", "dense", "vm", "mlp")

PRESETS = {
    "smoke": {
        "scene.size": 16,
        "scene.n_train": 6,
        "scene.n_test": 1,
        "steps": 6,
        "batch_rays": 64,
        "num_samples": 12,
        "num_evals": 2,
        "teachers": ARCHS,
        "occ.resolution": 8,
        "occ.every": 2,
        "occ.warmup": 2,
        "distill.steps": 6,
        "distill.stage1_steps": 2,
        "distill.stage2_steps": 4,
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
    "small": {"teacher_steps": 1500},
    "paper": {
        "scene.size": 800,
        "scene.n_train": 100,
        "scene.n_test": 200,
        "steps": 30000,
        "teacher_steps": 40000,
        "batch_rays": 4096,
        "num_samples": 1024,
        "num_evals": 16,
        "occ.resolution": 128,
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
    },
}


def _base() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.archs = ARCHS
    c.teachers = ("hash",)
    c.steps = 600  # from-scratch steps per architecture
    c.teacher_steps = 0  # steps for the teachers' runs; 0: same as `steps`
    c.batch_rays = 512
    c.num_samples = 48
    c.num_evals = 8
    c.scene = ml_collections.ConfigDict(
        {
            "size": 48,
            "n_train": 40,
            "n_test": 4,
            "density": 40.0,
            "elevation_range_deg": (5.0, 75.0),
        }
    )
    c.occ = ml_collections.ConfigDict(
        {"resolution": 32, "every": 16, "warmup": 64, "decay": 0.95, "threshold": 10.0}
    )
    c.distill = ml_collections.ConfigDict(
        {
            "steps": 600,
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
    "teacher_steps": config_lib.non_negative_int,  # 0: same as steps
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
