"""Deletion rate: Monte Carlo of the truncation rule against ``m L H_{m B'}``."""

import numpy as np
import pytest

from jaxsuite.unlearn import ledger, theory
from jaxsuite.unlearn import sequences as seq_lib


def test_harmonic_numbers():
    assert theory.harmonic(1) == 1.0
    assert theory.harmonic(4) == pytest.approx(1 + 1 / 2 + 1 / 3 + 1 / 4)


@pytest.mark.parametrize(
    "method,num_shards,num_slices,budget",
    [
        ("identity", 5, 4, 1),  # SISA: B' = 1
        ("cyclic", 5, 4, 2),
        ("cyclic", 5, 4, 4),
        ("cyclic", 5, 4, 24),  # every permutation: B' = min(B, L) = 4
        ("bms", 3, 5, 5),
    ],
)
def test_monte_carlo_deletion_rate_matches_closed_form(
    method, num_shards, num_slices, budget
):
    seqs = seq_lib.select(method, num_slices, budget)
    b_prime = theory.distinct_first_slices(seqs)
    assert b_prime == min(budget, num_slices)
    sim = theory.simulate(
        seqs, num_shards, num_slices, trials=6000, seed=budget + 10 * num_slices
    )
    mean, se = theory.mean_and_se(sim["all_dead"])
    closed = theory.closed_form_all_dead(num_shards, num_slices, b_prime)
    assert abs(mean - closed) < 3 * se, (mean, se, closed)
    assert np.all(sim["first_death"] <= sim["all_dead"])


def test_simulator_agrees_with_the_ledger_state_machine():
    """Replays uniform slice draws through ``ledger.apply_deletion``."""
    num_shards, num_slices = 3, 4
    seqs = seq_lib.cyclic(num_slices, 4)
    per_slice = 40  # Enough samples that a slice is never exhausted.
    assignment = [
        (s, j)
        for s in range(num_shards)
        for j in range(num_slices)
        for _ in range(per_slice)
    ]
    firsts, lasts = [], []
    for trial in range(30):
        rng = np.random.default_rng(trial)
        body = ledger.new_ledger(
            method="s3t",
            sequences=[seqs] * num_shards,
            num_slices=num_slices,
            num_groups=num_slices,
            assignment=assignment,
        )
        used = {}
        first = last = None
        for k in range(1, 10_000):
            s, j = int(rng.integers(num_shards)), int(rng.integers(num_slices))
            n = used.get((s, j), 0)
            used[(s, j)] = n + 1
            sample = (s * num_slices + j) * per_slice + n
            body, effect = ledger.apply_deletion(body, sample)
            if effect["shard_died"] and first is None:
                first = k
            if not ledger.live_shards(body):
                last = k
                break
        firsts.append(first)
        lasts.append(last)
    sim = theory.simulate(seqs, num_shards, num_slices, trials=4000, seed=1)
    for ours, theirs in ((firsts, sim["first_death"]), (lasts, sim["all_dead"])):
        mean, se = theory.mean_and_se(np.array(ours))
        ref, ref_se = theory.mean_and_se(theirs)
        assert abs(mean - ref) < 3.5 * np.hypot(se, ref_se)


def test_skewed_prior_favours_prior_aware_selection():
    probs = np.array([0.4, 0.3, 0.2, 0.1])
    served = {}
    for method in ("cyclic", "prior_bms"):
        seqs = seq_lib.select(method, 4, 2, probs)
        sim = theory.simulate(seqs, 5, 4, trials=3000, seed=3, probs=probs)
        served[method] = theory.mean_and_se(sim["first_death"])
    (cyc, cyc_se), (pri, pri_se) = served["cyclic"], served["prior_bms"]
    assert pri - cyc > 5 * np.hypot(cyc_se, pri_se)
