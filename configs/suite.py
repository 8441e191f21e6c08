"""Config of the suite: which papers to run, with which preset.

``python -m launch.suite --config=configs/suite.py:smoke --workdir=W`` runs
every paper's launcher with its ``smoke`` preset and writes ``W/report.md``.
Override the list with ``papers=(pvd,hecate)`` or one paper's preset string
with ``paper_preset=small``.
"""

import ml_collections

from jaxsuite.core import config as config_lib

# name (launch/<name>.py and configs/<name>.py), title, library package,
# and the paper's headline claim as its abstract states it.
PAPERS = (
    {
        "name": "lsmgnn",
        "title": "LSM-GNN: storage-based multi-GPU GNN training",
        "package": "jaxsuite.gnn",
        "claim": "On one node with two GPUs, LSM-GNN trains up to 3.75x faster "
        "end to end than DistDGL on two nodes with four GPUs.",
    },
    {
        "name": "hecate",
        "title": "Hecate: Fully Sharded Sparse Data Parallelism for MoE",
        "package": "jaxsuite.moe",
        "claim": "Hecate (FSSDP) trains MoE models up to 3.54x faster than "
        "state-of-the-art MoE training systems.",
    },
    {
        "name": "mos",
        "title": "MoS: Mixture of Shards for parameter-efficient fine-tuning",
        "package": "jaxsuite.lora",
        "claim": "Mixture of shards saves about 8x parameters over standard LoRA "
        "at equal quality.",
    },
    {
        "name": "pvd",
        "title": "PVD: progressive volume distillation between NeRF architectures",
        "package": "jaxsuite.nerf",
        "claim": "Distilling an MLP NeRF from a hash-grid NeRF is 10-20x faster "
        "than training it from scratch, at equal or better quality.",
    },
    {
        "name": "deblur3dgs",
        "title": "Deblurring 3D Gaussian Splatting",
        "package": "jaxsuite.splat",
        "claim": "A small MLP that alters Gaussians' covariances during training "
        "recovers sharp scenes from blurry images and still renders in real time.",
    },
    {
        "name": "blocking",
        "title": "Explainable AI for Atlantic blocking in a QG model",
        "package": "jaxsuite.climate",
        "claim": "SHAP finds the precursors of persistent Atlantic blocking in a QG "
        "model, and QG pre-training then transfer learning beats direct training "
        "on scarce reanalysis data.",
    },
    {
        "name": "s3t",
        "title": "S3T: sharded sliced sequential training for exact unlearning",
        "package": "jaxsuite.unlearn",
        "claim": "Sequentially trained PEFT slices give exact unlearning with more "
        "deletions served before retraining and better performance than SISA.",
    },
    {
        "name": "dreamcraft3d",
        "title": "DreamCraft3D: bootstrapped score distillation for 3D generation",
        "package": "jaxsuite.gen3d",
        "claim": "Geometry sculpting then bootstrapped score distillation turns one "
        "image into a coherent 3D object with boosted texture.",
    },
)

PRESETS = {
    "smoke": {"paper_preset": "smoke", "timeout_seconds": 600},
    "small": {"paper_preset": "small", "timeout_seconds": 3600},
    "paper": {"paper_preset": "paper", "timeout_seconds": 7 * 24 * 3600},
}


def _base() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.papers = tuple(p["name"] for p in PAPERS)
    config.paper_preset = "smoke"
    config.timeout_seconds = 600
    config.rerun = False  # rerun papers whose results.json already exists
    config.registry = [dict(p) for p in PAPERS]
    return config


def get_config(arg=None):
    return config_lib.build_config(
        arg, base=_base, presets=PRESETS, default_preset="smoke"
    )
