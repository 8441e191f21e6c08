"""The smoke preset runs end to end, its results hold together, runs resume."""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest

from configs import hecate as hecate_config
from jaxsuite.core import metrics as metrics_lib
from jaxsuite.moe import experiment, replay, report, settings

# One worker runs every test of this paper's smoke run (here and in
# tests/notebooks_test.py), so later runs reuse its compiled programs.
pytestmark = pytest.mark.xdist_group("hecate")


def _get_config(arg):
    return hecate_config.get_config(arg)


@pytest.mark.slow
def test_smoke_run_writes_consistent_results(tmp_path):
    config = _get_config("smoke")
    workdir = str(tmp_path / "run")
    results = experiment.run(config, workdir)
    assert results["paper"] == "hecate" and results["preset"] == "smoke"
    for name in ("load_imbalance", "bytes_per_step", "speedup_vs_ep"):
        assert os.path.getsize(os.path.join(workdir, f"{name}.png")) > 1000
    rows = {r["strategy"]: r for r in results["tables"]["strategies"]}
    # EP and FSSDP train the same function: identical losses up to rounding.
    assert rows["fssdp"]["max_loss_diff_vs_ep"] < 1e-4
    # FSSDP's compiled step gathers parameters; EP's moves only tokens.
    assert rows["fssdp"]["hlo_bytes_per_step"] > rows["ep"]["hlo_bytes_per_step"]
    modelled = results["tables"]["modelled"]
    for row in modelled:
        if row["strategy"] == "ep":
            assert row["speedup_vs_ep"] == pytest.approx(1.0)
            assert row["param_MB_per_step"] == 0.0
        if row["strategy"] == "fsdp":
            assert row["param_bytes_vs_fsdp"] == pytest.approx(1.0)
    # Algorithm 2's per-layer ownership brackets even sharding's E / D = 2.
    lo = results["metrics"]["fssdp_fewest_experts_of_a_layer_per_device"]["value"]
    hi = results["metrics"]["fssdp_most_experts_of_a_layer_per_device"]["value"]
    assert 0 <= lo <= 2 <= hi <= 4
    # Skew shows up in the measured loads.
    imb = {r["skew"]: r["load_max_over_mean"] for r in modelled}
    assert imb[3.0] > imb[0.0]
    # The gating study's "code" row retraces the strategies' training (same
    # function, data and optimizer); GShard's gating sends fewer assignments.
    gating = {r["gating"]: r for r in results["tables"]["gating"]}
    assert gating["code"]["final_loss"] == pytest.approx(
        rows["ep"]["final_loss"], abs=1e-4
    )
    assert gating["code"]["dispatched_per_token"] == pytest.approx(2.0)
    assert gating["gshard"]["dispatched_per_token"] < 2.0
    # The expert sweep (smoke: only the trained count) is modelled per count.
    assert {r["experts"] for r in results["tables"]["experts"]} == {16}
    # SparseAllGather: the compiled bytes cover the planned replicas and stay
    # below FSDP's gathers; the measured and modelled step times sit side by
    # side.
    fs = rows["fssdp"]
    assert fs["spag_hlo_bytes_per_step"] >= fs["spag_plan_bytes_per_step"] > 0
    assert fs["cpu_ms_per_step"] > 0 and fs["modelled_ms_per_step"] > 0
    # Algorithm 2 re-sharded during training (every 4 steps) and is compared
    # with even sharding on the same measured loads.
    on, off = results["tables"]["algorithm2"]
    assert on["reshard_steps"] == [4] and off["reshard_steps"] == []
    assert off["experts_of_a_layer_per_device"] == [2, 2]
    # Resuming a finished run reuses its traces and reproduces the numbers.
    again = experiment.run(config, workdir)
    assert json.dumps(again["tables"]["modelled"]) == json.dumps(modelled)
    # metrics.jsonl holds every run's loss curve once, resumed run or not.
    rows = metrics_lib.read_metrics(workdir)
    for strategy in config.strategies:
        key = f"{strategy}_skew{config.train_skew:g}/loss"
        steps = [r["step"] for r in rows if key in r]
        assert steps == list(range(1, config.steps + 1)), key


