"""Per-strategy set-up shared by the experiment, the benchmark and the notebook.

:class:`Runtime` holds the mesh over all local devices, the optimizer, the
initial parameters and the AOT-compiled training steps of the experiment's
typed :class:`settings.Settings` (one per strategy, re-materialisation flag
and SparseAllGather bucket: a new plan reuses the program unless it needs a
new bucket). :func:`make_spec` turns the settings into a strategy's static
:class:`strategies.Spec`.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
import optax
from jax.sharding import NamedSharding

from jaxsuite.core import devices
from jaxsuite.moe import data, gating, nnx_model, plans, strategies
from jaxsuite.moe.replay import layer_slots
from jaxsuite.moe.settings import Settings

AXIS = "x"


def exchange_kind(name: str) -> str:
    """``auto``: ``ragged_all_to_all`` on GPU/TPU, fixed slots on CPU."""
    if name != "auto":
        return name
    return "slots" if jax.default_backend() == "cpu" else "ragged"


def make_spec(
    settings: Settings, strategy: str, remat: bool = False
) -> strategies.Spec:
    """The static shape of ``strategy``'s step under ``settings``."""
    m = settings.model
    return strategies.Spec(
        strategy=strategy,
        hidden=m.hidden,
        ffn=m.ffn,
        heads=m.heads,
        experts=m.experts,
        cap=gating.capacity(
            m.batch_per_device * m.seq_len, m.experts, m.capacity_factor
        ),
        slots=settings.fssdp.slots,
        layer_slots=layer_slots(settings, strategy),
        mat_slots=settings.fssdp.mat_slots,
        aux_weight=m.aux_weight,
        remat=remat,
        axis=AXIS,
        exchange=exchange_kind(settings.fssdp.exchange),
    )


class Runtime:
    """Mesh, optimizer, initial parameters and compiled steps of ``settings``.

    Attributes:
      settings: the experiment's typed settings.
      mesh: a 1-D mesh over all ``D = jax.device_count()`` devices (axis
        ``AXIS``).
      tx: Adam at ``settings.model.learning_rate``.
      model: the :class:`nnx_model.MoEModel` drawn from ``settings.seed``.
      compiled: the compiled steps by (strategy, remat, plan shapes).
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self.mesh = devices.make_mesh((jax.device_count(),), (AXIS,))
        self.tx = optax.adam(settings.model.learning_rate)
        m = settings.model
        self.model = nnx_model.MoEModel(
            vocab=m.vocab,
            hidden=m.hidden,
            ffn=m.ffn,
            layers=m.layers,
            experts=m.experts,
            key=jax.random.PRNGKey(settings.seed),
        )
        self.compiled: dict[tuple, Any] = {}

    def state(self, pool_id: np.ndarray) -> dict[str, Any]:
        """Initial ``{"dense", "pools", "opt"}`` laid out by ``pool_id (D, S)``.

        ``dense`` and ``pools`` are the ``nnx.Param`` state of
        ``self.model.shard(pool_id)``: the strategies train the module's
        parameters (write them back with :func:`nnx_model.load_params`).
        """
        state = nnx_model.params(self.model.shard(pool_id))
        state["opt"] = self.tx.init(state)
        return strategies.put_state(self.mesh, state, AXIS)

    def tokens(self, step: int, skew: float) -> jax.Array:
        """The global batch ``(D B, T)`` of ``step`` at ``skew``, sharded by row."""
        c = self.settings
        toks = data.batch(
            step,
            batch_size=jax.device_count() * c.model.batch_per_device,
            seq_len=c.model.seq_len,
            vocab=c.model.vocab,
            skew=skew,
            seed=c.seed,
            period=c.data.period,
            follow=c.data.follow,
        )
        return jax.device_put(toks, NamedSharding(self.mesh, jax.P(AXIS)))

    def put_plan(self, plan: plans.PlanArrays) -> tuple:
        """A host plan on the mesh, with the bucket it encodes as ``key``."""
        return strategies.put_plan(self.mesh, plan, AXIS)

    def step(self, strategy: str, state, tokens, plan, remat: bool = False):
        """The AOT-compiled step (once per strategy, remat and plan shapes)."""
        key = (strategy, remat, tuple(a.shape for a in plan))
        if key not in self.compiled:
            spec = make_spec(self.settings, strategy, remat)
            run = strategies.make_train_step(self.mesh, spec, self.tx)
            with jax.set_mesh(self.mesh):
                self.compiled[key] = run.jitted.lower(state, tokens, plan).compile()
        return self.compiled[key]

    def loss_fn(self, strategy: str, remat: bool = False):
        """The strategy's ``(dense, pools, tokens, plan) -> (loss, stats)``."""
        return strategies.make_loss_fn(
            self.mesh, make_spec(self.settings, strategy, remat)
        )
