"""End-to-end PVD smoke run, strict results, and the comparison logic."""

import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import pvd as pvd_config
from jaxsuite.core import metrics as metrics_lib
from jaxsuite.nerf import compare, experiment, fields, loop, report, trainer

# One worker runs every test of this paper's smoke run (here and in
# tests/notebooks_test.py), so later runs reuse its compiled programs.
pytestmark = pytest.mark.xdist_group("pvd")

_ROOT = pathlib.Path(__file__).resolve().parents[2]


def _get_config(arg):
    return pvd_config.get_config(arg)


def _curve(seconds, psnr):
    return {"steps": list(range(len(seconds))), "seconds": seconds, "psnr": psnr}


def test_time_to_reach_and_psnr_at_time():
    c = _curve([0.0, 1.0, 2.0, 4.0], [10.0, 20.0, 25.0, 24.0])
    assert compare.time_to_reach(c, 21.0) == pytest.approx(1.2)
    assert compare.time_to_reach(c, 25.0) == 2.0
    assert compare.time_to_reach(c, 5.0) == 0.0
    assert compare.time_to_reach(c, 30.0) is None
    assert compare.psnr_at_time(c, 3.0) == 25.0
    assert compare.psnr_at_time(c, 0.5) == 10.0


def test_pair_row_ratios():
    dist = {
        "curve": _curve([0.0, 1.0, 2.0], [10.0, 27.0, 28.0]),
        "inherited": [],
        "step_seconds": [0.1, 0.2],
    }
    scratch = {
        "curve": _curve([0.0, 3.0, 12.0], [10.0, 20.0, 27.0]),
        "step_seconds": [0.4, 0.6],
    }
    row = compare.pair_row("hash", "mlp", 28.0, dist, scratch)
    assert (
        row["distill_seconds_to_bar"] == 1.0 and row["scratch_seconds_to_bar"] == 12.0
    )
    assert row["time_ratio_to_bar"] == 12.0 and row["time_ratio_lower_bound"] is None
    # Steps 0, 1, 2 on both curves: the step ratio is 2 / 1.
    assert row["step_ratio_to_bar"] == 2.0
    # Re-timed: 2 * tau_s / tau_d at its extremes and medians.
    lo, mid, hi = row["time_ratio_retimed"]
    assert (lo, mid, hi) == pytest.approx(
        (2 * 0.4 / 0.2, 2 * 0.5 / 0.15, 2 * 0.6 / 0.1)
    )
    # Equal time: the from-scratch evaluation nearest to distillation's 2 s.
    assert row["scratch_psnr_equal_time"] == 20.0  # evaluated at 3 s
    assert row["scratch_seconds_equal_time"] == 3.0
    slow = {"curve": _curve([0.0, 3.0, 6.0], [10.0, 20.0, 22.0])}
    row = compare.pair_row("hash", "mlp", 28.0, dist, slow)
    assert row["time_ratio_to_bar"] is None and row["time_ratio_lower_bound"] == 6.0
    assert row["time_ratio_retimed"] is None
    assert row["scratch_psnr_equal_time"] == 20.0  # at 3 s, nearest to 2 s
    # Crossings between evaluations are interpolated linearly.
    mid = {"curve": _curve([0.0, 4.0, 8.0], [10.0, 20.0, 30.0])}
    row = compare.pair_row("hash", "mlp", 28.0, dist, mid)
    assert row["scratch_seconds_to_bar"] == pytest.approx(6.8)
    assert row["time_ratio_to_bar"] == pytest.approx(6.8)
    assert row["step_ratio_to_bar"] == pytest.approx(1.7)


def _strict_loads(text):
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_strict_parser_refuses_nan():
    with pytest.raises(ValueError, match="NaN"):
        _strict_loads('{"a": NaN}')


def test_committed_results_are_strict_json_with_all_pairs():
    path = _ROOT / "benchmarks" / "results" / "pvd.json"
    res = _strict_loads(path.read_text())
    pairs = res["tables"]["pairs"]
    assert {(r["teacher"], r["student"]) for r in pairs} == {
        (a, b) for a in fields.ARCHS for b in fields.ARCHS if a != b
    }
    for name, m in res["metrics"].items():
        v = m["value"]
        assert isinstance(v, (int, float)) or v.startswith(
            ("not reached", "undefined")
        ), (name, v)
    for r in pairs:  # equal time means equal measured wall time
        slack = max(r["scratch_steps"] and r["scratch_seconds"] / r["scratch_steps"], 0)
        assert abs(r["scratch_seconds_equal_time"] - r["distill_seconds"]) <= (
            0.05 * r["distill_seconds"] + 2 * slack
        ), r


