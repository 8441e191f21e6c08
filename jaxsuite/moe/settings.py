"""The experiment's config, read once into the typed settings the package takes.

:func:`from_config` is the one place that reads the ``ml_collections``
config of ``configs/hecate.py``; it returns a :class:`Settings` that the
library functions take: ``replay`` (cost models, planners, replays),
``runtime`` (``make_spec``, ``Runtime``), ``analysis``, ``report`` and the
experiment's training and sweeps (``replay.with_experts`` derives the
settings of another expert count).
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    """The trained MoE language model and its optimizer.

    Attributes:
      vocab: token vocabulary size V.
      hidden: model width H.
      ffn: expert hidden width F (an expert holds ``2 H F`` weights).
      heads: attention heads (divides ``hidden``).
      layers: MoE layers L.
      experts: experts per layer E.
      batch_per_device: sequences B per device and step.
      seq_len: tokens T per sequence.
      capacity_factor: expert capacity over the even share ``2 B T / E``.
      aux_weight: weight of the load-balancing loss.
      learning_rate: Adam's learning rate.
    """

    vocab: int
    hidden: int
    ffn: int
    heads: int
    layers: int
    experts: int
    batch_per_device: int
    seq_len: int
    capacity_factor: float
    aux_weight: float
    learning_rate: float


@dataclasses.dataclass(frozen=True)
class FssdpSettings:
    """FSSDP's memory slots, load window and re-sharding.

    Attributes:
      slots: S, pool slots per device over all layers (``L E / D`` holds
        the model exactly).
      layer_slots: K, most experts of one layer per device.
      mat_slots: m, materialisation slots per device and layer.
      window: iterations averaged for Algorithm 1's load.
      reshard_every: Algorithm 2's period (0: never).
      overlap: Algorithm 1's t (0: from the cost model).
      exchange: token exchange, ``auto``, ``slots``, ``ragged`` or
        ``ragged_emulated``.
    """

    slots: int
    layer_slots: int
    mat_slots: int
    window: int
    reshard_every: int
    overlap: int
    exchange: str


@dataclasses.dataclass(frozen=True)
class DataSettings:
    """The procedural token stream (:func:`jaxsuite.moe.data.batch`).

    Attributes:
      period: steps of one drift cycle of the hot experts.
      follow: fraction of tokens that follow the drifting hot set.
    """

    period: float
    follow: float


@dataclasses.dataclass(frozen=True)
class CostSettings:
    """The modelled cluster (:class:`jaxsuite.moe.cost.CostModel`).

    Attributes:
      nodes: nodes the devices are spread over.
      bw_intra: cluster B's intra-node bandwidth, bytes/s.
      bw_inter: cluster B's inter-node bandwidth, bytes/s.
      alt_bw_intra: cluster A's intra-node bandwidth, bytes/s.
      alt_bw_inter: cluster A's inter-node bandwidth, bytes/s.
      tflops: sustained TFLOP/s per device.
      hidden: the modelled experts' width.
      ffn: the modelled experts' hidden width.
      seq_len: the modelled sequence length.
      tokens_per_device: the modelled tokens per device and step.
    """

    nodes: int
    bw_intra: float
    bw_inter: float
    alt_bw_intra: float
    alt_bw_inter: float
    tflops: float
    hidden: int
    ffn: int
    seq_len: int
    tokens_per_device: int


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every setting of the experiment, typed.

    Attributes:
      seed: seed of the initial parameters and the token stream.
      steps: training steps N of each run.
      checkpoint_every: steps between Orbax checkpoints of a run.
      strategies: the trained strategies (``ep``, ``fsdp``, ``fastermoe``,
        ``fssdp``).
      skews: load skews FSSDP is trained at.
      train_skew: the skew every strategy is trained at.
      measure_remat: also compile and measure the re-materialised steps.
      gating_study: train the dense reference under GShard's gating too.
      expert_sweep: experts per layer modelled at ``train_skew``.
      model: the model and optimizer.
      fssdp: FSSDP's slots and planner.
      data: the token stream.
      cost: the modelled cluster.
    """

    seed: int
    steps: int
    checkpoint_every: int
    strategies: tuple[str, ...]
    skews: tuple[float, ...]
    train_skew: float
    measure_remat: bool
    gating_study: bool
    expert_sweep: tuple[int, ...]
    model: ModelSettings
    fssdp: FssdpSettings
    data: DataSettings
    cost: CostSettings


def _typed(cls: type, config: Any) -> Any:
    """Dataclass ``cls`` from the same-named values of ``config``, cast to type."""
    cast = {"int": int, "float": float, "str": str, "bool": bool}
    return cls(
        **{f.name: cast[f.type](config[f.name]) for f in dataclasses.fields(cls)}
    )


def from_config(config: Any) -> Settings:
    """The typed settings of the experiment's ``config`` (``configs/hecate.py``)."""
    return Settings(
        seed=int(config.seed),
        steps=int(config.steps),
        checkpoint_every=int(config.checkpoint_every),
        strategies=tuple(str(s) for s in config.strategies),
        skews=tuple(float(k) for k in config.skews),
        train_skew=float(config.train_skew),
        measure_remat=bool(config.measure_remat),
        gating_study=bool(config.gating_study),
        expert_sweep=tuple(int(e) for e in config.expert_sweep),
        model=_typed(ModelSettings, config.model),
        fssdp=_typed(FssdpSettings, config.fssdp),
        data=_typed(DataSettings, config.data),
        cost=_typed(CostSettings, config.cost),
    )
