"""Adapter configurations: one frozen dataclass per method, PEFT-like fields.

Every config names the layers it adapts (``target_modules``), a scaling
``alpha``, an input ``dropout`` and a ``seed`` from which every random draw of
the adapter (initial values, MoS index sets, VeRA projections) is derived.

``target_modules`` patterns are matched against dotted layer paths such as
``layers.3.attn.q_proj`` (see ``jaxsuite.lora.targets.matches``):

* a plain name matches the whole path or its last components
  (``"q_proj"`` or ``"attn.q_proj"`` match ``layers.3.attn.q_proj``);
* a pattern with ``*``, ``?`` or ``[`` is a shell glob on the whole path
  or on its last components (``"layers.[01].*"``, ``"mlp.*_proj"``);
* ``"re:<regex>"`` is a regular expression that must match the whole path.

The scale multiplying ``B A x`` is ``alpha / rank`` (``alpha / sqrt(rank)``
with ``use_rslora``) for LoRA, MoS, Tied-LoRA and PRoLoRA, where ``rank`` is
the rank each layer uses, and 1 for VeRA (its trainable vectors carry the
scale).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar


def _as_tuple(patterns: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    if isinstance(patterns, str):
        return (patterns,)
    return tuple(patterns)


@dataclasses.dataclass(frozen=True)
class AdapterConfig:
    """Fields shared by every method.

    Attributes:
      target_modules: patterns naming the layers to adapt.
      alpha: the scaling numerator (PEFT's ``lora_alpha``).
      dropout: dropout rate on the adapter's input (0 disables it).
      seed: seeds every random draw of the adapter.
    """

    method: ClassVar[str] = ""
    target_modules: tuple[str, ...] = ()
    alpha: float = 16.0
    dropout: float = 0.0
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "target_modules", _as_tuple(self.target_modules))
        if not self.target_modules:
            raise ValueError(f"{type(self).__name__}: target_modules is empty.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}.")

    @property
    def layer_rank(self) -> int:
        """The rank of each layer's update ``B A``."""
        raise NotImplementedError

    @property
    def scale(self) -> float:
        return self.alpha / self.layer_rank

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["method"] = self.method
        out["target_modules"] = list(self.target_modules)
        return out


@dataclasses.dataclass(frozen=True)
class LoRAConfig(AdapterConfig):
    """LoRA (Hu et al. 2021): ``W + s B A``, A Kaiming-uniform, B zero.

    Attributes:
      rank: r; each adapted layer trains ``r (d_in + d_out)`` parameters.
      use_rslora: scale by ``alpha / sqrt(r)`` (rank-stabilised LoRA).
    """

    method: ClassVar[str] = "lora"
    rank: int = 8
    use_rslora: bool = False

    @property
    def layer_rank(self) -> int:
        return self.rank

    @property
    def scale(self) -> float:
        if self.use_rslora:
            return self.alpha / math.sqrt(self.rank)
        return self.alpha / self.rank


@dataclasses.dataclass(frozen=True)
class MoSConfig(AdapterConfig):
    """Mixture of Shards (Wang et al., ICLR 2025), as in the official code.

    One pair of shard pools per projection type (layers whose paths differ
    only in integer components share a pool), each ``equivalent_rank * L *
    shards_per_vector`` shards long, so the trainable count equals LoRA at
    rank ``equivalent_rank``. Each of the L layers gathers ``rank *
    shards_per_vector`` shards for A and, independently, for B.

    Attributes:
      rank: r, the rank each layer uses (``lora_r``).
      equivalent_rank: e, the budget in LoRA ranks (``valid_param_lora_r``).
      private_rank: p, ranks kept private to each layer
        (``valid_param_private_r``; the official default is 1). ``p == e``
        requires ``r == e`` and is plain LoRA.
      shards_per_vector: l, shards concatenated into one rank vector
        (``num_chunk_per_vec``); d_in and d_out must be divisible by it.
      pair_dissociation: draw B's indices independently of A's (False reuses
        A's draw for B).
      subset_selection: each layer draws a random subset of the public pool
        (False gives every layer the same first shards: pure sharing).
    """

    method: ClassVar[str] = "mos"
    rank: int = 8
    equivalent_rank: int = 2
    private_rank: int = 1
    shards_per_vector: int = 1
    pair_dissociation: bool = True
    subset_selection: bool = True

    def __post_init__(self):
        super().__post_init__()
        r, e, p = self.rank, self.equivalent_rank, self.private_rank
        if min(r, e, self.shards_per_vector) < 1 or p < 0:
            raise ValueError(f"MoS needs r, e, l >= 1 and p >= 0; got {self}.")
        if p > e:
            raise ValueError(f"private_rank p={p} exceeds equivalent_rank e={e}.")
        if p > r:
            raise ValueError(f"private_rank p={p} exceeds rank r={r}.")
        if p == e and r != e:
            raise ValueError(
                f"private_rank == equivalent_rank ({e}) leaves no public pool, so "
                f"rank must equal it too (got rank={r})."
            )

    @property
    def layer_rank(self) -> int:
        return self.rank


@dataclasses.dataclass(frozen=True)
class VeRAConfig(AdapterConfig):
    """VeRA (Kopiczko et al. 2023): ``W + diag(b) B diag(d) A``.

    A (r x max d_in) and B (max d_out x r) are frozen random matrices shared
    by every adapted layer (sliced to each layer's size); each layer trains
    ``d`` (r values, initialised to ``d_initial``) and ``b`` (d_out values,
    zero), i.e. ``d_out + r`` parameters. ``alpha`` is unused.
    """

    method: ClassVar[str] = "vera"
    rank: int = 256
    d_initial: float = 0.1

    @property
    def layer_rank(self) -> int:
        return self.rank

    @property
    def scale(self) -> float:
        return 1.0


@dataclasses.dataclass(frozen=True)
class TiedLoRAConfig(AdapterConfig):
    """Tied-LoRA (Renduchintala et al. 2023), the vBuA variant.

    A and B are tied across the layers of one projection type and trained;
    each layer trains ``u`` (r values, initialised to 1) and ``v`` (d_out
    values, zero): ``W + s diag(v) B diag(u) A``. B starts Kaiming-uniform so
    that ``v`` receives gradient.
    """

    method: ClassVar[str] = "tied_lora"
    rank: int = 8

    @property
    def layer_rank(self) -> int:
        return self.rank


@dataclasses.dataclass(frozen=True)
class PRoLoRAConfig(AdapterConfig):
    """PRoLoRA (Wang et al. 2024): partially rotation-enhanced LoRA.

    Of the r ranks, ``unshared_rank`` u are plain LoRA ranks; the other
    ``r - u`` come from a chunk of A of width ``ceil(d_in / sharing_a)``
    broadcast ``sharing_a`` times along d_in, the i-th copy rotated by
    ``i * max((r - u) // sharing_a, 1)`` ranks (likewise for B along d_out).
    The chunk of A uses Kaiming-uniform with the full d_in as fan (rectified
    initialisation); B's parts start at zero.
    """

    method: ClassVar[str] = "prolora"
    rank: int = 8
    unshared_rank: int = 1
    sharing_a: int = 2
    sharing_b: int = 2
    rotation: bool = True

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.unshared_rank <= self.rank:
            raise ValueError(
                f"unshared_rank must be in [0, rank]; got {self.unshared_rank}."
            )
        if min(self.sharing_a, self.sharing_b) < 1:
            raise ValueError("sharing_a and sharing_b must be >= 1.")

    @property
    def layer_rank(self) -> int:
        return self.rank


CONFIGS = {
    c.method: c
    for c in (LoRAConfig, MoSConfig, VeRAConfig, TiedLoRAConfig, PRoLoRAConfig)
}