def test_expert_sweep_rows_follow_the_expert_count():
    # FSDP's gathered bytes grow in proportion to the number of experts;
    # FSSDP's are a shrinking fraction of them (replayed on synthetic loads).
    s = settings.from_config(_get_config("smoke"))
    rng = np.random.default_rng(0)
    loads = {
        e: rng.zipf(1.5, size=(3, s.model.layers, 8, e)).astype(np.float32)
        for e in (16, 32)
    }
    rows = report._expert_rows(s, loads, replay.overlap_degree(s))
    sweep = [r for r in rows if r["cluster"] == "B"]
    mb = {(r["strategy"], r["experts"]): r["param_MB_per_step"] for r in sweep}
    assert mb[("fsdp", 32)] == pytest.approx(2 * mb[("fsdp", 16)])
    frac = {
        r["experts"]: r["param_bytes_vs_fsdp"]
        for r in sweep
        if r["strategy"] == "fssdp"
    }
    assert frac[32] < frac[16]


class _Stop(Exception):
    pass


def _stop_at(stop):
    def hook(step, state):
        del state
        if step == stop:
            raise _Stop

    return hook


def test_interrupted_training_resumes_to_the_same_state(tmp_path):
    s = settings.from_config(_get_config("smoke,checkpoint_every=2"))
    setup = experiment.Runtime(s)
    t = replay.overlap_degree(s)

    def train(workdir, hooks=()):
        return experiment.train(
            setup, "fssdp", 3.0, t, workdir=str(workdir), name="fssdp", hooks=hooks
        )

    straight = train(tmp_path / "a")
    # Cut off after step 5, past the checkpoint at step 4 and the re-sharding
    # (every 4 iterations), then run again on the same workdir.
    with pytest.raises(_Stop):
        train(tmp_path / "b", hooks=(_stop_at(5),))
    seen = []
    resumed = train(tmp_path / "b", hooks=(lambda step, state: seen.append(step),))
    assert seen == [5, 6]
    assert (straight["moved"] >= 0).sum() == 1
    for key in ("loss", "dropped", "load", "moved", "bucket"):
        np.testing.assert_array_equal(resumed[key], straight[key], err_msg=key)
    for a, b in zip(
        jax.tree.leaves(resumed["state"]), jax.tree.leaves(straight["state"])
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_diverging_run_stops_before_saving_nan(tmp_path):
    # With learning_rate=1e6 the loss turns NaN: the run must stop with the
    # step named instead of finishing and reporting NaN.
    from jaxsuite.core import finite

    s = settings.from_config(_get_config("smoke,model.learning_rate=1e6"))
    setup = experiment.Runtime(s)
    with pytest.raises(
        finite.NonFiniteError, match=r"'ep' stopped: loss is nan at"
    ) as e:
        experiment.train(
            setup,
            "ep",
            3.0,
            replay.overlap_degree(s),
            workdir=str(tmp_path),
            name="ep",
        )
    assert "last good checkpoint, step" in str(e.value)
    saved = sorted(int(s) for s in os.listdir(tmp_path / "checkpoints" / "ep"))
    assert saved and max(saved) < e.value.step


def test_a_damaged_trace_file_is_named_and_recomputed(tmp_path, caplog):
    # Traces are written atomically; one damaged later (here cut in half) is
    # set aside with a warning naming it, and recomputed instead of stopping
    # the run with a BadZipFile that names no file.
    cache = experiment._trace_cache(str(tmp_path))
    cache.save("ep_skew3", {"loss": np.arange(4.0)})
    assert cache.load("ep_skew3")["loss"].tolist() == [0.0, 1.0, 2.0, 3.0]
    path = os.path.join(cache.directory, "ep_skew3.npz")
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with caplog.at_level("WARNING"):
        assert cache.load("ep_skew3") is None
    assert "ep_skew3.npz cannot be read" in caplog.text and "recomputing" in caplog.text
    assert not os.path.exists(path) and os.path.exists(path + ".bad")
