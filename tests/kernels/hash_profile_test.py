"""The hash-encoding profile script: its tiny preset on the CPU.

The profile must time correct kernels: every row records its max abs error
against the reference, which this test bounds, beside the JSON's structure.
"""

import functools
import importlib.util
import json
import pathlib
import sys
from unittest import mock

import numpy as np
import pytest
from jaxsuite.kernels.hash_encoding import cost

_BENCHMARKS = pathlib.Path(__file__).parents[2] / "benchmarks"


def _load(name: str):
    """Executes ``benchmarks/<name>.py``, registered in ``sys.modules`` meanwhile."""
    spec = importlib.util.spec_from_file_location(name, _BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while defined
    spec.loader.exec_module(module)
    return module


@functools.cache
def _profile():
    # The script imports bench_util as a sibling module, as `python
    # benchmarks/hash_profile.py` does; both are registered for the import only.
    with mock.patch.dict(sys.modules):
        _load("bench_util")
        return _load("hash_profile")


@functools.cache
def _tiny() -> dict:
    return _profile().run("tiny", 1)


def _assert_agrees(row: dict, rtol: float = 1e-5) -> None:
    assert row["max_abs_err"], row
    for name, err in row["max_abs_err"].items():
        scale = row["ref_max_abs"][name]
        assert scale > 0, (name, row)
        assert err <= rtol * max(1.0, scale), (name, err, scale, row["backward"])


def test_tiny_profile_structure_and_agreement():
    out = _tiny()
    json.loads(json.dumps(out, allow_nan=False))
    for r in out["forward_sweep"] + out["variants"] + out["stages"]:
        assert "error" not in r, r
    profile = _profile()
    preset = profile.PRESETS["tiny"]
    assert out["peak_hbm_bytes_per_s"] is None  # CPU
    knobs = out["best_forward_knobs"]
    assert set(knobs) == {"block_size", "num_warps", "levels_per_program"}

    sweep = out["forward_sweep"]
    assert len(sweep) == 2 * len(profile._knob_grid(preset))
    assert {r["distribution"] for r in sweep} == {"uniform", "rays"}
    for r in sweep:
        _assert_agrees(r)
        assert set(r["max_abs_err"]) == {"values"}

    variants = out["variants"]
    cells = {(r["variant"], r["backward"], r["pass"]) for r in variants}
    want = {("reference", None, "forward"), ("pallas", None, "forward")}
    want |= {("reference", "reference", "forward_backward")}
    want |= {("pallas", b, "forward_backward") for b in profile.BACKWARDS}
    assert cells == want
    assert len(variants) == len(want) * 2 * len(preset.sizes)
    for r in variants:
        _assert_agrees(r)
        timing = r["timing"]
        assert timing["min_s"] <= timing["median_s"] <= timing["max_s"]
        assert r["points_per_s"] == pytest.approx(r["num_points"] / timing["median_s"])
        assert r["cost"]["hbm_bytes"] > 0 and r["cost"]["flops"] > 0
        if r["pass"] == "forward_backward":
            assert set(r["max_abs_err"]) == {"values", "dx", "dtable"}
        if r["variant"] == "reference":
            assert r["speedup_vs_reference"] == 1.0

    stages = out["stages"]
    assert {s["backward"] for s in stages} == set(profile.STAGED)
    for s in stages:
        names = [st["stage"] for st in s["stages"]]
        assert any(n.endswith(".sort") for n in names)
        assert any(n.endswith(".corner_kernel") for n in names)
        shares = [st["share"] for st in s["stages"]]
        assert sum(shares) == pytest.approx(1.0)
        assert s["stage_sum_s"] > 0
    split = next(s for s in stages if s["backward"] == "split_sort")
    assert any(n["stage"].startswith("dense[") for n in split["stages"])
    assert "| split_atomic |" in profile.markdown(out)


def test_cost_model_counts_sort_entries():
    profile = _profile()
    cfg = profile.PRESETS["gpu"].config  # 5 dense of 16 levels
    n = 2**20
    fwd = cost.cost_model(cfg, n, "forward")
    assert fwd["sort_bytes"] == 0
    assert fwd["gathered_bytes"] == 8 * 16 * n * 32
    sort = cost.cost_model(cfg, n, "forward_backward", "sort")
    split = cost.cost_model(cfg, n, "forward_backward", "split_sort")
    atomic = cost.cost_model(cfg, n, "forward_backward", "atomic")
    assert atomic["sort_bytes"] == 0
    assert 0 < split["sort_bytes"] < sort["sort_bytes"]
    assert sort["hbm_bytes"] == split["hbm_bytes"] > fwd["hbm_bytes"]


@pytest.mark.parametrize("distribution", ["uniform", "rays"])
def test_points_lie_in_the_unit_cube(distribution):
    x = _profile().points(distribution, 1024)
    assert x.shape == (1024, 3) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    if distribution == "rays":  # 8 rays of 128 collinear, ordered samples
        ray = x[:128].astype(np.float64)
        step = np.diff(ray, axis=0)
        np.testing.assert_allclose(
            step, np.broadcast_to(step[0], step.shape), atol=1e-5
        )
