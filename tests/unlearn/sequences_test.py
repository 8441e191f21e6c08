"""Sequence selection: cyclic rotations, bipartite matching, the prior-aware variant."""

import itertools
import math

import numpy as np
import pytest

from jaxsuite.unlearn import sequences as seq_lib


@pytest.mark.parametrize("num_slices", [1, 2, 3, 4, 5])
def test_cyclic_is_balanced_and_distinct_for_every_budget(num_slices):
    for budget in range(1, math.factorial(num_slices) + 1):
        seqs = seq_lib.cyclic(num_slices, budget)
        assert len(seqs) == budget
        seq_lib.check_sequences(seqs, num_slices)  # Distinct permutations.
        firsts = [s[0] for s in seqs]
        # min(B, L) distinct first slices ...
        assert len(set(firsts)) == min(budget, num_slices)
        # ... and every first slice is used floor or ceil(B / L) times.
        counts = np.bincount(firsts, minlength=num_slices)
        assert counts.max() - counts.min() <= 1


def test_cyclic_small_budget_is_rotations_and_full_budget_every_permutation():
    assert seq_lib.cyclic(4, 4) == [
        (0, 1, 2, 3),
        (1, 2, 3, 0),
        (2, 3, 0, 1),
        (3, 0, 1, 2),
    ]
    assert sorted(seq_lib.cyclic(4, 24)) == seq_lib.all_permutations(4)


def test_cyclic_rejects_budgets_beyond_every_permutation():
    with pytest.raises(ValueError, match="budget"):
        seq_lib.cyclic(3, 7)
    with pytest.raises(ValueError, match="budget"):
        seq_lib.cyclic(3, 0)


def _is_latin_square(seqs, num_slices):
    rows = np.array(seqs)
    return rows.shape == (num_slices, num_slices) and all(
        sorted(rows[:, c]) == list(range(num_slices)) for c in range(num_slices)
    )


@pytest.mark.parametrize("num_slices", [2, 3, 4, 5, 6])
def test_bms_columns_form_a_latin_square(num_slices):
    seqs = seq_lib.bms(num_slices)
    seq_lib.check_sequences(seqs, num_slices)
    assert _is_latin_square(seqs, num_slices)


def test_prior_aware_bms_is_a_latin_square_with_optimal_rounds():
    rng = np.random.default_rng(0)
    for _ in range(5):
        probs = rng.dirichlet(np.ones(4))
        seqs = seq_lib.prior_aware_bms(probs, power=3.0)
        assert _is_latin_square(seqs, 4)
        # Each round is a maximum-weight assignment: check it by brute force
        # over every assignment of slices to the sequences' prefixes.
        for r in range(1, 4):
            prefixes = [list(s[:r]) for s in seqs]
            chosen = sum(
                seq_lib.prefix_score(probs[list(s[: r + 1])], 3.0) for s in seqs
            )
            best = -np.inf
            for perm in itertools.permutations(range(4)):
                if any(perm[i] in prefixes[i] for i in range(4)):
                    continue
                total = sum(
                    seq_lib.prefix_score(probs[prefixes[i] + [perm[i]]], 3.0)
                    for i in range(4)
                )
                best = max(best, total)
            assert chosen == pytest.approx(best, rel=1e-9)


def test_prior_aware_subset_keeps_the_sequences_least_likely_to_be_hit():
    probs = [0.4, 0.3, 0.2, 0.1]
    seqs = seq_lib.prior_aware_bms(probs, budget=2)
    # Slices 3 and 2 are the least likely to be deleted: they lead.
    assert sorted(s[0] for s in seqs) == [2, 3]
    assert sorted(s[0] for s in seq_lib.cyclic(4, 2)) == [0, 1]


def test_prefix_score_matches_its_definition():
    probs = [0.1, 0.2, 0.3]
    expected = 1 * 0.9**2 + 2 * 0.7**2 + 3 * 0.4**2
    assert seq_lib.prefix_score(probs, power=2) == pytest.approx(expected)


def test_prefixes_list_each_distinct_prefix_once_shortest_first():
    seqs = [(0, 1, 2), (0, 2, 1), (1, 0, 2)]
    got = seq_lib.prefixes(seqs)
    assert got == [(0,), (1,), (0, 1), (0, 2), (1, 0), (0, 1, 2), (0, 2, 1), (1, 0, 2)]


def test_select_and_check_reject_bad_input():
    with pytest.raises(ValueError, match="unknown"):
        seq_lib.select("random", 4, 2)
    with pytest.raises(ValueError, match="prior"):
        seq_lib.select("prior_bms", 4, 2)
    with pytest.raises(ValueError, match="1..4"):
        seq_lib.bms(4, 5)
    with pytest.raises(ValueError, match="permutation"):
        seq_lib.check_sequences([(0, 0, 1)], 3)
    with pytest.raises(ValueError, match="repeat"):
        seq_lib.check_sequences([(0, 1), (0, 1)], 2)
