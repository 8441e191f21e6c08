"""Re-materialisation and re-sharding match the reference; FasterMoE's plans too.

FasterMoE-style shadowing is the FSSDP step with a different planner (the
hottest experts on every device), so its plans run through the same step.
"""

from __future__ import annotations

import itertools

import numpy as np

from jaxsuite.moe import plans
from tests.moe import common as h
from tests.moe.strategies_test import run_against_reference


def _hot(rng, pool):
    load = rng.random(h.E)
    return np.stack([plans.replicate_hot(load, pool[i], h.M, h.M) for i in range(h.L)])


def _hot_or_random():
    """Plans alternating FasterMoE shadowing and random replicas."""
    calls = itertools.count()

    def plan(rng, pool):
        return _hot(rng, pool) if next(calls) % 2 == 0 else h.random_mat(rng, pool)

    return plan


def test_fssdp_remat_reshard_and_shadow_plans_match_reference():
    # Re-materialised gathers in the backward pass, a mid-run move of pools
    # and optimizer state to a new sharding, FasterMoE and random plans.
    run_against_reference("fastermoe", _hot_or_random(), remat=True, reshard_at=1)
