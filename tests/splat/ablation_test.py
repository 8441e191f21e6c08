"""The Deblurring-3DGS ablation script on the smoke preset."""

import importlib.util
import json
import os
import pathlib


def _ablation():
    path = pathlib.Path(__file__).parents[2] / "benchmarks" / "deblur_ablation.py"
    spec = importlib.util.spec_from_file_location("deblur_ablation", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_setting_runs_with_its_overrides(tmp_path):
    ablation = _ablation()
    rows = ablation.run_setting("defocus_code", "smoke", str(tmp_path))
    assert [r["method"] for r in rows] == ["vanilla", "deblur"]
    assert rows[0]["gain_over_3dgs"] == 0.0
    assert abs(rows[1]["gain_over_3dgs"] - (rows[1]["psnr"] - rows[0]["psnr"])) < 2e-3
    with open(os.path.join(tmp_path, "defocus_code", "results.json")) as f:
        config = json.load(f)["config"]
    for key, value in ablation.SETTINGS["defocus_code"].items():
        assert config[key] == (list(value) if isinstance(value, tuple) else value)


def test_rerun_keeps_other_settings_of_the_same_preset():
    ablation = _ablation()
    previous = {
        "preset": "small",
        "seconds": {"a": 1.0, "b": 2.0},
        "rows": [{"setting": "a", "psnr": 1}, {"setting": "b", "psnr": 2}],
    }
    seconds, rows = ablation.kept_results(previous, "small", ["b", "c"])
    assert seconds == {"a": 1.0} and rows == [{"setting": "a", "psnr": 1}]
    assert ablation.kept_results(previous, "smoke", ["b"]) == ({}, [])
    assert ablation.kept_results(None, "small", ["b"]) == ({}, [])
