"""Config for the Hecate (FSSDP) experiment; see ``jaxsuite.moe.experiment``.

``smoke`` checks the pipeline in under a minute (EP and FSSDP only, 16
experts); ``small`` trains all four strategies with 64 experts per layer on
8 devices (E / D = 8, so Algorithm 2 has cold experts to spread: t = 15 of
them are hot) and writes ``benchmarks/results/hecate.json``;
``paper`` holds GPT-MoE-S's shape (d_model 768, 64 experts, 12 layers) for
machines with accelerators.
"""

import ml_collections

from jaxsuite.core import config as config_lib

PRESETS = {
    "smoke": {
        "steps": 6,
        "checkpoint_every": 3,
        "strategies": ("ep", "fssdp"),
        "skews": (0.0, 3.0),
        "train_skew": 3.0,
        "measure_remat": False,
        "expert_sweep": (16,),
        "model.hidden": 16,
        "model.ffn": 32,
        "model.seq_len": 16,
        "model.experts": 16,
        "fssdp.slots": 4,
        "fssdp.layer_slots": 4,
        "fssdp.mat_slots": 4,
        "fssdp.reshard_every": 4,
    },
    "small": {},
    "paper": {
        "steps": 1000,
        "model.vocab": 50304,
        "model.hidden": 768,
        "model.ffn": 1536,
        "model.heads": 12,
        "model.layers": 12,
        "model.experts": 64,
        "expert_sweep": (64, 128),
        "model.seq_len": 2048,
        "model.batch_per_device": 8,
        "fssdp.slots": 96,
        "fssdp.layer_slots": 16,
        "fssdp.mat_slots": 16,
        "fssdp.reshard_every": 100,
    },
}


def _base() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.steps = 120
    config.checkpoint_every = 40  # Orbax checkpoint interval of each run
    config.strategies = ("ep", "fsdp", "fastermoe", "fssdp")
    config.skews = (0.0, 1.5, 3.0)
    config.train_skew = 1.5
    config.measure_remat = True  # also compile the re-materialised steps
    # Train the dense reference under GShard's gating too (jaxsuite.moe.gating_study).
    config.gating_study = True
    config.expert_sweep = (16, 32, 64, 128)  # experts per layer, modelled at train_skew

    config.model = ml_collections.ConfigDict()
    config.model.vocab = 64
    config.model.hidden = 32
    config.model.ffn = 64
    config.model.heads = 2
    config.model.layers = 2
    config.model.experts = 64
    config.model.batch_per_device = 2
    config.model.seq_len = 32
    config.model.capacity_factor = 2.0
    config.model.aux_weight = 0.01
    config.model.learning_rate = 3e-3

    config.fssdp = ml_collections.ConfigDict()
    config.fssdp.slots = 16  # pool slots per device over all layers (L E / D)
    config.fssdp.layer_slots = 16  # K: most experts of one layer per device
    config.fssdp.mat_slots = 16  # materialisation slots m per device and layer
    config.fssdp.window = 5  # iterations averaged for Algorithm 1's load
    config.fssdp.reshard_every = 40  # Algorithm 2 period K (0 = never)
    config.fssdp.overlap = 0  # t; 0 = from the cost model (T_attn * bw / P)
    config.fssdp.exchange = "auto"  # token exchange: slots, ragged (GPU) or auto

    config.data = ml_collections.ConfigDict()
    config.data.period = 200.0
    config.data.follow = 0.5

    # The modelled cluster: paper's cluster B, GPT-MoE-S experts, bf16.
    config.cost = ml_collections.ConfigDict()
    config.cost.nodes = 2
    config.cost.bw_intra = 600e9
    config.cost.bw_inter = 50e9
    config.cost.alt_bw_intra = 300e9  # cluster A: NVLink 300 GB/s
    config.cost.alt_bw_inter = 12.5e9  # cluster A: 100 Gbps
    config.cost.tflops = 124.8  # 40% of an A100's 312 bf16 TFLOP/s (assumed)
    config.cost.hidden = 768
    config.cost.ffn = 1536
    config.cost.seq_len = 2048
    config.cost.tokens_per_device = 16384
    return config


_pos_int, _pos = config_lib.positive_int, config_lib.positive_float
SPEC = {
    "seed": config_lib.Int(),
    "steps": config_lib.Int(min=2),  # step 1 compiles; times use the rest
    "checkpoint_every": _pos_int,
    "strategies": config_lib.Tuple(
        config_lib.Choice("ep", "fsdp", "fastermoe", "fssdp"), min_len=1, unique=True
    ),
    "skews": config_lib.Tuple(config_lib.non_negative_float, min_len=1),
    "train_skew": config_lib.non_negative_float,
    "measure_remat": config_lib.boolean,
    "gating_study": config_lib.boolean,
    "expert_sweep": config_lib.Tuple(_pos_int, min_len=1, unique=True),
    "model.vocab": config_lib.Int(min=2),
    "model.hidden": _pos_int,
    "model.ffn": _pos_int,
    "model.heads": _pos_int,
    "model.layers": _pos_int,
    "model.experts": config_lib.Int(min=2),
    "model.batch_per_device": _pos_int,
    "model.seq_len": _pos_int,
    "model.capacity_factor": _pos,
    "model.aux_weight": config_lib.non_negative_float,
    "model.learning_rate": _pos,
    "fssdp.slots": _pos_int,
    "fssdp.layer_slots": _pos_int,
    "fssdp.mat_slots": _pos_int,
    "fssdp.window": _pos_int,
    "fssdp.reshard_every": config_lib.non_negative_int,
    "fssdp.overlap": config_lib.non_negative_int,
    "fssdp.exchange": config_lib.Choice("auto", "slots", "ragged", "ragged_emulated"),
    "data.period": _pos,
    "data.follow": config_lib.fraction,
    "cost.nodes": _pos_int,
    "cost.bw_intra": _pos,
    "cost.bw_inter": _pos,
    "cost.alt_bw_intra": _pos,
    "cost.alt_bw_inter": _pos,
    "cost.tflops": _pos,
    "cost.hidden": _pos_int,
    "cost.ffn": _pos_int,
    "cost.seq_len": _pos_int,
    "cost.tokens_per_device": _pos_int,
}


def _fits(c) -> str | None:
    if "fssdp" not in c.strategies:
        return f"strategies={tuple(c.strategies)}: must include 'fssdp' (the method)."
    if c.model.hidden % c.model.heads:
        return (
            f"model.hidden={c.model.hidden} must be a multiple of "
            f"model.heads={c.model.heads}."
        )
    return None


def get_config(arg=None):
    return config_lib.build_config(
        arg, base=_base, presets=PRESETS, spec=SPEC, checks=(_fits,)
    )
