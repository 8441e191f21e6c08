"""Durable deletion: write-ahead log, bad input, and recovery after SIGKILL.

These tests use a run directory with a real ledger and empty, finalised
checkpoint folders (deletion never reads weights), so they need no training.
"""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxsuite.unlearn import deletion, ledger
from jaxsuite.unlearn import sequences as seq_lib

ROOT = pathlib.Path(__file__).parents[2]
WORKER = pathlib.Path(__file__).with_name("kill_worker.py")
POINTS = ("validated", "logged", "applied", "committed")


def _make_run(run_dir, num_shards=2, num_slices=3, budget=3, per_slice=4):
    seqs = seq_lib.cyclic(num_slices, budget)
    body = ledger.new_ledger(
        method="s3t",
        sequences=[seqs] * num_shards,
        num_slices=num_slices,
        num_groups=num_slices,
        assignment=[
            (s, j)
            for s in range(num_shards)
            for j in range(num_slices)
            for _ in range(per_slice)
        ],
    )
    for s in range(num_shards):
        for prefix in seq_lib.prefixes(seqs):
            path = ledger.checkpoint_dir(str(run_dir), s, prefix)
            os.makedirs(path)
            pathlib.Path(path, "_CHECKPOINT_METADATA").write_text("{}")
    ledger.save(str(run_dir), body)
    return body


def _files(run_dir):
    out = {}
    for name in (ledger.LEDGER_FILE, deletion.WAL_FILE):
        path = pathlib.Path(run_dir, name)
        out[name] = path.read_bytes() if path.exists() else None
    return out


def _assert_fully_gone(run_dir, sample):
    with deletion.DeletionStore(run_dir) as store:
        body = store.body
        assert sample in body["state"]["deleted"]
        shard, slc = body["assignment"][sample]
        prefix = ledger.served(body)[shard]
        assert prefix is None or slc not in prefix
        records, _ = deletion.read_log(store.wal_path)
        assert records[-1]["op"] == "commit" and records[-1]["sample"] == sample
        with pytest.raises(ledger.AlreadyDeletedError):
            store.delete(sample)


def _assert_fully_served(run_dir, sample, original_ledger):
    assert pathlib.Path(run_dir, ledger.LEDGER_FILE).read_bytes() == original_ledger
    with deletion.DeletionStore(run_dir) as store:
        assert sample not in store.body["state"]["deleted"]
        store.delete(sample)  # Still deletable.


def test_delete_logs_then_applies(tmp_path):
    _make_run(tmp_path)
    steps = []
    with deletion.DeletionStore(str(tmp_path)) as store:
        effect = store.delete(5, on_step=steps.append)  # shard 0, slice 1
    assert steps == list(POINTS)
    assert (effect["shard"], effect["slice"]) == (0, 1)
    records, _ = deletion.read_log(str(tmp_path / deletion.WAL_FILE))
    assert [r["op"] for r in records] == ["begin", "commit"]
    body = ledger.load(str(tmp_path))
    assert body["state"]["deleted"] == [5]
    assert 1 not in ledger.served(body)[0]


@pytest.mark.parametrize("case", ["unknown", "again", "corrupt", "missing", "wal"])
def test_bad_requests_change_nothing(tmp_path, case):
    _make_run(tmp_path)
    run = str(tmp_path)
    with deletion.DeletionStore(run) as store:
        store.delete(0)  # shard 0, slice 0: sequence (1, 2, 0) now serves (1, 2)
    if case == "missing":  # Deleting sample 8 (slice 2) would serve node (1,).
        assert ledger.served(ledger.load(run))[0] == (1, 2)
        os.remove(
            os.path.join(ledger.checkpoint_dir(run, 0, (1,)), "_CHECKPOINT_METADATA")
        )
    if case == "corrupt":
        path = tmp_path / ledger.LEDGER_FILE
        path.write_text(path.read_text().replace('"deleted": [', '"deleted": [7, '))
    if case == "wal":
        with open(tmp_path / deletion.WAL_FILE, "r+b") as f:
            f.seek(3)
            f.write(b"#")
    before = _files(run)
    errors = {
        "unknown": (ledger.UnknownSampleError, "unknown sample 10000"),
        "again": (ledger.AlreadyDeletedError, "already deleted"),
        "corrupt": (ledger.LedgerCorruptError, "checksum"),
        "missing": (ledger.MissingCheckpointError, "missing"),
        "wal": (deletion.WalCorruptError, "corrupted"),
    }
    error, match = errors[case]
    sample = {"unknown": 10000, "again": 0, "missing": 8}.get(case, 9)
    with pytest.raises(error, match=match):
        with deletion.DeletionStore(run) as store:
            store.delete(sample)
    assert _files(run) == before


def test_torn_last_log_line_is_dropped_and_sample_stays_served(tmp_path):
    _make_run(tmp_path)
    original = (tmp_path / ledger.LEDGER_FILE).read_bytes()
    with open(tmp_path / deletion.WAL_FILE, "wb") as f:
        f.write(b'{"before": "ab", "id": 1, "op": "beg')  # Cut mid-write.
    _assert_fully_served(str(tmp_path), 3, original)


def _worker(run_dir, point, samples):
    return subprocess.Popen(
        [sys.executable, str(WORKER), run_dir, point, *map(str, samples)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _kill_at(run_dir, point, samples):
    with _worker(run_dir, point, samples) as proc:
        try:
            line = proc.stdout.readline()
            assert line.strip() == f"AT {point}", line
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("point", POINTS)
def test_sigkill_during_deletion_recovers_to_all_or_nothing(tmp_path, point):
    _make_run(tmp_path)
    run = str(tmp_path)
    with deletion.DeletionStore(run) as store:
        store.delete(1)  # A committed deletion before the interrupted one.
    original = (tmp_path / ledger.LEDGER_FILE).read_bytes()
    _kill_at(run, point, [6])
    if point == "validated":
        _assert_fully_served(run, 6, original)
    else:
        _assert_fully_gone(run, 6)
    with deletion.DeletionStore(run) as store:
        assert store.recover() is None  # Recovery is done once.


def test_sigkill_at_random_times_never_leaves_half_a_deletion(tmp_path):
    _make_run(tmp_path, per_slice=8)
    run = str(tmp_path)
    rng = np.random.default_rng(0)
    stream = [int(i) for i in rng.permutation(48)]
    for trial in range(4):
        done = set(ledger.load(run)["state"]["deleted"])
        todo = [s for s in stream if s not in done][:12]
        with _worker(run, "none", todo) as proc:
            proc.stdout.readline()  # The first deletion is done.
            time.sleep(float(rng.uniform(0.0, 0.05)))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        with deletion.DeletionStore(run) as store:
            body = store.body
            records, _ = deletion.read_log(store.wal_path)
        committed = [r["sample"] for r in records if r["op"] == "commit"]
        begun = [r["id"] for r in records if r["op"] == "begin"]
        closed = {r["id"] for r in records if r["op"] in ("commit", "abort")}
        assert set(begun) == closed, trial  # Nothing left in flight.
        assert body["state"]["deleted"] == committed
        # The served state is exactly the truncation of the committed samples.
        replay = json.loads(json.dumps(body))
        replay["state"]["deleted"] = []
        replay["state"]["lengths"] = [[3] * 3, [3] * 3]
        for sample in committed:
            replay, _ = ledger.apply_deletion(replay, sample)
        assert ledger.served(replay) == ledger.served(body)
