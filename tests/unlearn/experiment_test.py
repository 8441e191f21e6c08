"""The smoke preset end to end, resumption, and the command-line deleter."""

import json
import pathlib
import subprocess
import sys

import pytest

from configs.s3t import get_config
from jaxsuite.unlearn import experiment, ledger

# One worker runs every test of this paper's smoke run (here and in
# tests/notebooks_test.py), so later runs reuse its compiled programs.
pytestmark = pytest.mark.xdist_group("s3t")

ROOT = pathlib.Path(__file__).parents[2]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("s3t_smoke")
    results = experiment.run(get_config("smoke"), str(workdir))
    return workdir, results


@pytest.mark.slow
def test_smoke_run_writes_the_results_contract(smoke):
    workdir, results = smoke
    assert results["paper"] == "s3t" and results["preset"] == "smoke"
    metrics = results["metrics"]
    for name in ("s3t_B1", "s3t_B2", "sisa"):
        acc = metrics[f"{name}_accuracy_before_deletions"]["value"]
        assert 0.0 <= acc <= 1.0
        assert metrics[f"{name}_storage_bytes"]["value"] > 0
    assert metrics["sisa_retraining_seconds"]["value"] > 0
    # Both S3T runs and SISA saw the same stream; the MC rows follow the rule.
    methods = {r["method"]: r for r in results["tables"]["methods"]}
    assert methods["s3t_B2"]["nodes_stored"] == 2 * 4  # 2 shards x 4 prefixes
    rate = {r["method"]: r for r in results["tables"]["deletion_rate"]}
    assert rate["s3t_B2"]["B_prime"] == 2 and rate["sisa"]["B_prime"] == 1
    curves = results["tables"]["accuracy_curves"]
    assert all(len(c) == 9 for c in curves.values())  # k = 0..8
    assert all(a is not None for a in curves["sisa"])  # SISA always serves.
    assert (workdir / "s3t_accuracy_vs_deletions.png").exists()
    assert results["verdict"].startswith(("Reproduced", "Not reproduced"))
    json.dumps(results, allow_nan=False)  # Strict JSON.


@pytest.mark.slow
def test_rerun_resumes_without_retraining_or_redeleting(smoke):
    workdir, first = smoke
    again = experiment.run(get_config("smoke"), str(workdir))
    for name in ("s3t_B1", "s3t_B2", "sisa"):
        body = ledger.load(str(workdir / "runs" / name))
        assert len(body["state"]["deleted"]) == 8
    assert again["tables"]["accuracy_curves"] == first["tables"]["accuracy_curves"]


@pytest.mark.slow
def test_command_line_deleter(smoke):
    workdir, _ = smoke
    run = workdir / "runs" / "s3t_B2"
    deleted = set(ledger.load(str(run))["state"]["deleted"])
    fresh = next(i for i in range(80) if i not in deleted)

    def call(*args):
        return subprocess.run(
            [sys.executable, "-m", "launch.s3t_delete", f"--workdir={workdir}", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )

    ok = call(f"--sample={fresh}")
    assert ok.returncode == 0, ok.stderr
    effect = json.loads(ok.stdout.splitlines()[0])
    assert effect["sample"] == fresh
    assert fresh in ledger.load(str(run))["state"]["deleted"]
    before = (run / ledger.LEDGER_FILE).read_bytes()
    for bad, message in ((fresh, "already deleted"), (10**6, "unknown sample")):
        out = call(f"--sample={bad}")
        assert out.returncode != 0 and message in out.stderr, out.stderr
    assert (run / ledger.LEDGER_FILE).read_bytes() == before


@pytest.mark.slow
def test_deletion_curve_resumes_after_a_crash_between_deletion_and_row(smoke):
    workdir, _ = smoke
    run = workdir / "runs" / "s3t_B1"
    curve = run / "curve.jsonl"
    lines = curve.read_text().splitlines()
    assert len(lines) == 9
    # The process died after the 8th deletion was durable but before its row
    # was complete: a cut line is left where the row should be.
    curve.write_text("\n".join(lines[:8]) + "\n" + lines[8][:15])
    config = get_config("smoke")
    again = experiment.run(config, str(workdir))
    rows = [json.loads(line) for line in curve.read_text().splitlines()]
    old = json.loads(lines[8])
    assert len(rows) == 9 and rows[8]["seconds"] is None
    for key in ("k", "sample", "shard", "slice", "shard_died", "live_shards"):
        assert rows[8][key] == old[key], key
    assert rows[8]["accuracy"] == old["accuracy"]
    assert again["tables"]["accuracy_curves"]["s3t_B1"][8] == old["accuracy"]
