"""Per-iteration planners: which replicas each strategy materialises.

A :class:`Planner` sees the measured loads of past iterations (host numpy)
and returns the sharding and materialisation for the next one:

* ``ep`` / ``fsdp``: even sharding, no replicas.
* ``fastermoe``: FasterMoE's greedy shadowing of the hottest experts on
  every device (scored with the cost model), at most ``m`` shadows.
* ``fssdp``: Algorithm 1 from the load averaged over the last ``window``
  iterations, and every ``reshard_every`` iterations Algorithm 2
  (heterogeneous sharding) re-shards all layers' experts into the per-device
  pools, cold experts first.
"""

from __future__ import annotations

import numpy as np

from jaxsuite.moe import cost as cost_lib
from jaxsuite.moe import plans as plans_lib
from jaxsuite.moe import sharding as sharding_lib


class Planner:
    """Host-side plan state of one strategy.

    Args:
      strategy: ``ep``, ``fsdp``, ``fastermoe`` or ``fssdp``.
      layers, experts, mat_slots: the step's shapes.
      slots: S pool slots per device over all layers.
      layer_slots: K local compute slots per layer and device.
      topo: device/node layout.
      overlap: Algorithm 1's overlap degree t.
      model: cost model (FasterMoE's policy scores candidates with it).
      window: iterations averaged for the expected load.
      reshard_every: Algorithm 2 period (0 = never).
    """

    def __init__(
        self,
        strategy: str,
        *,
        layers: int,
        experts: int,
        slots: int,
        layer_slots: int,
        mat_slots: int,
        topo: plans_lib.Topology,
        overlap: int,
        model: cost_lib.CostModel,
        window: int = 5,
        reshard_every: int = 0,
    ):
        self.strategy = strategy
        self.layers, self.experts = layers, experts
        self.slots, self.layer_slots, self.mat_slots = slots, layer_slots, mat_slots
        self.topo, self.overlap, self.model = topo, overlap, model
        self.reshard_every = reshard_every
        self.pool_id = sharding_lib.even_sharding(layers, experts, topo.devices, slots)
        self.pool_expert, self.local_slot = self._views()
        self.tracker = plans_lib.LoadTracker(window)
        self.iteration = 0
        self.bucket: tuple[str, int, int] | None = None

    def _views(self) -> tuple[np.ndarray, np.ndarray]:
        return sharding_lib.layer_views(
            self.pool_id, self.layers, self.experts, self.layer_slots
        )

    def plan_arrays(self, mat: np.ndarray) -> plans_lib.PlanArrays:
        """The step's int32 plan for the current sharding and ``mat (L, D, m)``.

        The SparseAllGather bucket of the previous plan is kept while it fits
        (so the compiled step is reused); ``self.bucket`` is the one in use.
        """
        plan = plans_lib.plan_arrays(
            self.pool_expert, self.local_slot, mat, self.topo, current=self.bucket
        )
        self.bucket = plans_lib.bucket_of(plan)
        return plan

    def restore(self, pool_id: np.ndarray, loads: np.ndarray) -> None:
        """Sets the planner to where it stood after the iterations ``loads``.

        Args:
          pool_id: (D, S) the sharding in force.
          loads: (N, L, D_src, E) every past iteration's loads, in order.
        """
        self.pool_id = np.asarray(pool_id, np.int32)
        self.pool_expert, self.local_slot = self._views()
        self.tracker = plans_lib.LoadTracker(self.tracker.window)
        for load in loads[-self.tracker.window :] if len(loads) else ():
            self.tracker.update(load)
        self.iteration = len(loads)

    def observe(self, load: np.ndarray) -> None:
        """Records one iteration's loads ``(L, D_src, E)``."""
        self.tracker.update(np.asarray(load, np.float64))
        self.iteration += 1

    def expected(self) -> np.ndarray:
        """(L, D_src, E) mean load of the window (uniform before any)."""
        uniform = np.ones((self.layers, self.topo.devices, self.experts))
        return self.tracker.mean(uniform)

    def maybe_reshard(self) -> np.ndarray | None:
        """Algorithm 2 when due: returns the new ``pool_id (D, S)`` or None.

        ``pool_expert (L, D, K)`` and ``local_slot (L, D, K)`` follow it.
        """
        due = (
            self.strategy == "fssdp"
            and self.reshard_every > 0
            and self.iteration > 0
            and self.iteration % self.reshard_every == 0
        )
        if not due:
            return None
        new = sharding_lib.heterogeneous_sharding(
            self.expected().sum(1),
            self.overlap,
            self.slots,
            self.layer_slots,
            self.topo,
        )
        self.pool_id = new
        self.pool_expert, self.local_slot = self._views()
        return new

    def materialise(self) -> np.ndarray:
        """(L, D, m) replicas for the next iteration."""
        mat = -np.ones((self.layers, self.topo.devices, self.mat_slots), np.int32)
        if self.strategy in ("ep", "fsdp"):
            return mat
        expected = self.expected()
        for i in range(self.layers):
            per_expert = expected[i].sum(0)
            pool = self.pool_expert[i]
            if self.strategy == "fssdp":
                mat[i] = plans_lib.sparse_materialization(
                    per_expert, pool, self.overlap, self.mat_slots, self.topo
                )
            else:
                counts = self.model.scale_counts(expected[i])

                def layer_time(m, counts=counts, pool=pool):
                    return cost_lib.layer_time(
                        "fastermoe", counts, pool, m, self.model
                    )["total"]

                mat[i] = plans_lib.fastermoe_shadows(
                    per_expert, pool, self.mat_slots, layer_time
                )
        return mat
