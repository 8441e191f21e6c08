"""The experiment's config, read once into the typed settings the package takes.

:func:`from_config` is the one place that reads the ``ml_collections``
config of ``configs/mos.py``; it returns a :class:`Settings` whose parts go
to the experiment's phases (``experiment.pretrain``, ``experiment.make_task``,
``experiment.resolve_methods``, ``experiment.run_method``) and to ``report``
(``task_verdict``, ``scale_note``, ``summarise``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jaxsuite.core import config as config_lib


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    """The LLaMA-style decoder that is pretrained and then adapted.

    Attributes:
      vocab: tokens V of the procedural language.
      d_model: residual width.
      n_layers: decoder layers L (every adapted projection has L copies).
      n_heads: attention heads (``d_model`` must be divisible by it).
      d_ff: hidden width of the gated MLP.
    """

    vocab: int
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int


@dataclasses.dataclass(frozen=True)
class PretrainSettings:
    """Pretraining of the base model on the procedural language.

    Attributes:
      steps: AdamW steps (warm-up over 5% of them, then cosine decay).
      batch: sequences per step.
      learning_rate: the schedule's peak learning rate.
    """

    steps: int
    batch: int
    learning_rate: float


@dataclasses.dataclass(frozen=True)
class TeacherSettings:
    """The *teacher* task's teacher: the base plus a random low-rank update.

    Attributes:
      rank: rank k of the update of every targeted projection (per layer).
      relative_norm: Frobenius norm of each update over its weight's norm.
    """

    rank: int
    relative_norm: float


@dataclasses.dataclass(frozen=True)
class AdaptSettings:
    """How every adapter trains (the same for every method and task).

    Attributes:
      steps: AdamW steps of each instance.
      chunk: steps per compiled chunk (``steps`` must be a multiple of it).
      batch: sequences per step.
      alpha: every method's scaling numerator (PEFT's ``lora_alpha``).
      dropout: dropout rate on every adapter's input.
      clip: global-norm gradient clipping.
      warmup_ratio: share of the steps with linear warm-up (then linear decay).
      learning_rates: the grid searched on the validation set, one seed.
    """

    steps: int
    chunk: int
    batch: int
    alpha: float
    dropout: float
    clip: float
    warmup_ratio: float
    learning_rates: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything the MoS experiment reads from its config.

    Attributes:
      seed: root seed of the language, the base model, the teacher, the
        remapped language and the evaluation sets.
      seq_len: tokens T per sequence (pretraining, adaptation, evaluation).
      chain_scale: std of the language's logit tables.
      tasks: adaptation tasks run, ``"remap"`` and/or ``"teacher"``.
      remap_tokens: outputs the *remap* task relabels along a cycle.
      target_modules: patterns naming the projections every method adapts.
      budget_rank: e, the LoRA rank whose trainable count is the budget
        (``r=auto`` methods and the verdict's LoRA(e) and LoRA(8e)).
      headline: method string of the MoS row the verdict judges.
      methods: method strings, one table row each (see
        ``adapt.parse_method``; ``r=auto`` fills the budget).
      tune_seed: the seed that picks each method's learning rate.
      seeds: seeds ``0..seeds-1`` trained at the chosen rate.
      eval_sequences: sequences in each validation and test set.
      checkpoint_every: steps between pretraining checkpoints.
      log_every: steps between logged pretraining scalars.
      model: see :class:`ModelSettings`.
      pretrain: see :class:`PretrainSettings`.
      teacher: see :class:`TeacherSettings`.
      adapt: see :class:`AdaptSettings`.
    """

    seed: int
    seq_len: int
    chain_scale: float
    tasks: tuple[str, ...]
    remap_tokens: int
    target_modules: tuple[str, ...]
    budget_rank: int
    headline: str
    methods: tuple[str, ...]
    tune_seed: int
    seeds: int
    eval_sequences: int
    checkpoint_every: int
    log_every: int
    model: ModelSettings
    pretrain: PretrainSettings
    teacher: TeacherSettings
    adapt: AdaptSettings


def from_config(config: Any) -> Settings:
    """The typed settings of the experiment's ``config`` (``configs/mos.py``)."""
    adapt = config_lib.settings_from(AdaptSettings, config.adapt)
    return Settings(
        seed=config.seed,
        seq_len=config.seq_len,
        chain_scale=config.chain_scale,
        tasks=tuple(config.tasks),
        remap_tokens=config.remap_tokens,
        target_modules=tuple(config.target_modules),
        budget_rank=config.budget_rank,
        headline=config.headline,
        methods=tuple(config.methods),
        tune_seed=config.tune_seed,
        seeds=config.seeds,
        eval_sequences=config.eval_sequences,
        checkpoint_every=config.checkpoint_every,
        log_every=config.log_every,
        model=config_lib.settings_from(ModelSettings, config.model),
        pretrain=config_lib.settings_from(PretrainSettings, config.pretrain),
        teacher=config_lib.settings_from(TeacherSettings, config.teacher),
        adapt=dataclasses.replace(adapt, learning_rates=tuple(adapt.learning_rates)),
    )
