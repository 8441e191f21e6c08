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


def get_config(arg=None):
    return config_lib.build_config(arg, base=_base, presets=PRESETS)
