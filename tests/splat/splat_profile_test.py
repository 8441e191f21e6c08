"""The splatting profile script on its tiny preset: structure and correctness."""

import functools
import importlib.util
import json
import pathlib
import sys

from jaxsuite.splat import stages

_BENCH = pathlib.Path(__file__).parents[2] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, _BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def _profile():
    # The script imports its sibling bench_util as a top-level module.
    sys.modules.setdefault("bench_util", _load("bench_util"))
    return _load("splat_profile")


@functools.cache
def _tiny():
    return _profile().run("tiny", 1)


def test_tiny_run_is_strict_json_with_every_stage():
    result = json.loads(json.dumps(_tiny(), allow_nan=False))
    assert result["preset"] == "tiny" and result["repeats"] == 1
    rows = result["rows"]
    assert [(r["scene"], r["implementation"]) for r in rows] == [
        ("tiny", "xla"),
        ("tiny", "pallas"),
        ("tiny_depth_first", "xla"),
    ]
    assert [r["binning"] for r in rows] == ["two_keys", "two_keys", "depth_first"]
    # Same frame either way: same intersections, same (checked) error.
    assert rows[2]["intersections"] == rows[0]["intersections"]
    assert rows[2]["max_error"] == rows[0]["max_error"]
    for r in rows:
        assert "failed" not in r, r.get("failed")
        names = [(s["stage"], s["pass"]) for s in r["stages"]]
        assert names == [(n, "forward") for n in stages.FORWARD] + [
            (n, "backward") for n in stages.BACKWARD
        ]
        timed = {s["stage"]: s["median_ms"] for s in r["stages"]}
        assert (timed["segment_sum"] is None) == (r["implementation"] == "xla")
        assert all(timed[n] > 0 for n in timed if n != "segment_sum")
        for s in r["stages"]:
            assert s["timing"] is None or s["timing"]["pipelined_ms"] > 0
        for key in ("frame", "train_step"):
            t = r[key]
            assert t["min_ms"] <= t["p10_ms"] <= t["median_ms"] <= t["p90_ms"]
            assert t["p90_ms"] <= t["max_ms"] and t["repeats"] == 1
        in_sums = [s["median_ms"] for s in r["stages"] if s["in_sums"]]
        assert abs(sum(in_sums) - r["train_stage_sum_ms"]) < 1e-3
        shares = [s["share_of_forward_sum"] for s in r["stages"][:7]]
        assert abs(sum(shares) - 1.0) < 1e-3
        assert r["intersections"] > 0 and not r["overflow"]
        assert r["intersections"] <= r["capacity"]
        assert r["capacity"] & (r["capacity"] - 1) == 0
        assert r["frame_memory"] is None or r["frame_memory"]["temp_bytes"] >= 0
    (b,) = result["batched"]
    assert "failed" not in b, b.get("failed")
    assert b["cameras"] == 2 and b["overflow"] == [False, False]
    assert len(b["intersections"]) == 2 and min(b["intersections"]) > 0
    assert b["max_difference_vs_single"] < 1e-5


def test_each_implementation_renders_the_reference_image():
    for r in _tiny()["rows"]:
        assert r["error_window"] == [0, 0, 64, 64]
        assert r["max_error"] < 1e-4, (r["implementation"], r["max_error"])
        assert r["error_ok"]
        # The stages, run one by one, make the frame's image.
        assert r["stage_image_difference"] < 1e-5


def test_markdown_names_every_stage_and_the_fusion_caveat():
    text = _profile().markdown(_tiny())
    for name in stages.FORWARD + stages.BACKWARD:
        assert f"| {name} |" in text
    assert "unfused" in text and "FAILED" not in text


def test_capacity_and_analytic_cost():
    profile = _profile()
    assert profile.capacity_for(2_359_695, 500_000) == 1 << 22
    assert profile.capacity_for(2_359_695, 500_000, "render_fps") == 1 << 23
    assert profile.capacity_for(4096, 10) == 4096
    cost = stages.analytic_cost("sort", 100, 1 << 20, 1000, 64, 64)
    assert cost == {"bytes": 4 * 48 * (1 << 20), "workspace_bytes": 12 * (1 << 20)}
    assert stages.analytic_cost("unknown", 1, 1, 1, 1, 1)["bytes"] is None
