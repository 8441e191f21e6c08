"""The ledger: truncation rule, served prefixes, provenance, checksum."""

import json

import numpy as np
import pytest

from jaxsuite.unlearn import ledger
from jaxsuite.unlearn import sequences as seq_lib


def _body(method="s3t", num_shards=3, num_slices=4, budget=4, per_slice=3):
    seqs = seq_lib.cyclic(num_slices, budget)
    assignment = [
        (s, j)
        for s in range(num_shards)
        for j in range(num_slices)
        for _ in range(per_slice)
    ]
    return ledger.new_ledger(
        method=method,
        sequences=[seqs] * num_shards,
        num_slices=num_slices,
        num_groups=num_slices,
        assignment=assignment,
    )


def _served_from_scratch(body, hit):
    """Independent reference: a sequence survives up to its first hit slice."""
    out = {}
    for s, seqs in enumerate(body["meta"]["sequences"]):
        best = ()
        for seq in seqs:
            length = next((i for i, j in enumerate(seq) if j in hit[s]), len(seq))
            if length > len(best):
                best = tuple(seq[:length])
        out[s] = best or None
    return out


@pytest.mark.parametrize("budget", [1, 2, 4, 24])
def test_truncation_matches_first_hit_reference_on_random_streams(budget):
    rng = np.random.default_rng(budget)
    for _ in range(10):
        body = _body(budget=budget)
        hit = {s: set() for s in range(3)}
        for sample in rng.permutation(len(body["assignment"]))[:20]:
            body, effect = ledger.apply_deletion(body, int(sample))
            s, j = body["assignment"][sample]
            hit[s].add(j)
            assert (effect["shard"], effect["slice"]) == (s, j)
            assert ledger.served(body) == _served_from_scratch(body, hit)


def test_served_provenance_excludes_every_deleted_slice():
    rng = np.random.default_rng(1)
    body = _body(budget=4)
    for sample in rng.permutation(len(body["assignment"]))[:8]:
        body, _ = ledger.apply_deletion(body, int(sample))
        for shard, prov in ledger.served_provenance(body).items():
            gone = {
                body["assignment"][i][1]
                for i in body["state"]["deleted"]
                if body["assignment"][i][0] == shard
            }
            for group, slices in prov["groups"].items():
                assert not gone & set(slices), (shard, group, slices, gone)


def test_provenance_records_top_down_groups_and_the_head():
    prov = ledger.node_provenance("s3t", (2, 0, 3), num_groups=4)["groups"]
    assert prov == {
        "group0": [2],
        "group1": [0, 2],
        "group2": [0, 2, 3],
        "group3": [],
        "head": [0, 2, 3],
    }
    sisa = ledger.node_provenance("sisa", (0, 1), num_groups=2, removed=[5])
    assert sisa["groups"] == {"group0": [0, 1], "group1": [0, 1], "head": [0, 1]}
    assert sisa["removed"] == [5]


def test_deletion_effect_and_shard_death():
    body = _body(num_shards=1, num_slices=2, budget=1, per_slice=1)  # seq (0, 1)
    body, effect = ledger.apply_deletion(body, 1)  # slice 1: cut to (0,)
    assert effect["served_after"] == [0] and not effect["shard_died"]
    body, effect = ledger.apply_deletion(body, 0)  # slice 0: first slice
    assert effect["served_after"] is None and effect["shard_died"]
    assert ledger.live_shards(body) == []


def test_bad_requests_raise_without_changing_the_body():
    body = _body()
    before = json.dumps(body, sort_keys=True)
    with pytest.raises(ledger.UnknownSampleError, match="unknown sample 999"):
        ledger.apply_deletion(body, 999)
    with pytest.raises(ledger.UnknownSampleError):
        ledger.apply_deletion(body, -1)
    new, _ = ledger.apply_deletion(body, 3)
    with pytest.raises(ledger.AlreadyDeletedError, match="already deleted"):
        ledger.apply_deletion(new, 3)
    assert json.dumps(body, sort_keys=True) == before


def test_save_load_round_trip_and_corruption_is_detected(tmp_path):
    body = _body()
    ledger.save(str(tmp_path), body)
    assert ledger.load(str(tmp_path)) == json.loads(json.dumps(body))
    path = tmp_path / ledger.LEDGER_FILE
    doc = json.loads(path.read_text())
    doc["body"]["state"]["deleted"] = [0]  # Tampered, checksum unchanged.
    path.write_text(json.dumps(doc))
    with pytest.raises(ledger.LedgerCorruptError, match="checksum"):
        ledger.load(str(tmp_path))
    path.write_text(path.read_text()[:-40])  # Truncated file.
    with pytest.raises(ledger.LedgerCorruptError, match="corrupted"):
        ledger.load(str(tmp_path))


def test_node_keys_round_trip():
    for prefix in [(0,), (3, 1, 2), (10, 0)]:
        assert ledger.parse_node_key(ledger.node_key(prefix)) == prefix
