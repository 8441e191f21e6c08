"""The experiment's config, read once into the typed settings the package takes.

:func:`from_config` is the one place that reads the ``ml_collections``
config of ``configs/lsmgnn.py``; it returns a :class:`Settings` whose parts
go to the experiment's helpers (``experiment.Data``, ``budget_of``,
``fetch_config``, ``make_fetcher``, ``model_dims``, ``bound_summary``) and,
as explicit arguments, to ``training``'s functions.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jaxsuite.gnn import storage as storage_lib


@dataclasses.dataclass(frozen=True)
class GraphSettings:
    """The synthetic power-law graph and its class-dependent features.

    Attributes:
      num_nodes: nodes N.
      avg_degree: mean degree of the graph.
      num_classes: label classes C.
      p_in: probability that an edge stays inside its endpoint's class.
      exponent: power-law exponent of the degree distribution (> 2).
      feature_dim: feature width D (rows of ``D`` float32 on storage).
      noise: standard deviation of the features around their class mean.
    """

    num_nodes: int
    avg_degree: float
    num_classes: int
    p_in: float
    exponent: float
    feature_dim: int
    noise: float


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """The GraphSAGE model and its data-parallel training.

    Attributes:
      fanouts: sampled neighbours per layer (one entry per layer).
      batch_per_device: seed nodes per device and step.
      hidden: hidden width of every layer but the last.
      learning_rate: Adam's learning rate.
      epochs: training epochs (every policy trains the same batches).
      eval_nodes: test nodes the final accuracy is measured on.
      overlap_fetch: plan step ``t + 1`` on the host while step ``t`` trains.
    """

    fanouts: tuple[int, ...]
    batch_per_device: int
    hidden: int
    learning_rate: float
    epochs: int
    eval_nodes: int
    overlap_fetch: bool


@dataclasses.dataclass(frozen=True)
class CacheSettings:
    """The total cache budget and the caches' geometry and policies.

    Attributes:
      budget_fraction: rows of all devices' caches and the host victim ring,
        over nodes.
      ring_fraction: share of the budget the victim ring may hold.
      ways: ways of every cache set.
      window: steps of future reuse the dynamic policies look at.
      protect: lines of a set the hybrid policy keeps by static score.
      ring_slots: slots of the victim ring.
      ring_depth: rows per victim-ring slot.
      presample_epochs: epochs of the pre-sampled hotness count.
      pagerank_iterations: power iterations of the reverse PageRank.
      damping: PageRank's damping factor.
    """

    budget_fraction: float
    ring_fraction: float
    ways: int
    window: int
    protect: int
    ring_slots: int
    ring_depth: int
    presample_epochs: int
    pagerank_iterations: int
    damping: float


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything the LSM-GNN experiment reads from its config.

    Attributes:
      seed: seed of the graph, features, split, sampler and model.
      devices: devices of the data-parallel mesh.
      policies: the cache policies run, in order (``POLICY_TABLE`` keys).
      graph: see :class:`GraphSettings`.
      train: see :class:`TrainSettings`.
      cache: see :class:`CacheSettings`.
      io: the storage and link cost model.
      compute_seconds: modelled accelerator time of one step.
      checkpoint_every: steps between checkpoints (0: once per epoch).
      log_every: steps between logged scalars.
    """

    seed: int
    devices: int
    policies: tuple[str, ...]
    graph: GraphSettings
    train: TrainSettings
    cache: CacheSettings
    io: storage_lib.IOModel
    compute_seconds: float
    checkpoint_every: int
    log_every: int


def _fields(cls: type, config: Any) -> Any:
    """Dataclass ``cls`` from the same-named values of ``config``."""
    return cls(**{f.name: config[f.name] for f in dataclasses.fields(cls)})


def from_config(config: Any) -> Settings:
    """The typed settings of the experiment's ``config`` (``configs/lsmgnn.py``)."""
    train = _fields(TrainSettings, config.train)
    io = config.io
    return Settings(
        seed=config.seed,
        devices=config.devices,
        policies=tuple(config.policies),
        graph=_fields(GraphSettings, config.graph),
        train=dataclasses.replace(train, fanouts=tuple(train.fanouts)),
        cache=_fields(CacheSettings, config.cache),
        io=storage_lib.IOModel(
            page_bytes=io.page_bytes,
            iops=io.iops,
            storage_bandwidth=io.storage_bandwidth,
            link_bandwidth=io.link_bandwidth,
            host_bandwidth=io.host_bandwidth,
        ),
        compute_seconds=io.compute_seconds,
        checkpoint_every=config.checkpoint_every,
        log_every=config.log_every,
    )