def test_timed_loop_stops_at_its_wall_time_budget():
    import time

    progress = []

    def step_fn(state, step, prog):
        progress.append(float(prog))
        time.sleep(0.01)
        return state + 1, {"loss": np.float32(1.0)}

    evals = []
    jax.block_until_ready(jnp.asarray(0.5, jnp.float32))  # backend start-up
    state, curve = loop.timed_loop(
        0,
        step_fn,
        budget_s=0.2,
        eval_fn=lambda s: evals.append(s) or float(s),
        eval_steps=(0,),
        eval_seconds=(0.05, 0.1),
    )
    assert 0.2 <= curve.seconds[-1] < 0.35 and state == curve.steps[-1]
    assert progress[0] == 0.0 and 0.8 < progress[-1] <= 1.0
    assert np.all(np.diff(progress) > 0)
    # Evaluated before the first step, at each mark and at the end.
    assert len(curve.steps) == 4 and curve.steps[0] == 0
    assert curve.seconds[1] >= 0.05 and curve.seconds[2] >= 0.1
    assert trainer.lr_factor(0.0, 0.01) == pytest.approx(1.0)
    assert trainer.lr_factor(1.0, 0.01) == pytest.approx(0.01)
    assert trainer.lr_factor(0.5, 0.0) == pytest.approx(0.5)


@pytest.mark.slow
def test_smoke_runs_and_resumes(tmp_path):
    config = _get_config("smoke")
    workdir = str(tmp_path / "run")
    res = experiment.run(config, workdir)
    pairs = res["tables"]["pairs"]
    assert [(r["teacher"], r["student"]) for r in pairs] == [("hash", "mlp")]
    scratch = {r["arch"]: r for r in res["tables"]["scratch"]}
    for r in pairs:
        assert r["teacher_psnr"] == scratch[r["teacher"]]["final_psnr"]
        assert np.isfinite(r["student_psnr"]) and r["distill_seconds"] > 0
        assert r["distill_seconds"] >= config.distill.seconds
    with open(os.path.join(workdir, "results.json")) as f:
        _strict_loads(f.read())
    inherited = {(r["teacher"], r["student"]): set(r["inherited"]) for r in pairs}
    assert any(n.startswith("sigma_net") for n in inherited[("hash", "mlp")])
    for name in ("renders.png", "psnr_vs_time.png", "results.json", "metrics.jsonl"):
        assert os.path.exists(os.path.join(workdir, name)), name
    assert "10-20x" in res["verdict"]
    assert res["metrics"]["hash_to_mlp/student_psnr"]["unit"] == "dB"
    # Four teacher x student tables and the from-scratch reference.
    assert report.matrix_tables(res).count("\n| hash |") == 5
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
    row = compare.pair_row("hash", "mlp", 28.0, dist, slow)
    assert compare.unreached(row, "s") == "not reached within 6 s (from scratch)"
    assert compare.unreached(row, "steps") == (
        "not reached within 2 steps (from scratch)"
    )
    stuck = {"curve": _curve([0.0, 5.0], [10.0, 12.0]), "inherited": []}
    row = compare.pair_row("hash", "mlp", 28.0, stuck, slow)
    assert compare.unreached(row, "s") == "not reached within 5 s (distillation)"
    assert compare.seconds_or_why(None, 5.0) == "not reached within 5 s"
    # A student at the bar before any training (a weak teacher) has no ratio,
    # and the reason names that, not a run that failed to get there.
    at_bar = {"curve": _curve([0.0, 1.0], [20.0, 21.0]), "inherited": []}
    quick = {"curve": _curve([0.0, 2.0], [10.0, 20.0])}
    row = compare.pair_row("mlp", "hash", 20.5, at_bar, quick)
    assert row["distill_seconds_to_bar"] == 0.0
    assert compare.unreached(row, "s").startswith("undefined: distillation was at")


def test_timed_loop_stops_on_a_nonfinite_loss():
    from jaxsuite.core import finite

    def step_fn(state, step, progress):
        loss = np.float32(np.nan) if int(step) >= 3 else np.float32(1.0)
        return state + 1, {"loss": loss, "grad_norm": np.float32(1.0)}

    with pytest.raises(
        finite.NonFiniteError, match="demo: loss was not finite at step 3"
    ):
        loop.timed_loop(
            0,
            step_fn,
            num_steps=6,
            eval_fn=lambda s: 0.0,
            eval_steps=(0, 5),
            name="demo",
        )
