"""The Deblurring-3DGS ablation script: its rows and a run on the smoke preset."""

import functools
import importlib.util
import json
import pathlib

import pytest

# One worker runs every test of this paper's smoke run (here and in
# tests/notebooks_test.py), so later runs reuse its compiled programs.
pytestmark = pytest.mark.xdist_group("deblur3dgs")


@functools.cache
def _ablation():
    # Loaded once: the script defines its absl flags at import.
    path = pathlib.Path(__file__).parents[2] / "benchmarks" / "deblur_ablation.py"
    spec = importlib.util.spec_from_file_location("deblur_ablation", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_departure_is_one_row_and_all_six_is_their_union():
    ablation = _ablation()
    table = ablation.settings()
    singles = [n for n in ablation.DEPARTURES]
    assert len(singles) == 6
    union = {}
    for name in singles:
        _, method, overrides = table[name]
        assert method == "deblur" and len(overrides) == 1
        union.update(overrides)
    assert table["all_six"][2] == union
    assert table["code"][2] == {}


def test_run_writes_strict_rows(tmp_path):
    ablation = _ablation()
    out = ablation.run("smoke,steps=2", str(tmp_path), ["clamp_2"])
    rows = out["rows"]
    assert [(r["setting"], r["method"]) for r in rows] == [
        ("3dgs", "vanilla"),
        ("clamp_2", "deblur"),
    ]
    assert rows[0]["gain_over_3dgs"] == 0.0
    diff = rows[1]["psnr"] - rows[0]["psnr"]
    assert abs(rows[1]["gain_over_3dgs"] - diff) < 2e-3
    assert rows[1]["overrides"] == {"max_clamp": 2.0}
    json.loads(json.dumps(out, allow_nan=False))
    assert "| clamp_2 | defocus |" in ablation.markdown(rows)
