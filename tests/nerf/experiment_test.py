"""End-to-end PVD smoke run (all 12 ordered pairs) and the comparison logic."""

import importlib.util
import json
import os
import pathlib

import numpy as np
import pytest

from jaxsuite.core import metrics as metrics_lib
from jaxsuite.nerf import experiment, fields

_ROOT = pathlib.Path(__file__).resolve().parents[2]


def _get_config(arg):
    spec = importlib.util.spec_from_file_location(
        "pvd_config", _ROOT / "configs" / "pvd.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def _curve(seconds, psnr):
    return {"steps": list(range(len(seconds))), "seconds": seconds, "psnr": psnr}


def test_time_to_reach_and_psnr_at_time():
    c = _curve([0.0, 1.0, 2.0, 4.0], [10.0, 20.0, 25.0, 24.0])
    assert experiment.time_to_reach(c, 21.0) == pytest.approx(1.2)
    assert experiment.time_to_reach(c, 25.0) == 2.0
    assert experiment.time_to_reach(c, 5.0) == 0.0
    assert experiment.time_to_reach(c, 30.0) is None
    assert experiment.psnr_at_time(c, 3.0) == 25.0
    assert experiment.psnr_at_time(c, 0.5) == 10.0


def test_pair_row_ratios():
    dist = {"curve": _curve([0.0, 1.0, 2.0], [10.0, 27.0, 28.0]), "inherited": []}
    scratch = {"curve": _curve([0.0, 3.0, 12.0], [10.0, 20.0, 27.0])}
    row = experiment.pair_row("hash", "mlp", 28.0, dist, scratch)
    assert (
        row["distill_seconds_to_1db"] == 1.0 and row["scratch_seconds_to_1db"] == 12.0
    )
    assert row["time_ratio_to_1db"] == 12.0 and row["time_ratio_lower_bound"] is None
    assert row["scratch_psnr_equal_time"] == 10.0  # nothing better by 2 s
    slow = {"curve": _curve([0.0, 3.0, 6.0], [10.0, 20.0, 22.0])}
    row = experiment.pair_row("hash", "mlp", 28.0, dist, slow)
    assert row["time_ratio_to_1db"] is None and row["time_ratio_lower_bound"] == 6.0
    # Crossings between evaluations are interpolated linearly.
    mid = {"curve": _curve([0.0, 4.0, 8.0], [10.0, 20.0, 30.0])}
    row = experiment.pair_row("hash", "mlp", 28.0, dist, mid)
    assert row["scratch_seconds_to_1db"] == pytest.approx(6.8)
    assert row["time_ratio_to_1db"] == pytest.approx(6.8)
    assert row["step_ratio_to_1db"] == pytest.approx(1.7)  # steps 0, 1, 2
    # Equal quality: scratch's best (30 dB, at 8 s) is never reached here.
    assert row["scratch_best_psnr"] == 30.0
    assert row["time_ratio_at_scratch_best"] is None
    row = experiment.pair_row("hash", "mlp", 28.0, dist, scratch)
    # Scratch's best is 27 dB at 12 s; distillation reaches 27 dB at 1 s.
    assert row["time_ratio_at_scratch_best"] == pytest.approx(12.0)


@pytest.mark.slow
def test_smoke_runs_all_pairs_and_resumes(tmp_path):
    config = _get_config("smoke")
    workdir = str(tmp_path / "run")
    res = experiment.run(config, workdir)
    pairs = res["tables"]["pairs"]
    assert len(pairs) == 12
    assert {(r["teacher"], r["student"]) for r in pairs} == {
        (a, b) for a in fields.ARCHS for b in fields.ARCHS if a != b
    }
    scratch = {r["arch"]: r for r in res["tables"]["scratch"]}
    for r in pairs:
        assert r["teacher_psnr"] == scratch[r["teacher"]]["final_psnr"]
        assert np.isfinite(r["student_psnr"]) and r["distill_seconds"] > 0
        assert (
            r["scratch_psnr_equal_time"] <= scratch[r["student"]]["final_psnr"] + 1e-9
        )
    inherited = {(r["teacher"], r["student"]): set(r["inherited"]) for r in pairs}
    assert any(n.startswith("sigma_net") for n in inherited[("hash", "mlp")])
    assert inherited[("vm", "dense")] == set()
    for name in ("renders.png", "psnr_vs_time.png", "results.json", "metrics.jsonl"):
        assert os.path.exists(os.path.join(workdir, name)), name
    assert "10-20x" in res["verdict"] or "10x" in res["verdict"]
    assert res["metrics"]["hash_to_mlp/student_psnr"]["unit"] == "dB"
    # A second run on the same workdir resumes from the saved phases.
    again = experiment.run(config, workdir)
    assert again["tables"]["pairs"] == pairs
    # Its wall time counts the phases the first run did.
    assert again["wall_seconds"] > 0.5 * res["wall_seconds"]
    with open(os.path.join(workdir, "results.json")) as f:
        assert metrics_lib.read_results(
            os.path.join(workdir, "results.json")
        ) == json.load(f)


def test_ratios_that_cannot_be_computed_say_why():
    dist = {"curve": _curve([0.0, 1.0, 2.0], [10.0, 27.0, 28.0]), "inherited": []}
    slow = {"curve": _curve([0.0, 3.0, 6.0], [10.0, 20.0, 22.0])}
    row = experiment.pair_row("hash", "mlp", 28.0, dist, slow)
    assert experiment.unreached(row, "s") == "not reached within 6 s (from scratch)"
    assert experiment.unreached(row, "steps") == (
        "not reached within 2 steps (from scratch)"
    )
    stuck = {"curve": _curve([0.0, 5.0], [10.0, 12.0]), "inherited": []}
    row = experiment.pair_row("hash", "mlp", 28.0, stuck, slow)
    assert experiment.unreached(row, "s") == "not reached within 5 s (distillation)"
    assert experiment.unreached(row, "best") == (
        "not reached within 5 s (distillation)"
    )


def test_timed_loop_stops_on_a_nonfinite_loss():
    from jaxsuite.core import finite
    from jaxsuite.nerf import trainer

    def step_fn(state, step):
        loss = np.float32(np.nan) if int(step) >= 3 else np.float32(1.0)
        return state + 1, {"loss": loss, "grad_norm": np.float32(1.0)}

    with pytest.raises(
        finite.NonFiniteError, match="demo: loss was not finite at step 3"
    ):
        trainer.timed_loop(
            0,
            step_fn,
            num_steps=6,
            eval_fn=lambda s: 0.0,
            eval_steps=(0, 5),
            name="demo",
        )
