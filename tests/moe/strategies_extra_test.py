"""Re-materialisation and re-sharding match the reference; FasterMoE's plans too.

FasterMoE-style shadowing is the FSSDP step with a different planner (the
hottest experts on every device), so its plans run through the same step.
The mid-run re-sharding is Algorithm 2 over all layers on a skewed load, so
devices own uneven numbers of each layer's experts.
"""

from __future__ import annotations

import itertools

import numpy as np

from jaxsuite.moe import plans, sharding
from tests.moe import common as h
from tests.moe.strategies_test import run_against_reference


def _hot(rng, pool):
    load = rng.random(h.E)
    views = h.layer_pool(pool)
    return np.stack([plans.replicate_hot(load, views[i], h.M, h.M) for i in range(h.L)])


def _hot_or_random():
    """Plans alternating FasterMoE shadowing and random replicas."""
    calls = itertools.count()

    def plan(rng, pool):
        return _hot(rng, pool) if next(calls) % 2 == 0 else h.random_mat(rng, pool)

    return plan


def _algorithm2(rng):
    """Algorithm 2 on a skewed load; checks that it is heterogeneous."""
    load = rng.lognormal(0.0, 2.0, size=(h.L, h.E))
    pool = sharding.heterogeneous_sharding(load, 2, h.S, h.K, h.TOPO)
    per_layer = (h.layer_pool(pool) >= 0).sum(-1)
    assert (per_layer != h.E // h.D).any()
    return pool


def test_fssdp_remat_reshard_and_shadow_plans_match_reference():
    # Re-materialised gathers in the backward pass, a mid-run move of pools
    # and optimizer state to Algorithm 2's sharding, FasterMoE and random plans.
    run_against_reference(
        "fastermoe",
        _hot_or_random(),
        remat=True,
        reshard_at=1,
        new_sharding=_algorithm2,
    )
