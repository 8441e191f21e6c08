"""Config for LSM-GNN: GraphSAGE trained from storage under each feature cache.

Presets: ``smoke`` (a few thousand nodes, < 60 s), ``small`` (10^5 nodes,
the committed comparison), ``paper`` (the authors' training settings on a
larger synthetic graph, for machines with accelerators).
"""

import ml_collections

from jaxsuite.core import config as config_lib

PRESETS = {
    "smoke": {
        "graph.num_nodes": 4000,
        "train.batch_per_device": 16,
        "train.fanouts": (5, 3),
        "train.hidden": 32,
        "train.epochs": 2,
        "cache.ways": 8,
        "cache.ring_depth": 128,
        "log_every": 4,
    },
    "small": {},
    "paper": {
        "graph.num_nodes": 1_000_000,
        "train.batch_per_device": 512,
        "train.fanouts": (10, 15),
        "train.hidden": 128,
        "cache.ways": 32,
        "cache.window": 64,
        "cache.protect": 16,
        "cache.ring_slots": 256,
        "cache.ring_depth": 32,
    },
}

POLICIES = (
    "none",
    "independent_lru",
    "static_pagerank",
    "presampled_hotness",
    "shared_lru",  # ablation: the shared cache alone, without the hybrid policy
    "lsm_gnn",
    "lsm_gnn_pvp",
    "lsm_gnn_pvp_ring_extra",  # unequal budgets: the ring on top of the cache
    "belady_set_assoc",  # full-future Belady inside the shared cache's sets
    "belady_set_assoc_pinned",  # ... that also never evicts a line hit this step
    "belady",  # the true bound: unconstrained Belady over the whole budget
)


def _base() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.devices = 8
    c.policies = POLICIES

    c.graph = ml_collections.ConfigDict()
    c.graph.num_nodes = 100_000
    c.graph.avg_degree = 12.0
    c.graph.num_classes = 16
    c.graph.p_in = 0.8
    c.graph.exponent = 2.2
    c.graph.feature_dim = 128
    c.graph.noise = 6.0

    c.train = ml_collections.ConfigDict()
    c.train.fanouts = (10, 5)
    c.train.batch_per_device = 64
    c.train.hidden = 128
    c.train.learning_rate = 3e-3
    c.train.epochs = 3
    c.train.eval_nodes = 4096
    # Plan step t + 1 on the host while the devices train step t.
    c.train.overlap_fetch = True

    c.cache = ml_collections.ConfigDict()
    # Total rows over all devices and the host victim ring, over nodes.
    c.cache.budget_fraction = 0.2
    # Share of the budget that the victim ring may hold (LSM-GNN+PVP).
    c.cache.ring_fraction = 0.2
    c.cache.ways = 16
    c.cache.window = 8
    c.cache.protect = 4
    c.cache.ring_slots = 16
    c.cache.ring_depth = 512
    c.cache.presample_epochs = 1
    c.cache.pagerank_iterations = 20
    c.cache.damping = 0.85

    c.io = ml_collections.ConfigDict()
    # One storage read per 512-B row: GIDS/BaM size the cache line and the
    # read to the feature row (4 KiB for IGB's 1024-d rows).
    c.io.page_bytes = 512
    c.io.iops = 1.0e6
    c.io.storage_bandwidth = 6.0e9
    c.io.link_bandwidth = 100.0e9
    c.io.host_bandwidth = 25.0e9
    c.io.compute_seconds = 0.001  # modelled accelerator time of one step

    c.checkpoint_every = 0  # 0: once per epoch
    c.log_every = 10
    return c


_pos_int, _pos = config_lib.positive_int, config_lib.positive_float
SPEC = {
    "seed": config_lib.Int(),
    "devices": _pos_int,
    "policies": config_lib.Tuple(config_lib.Choice(*POLICIES), min_len=1, unique=True),
    "graph.num_nodes": config_lib.Int(min=16),
    "graph.avg_degree": _pos,
    "graph.num_classes": config_lib.Int(min=2),
    "graph.p_in": config_lib.fraction,
    "graph.exponent": config_lib.Float(min=2.0, open_min=True),
    "graph.feature_dim": _pos_int,
    "graph.noise": config_lib.non_negative_float,
    "train.fanouts": config_lib.Tuple(_pos_int, min_len=1),
    "train.batch_per_device": _pos_int,
    "train.hidden": _pos_int,
    "train.learning_rate": _pos,
    "train.epochs": _pos_int,
    "train.eval_nodes": _pos_int,
    "train.overlap_fetch": config_lib.boolean,
    "cache.budget_fraction": config_lib.fraction,
    "cache.ring_fraction": config_lib.Float(min=0.0, max=0.9, open_min=True),
    "cache.ways": _pos_int,
    "cache.window": _pos_int,
    "cache.protect": config_lib.non_negative_int,
    "cache.ring_slots": _pos_int,
    "cache.ring_depth": _pos_int,
    "cache.presample_epochs": config_lib.non_negative_int,
    "cache.pagerank_iterations": _pos_int,
    "cache.damping": config_lib.fraction,
    "io.page_bytes": _pos_int,
    "io.iops": _pos,
    "io.storage_bandwidth": _pos,
    "io.link_bandwidth": _pos,
    "io.host_bandwidth": _pos,
    "io.compute_seconds": config_lib.non_negative_float,
    "checkpoint_every": config_lib.non_negative_int,  # 0: once per epoch
    "log_every": _pos_int,
}


def get_config(arg=None):
    return config_lib.build_config(arg, base=_base, presets=PRESETS, spec=SPEC)
