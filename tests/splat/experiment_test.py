"""The launcher's experiment on the smoke preset: results contract and resume."""

import dataclasses
import json
import os

import pytest

from configs import deblur3dgs as deblur_config
from jaxsuite.core import metrics as metrics_lib
from jaxsuite.splat import experiment, methods, report
from jaxsuite.splat import settings as settings_lib

# One worker runs every test of this paper's smoke run (here and in
# tests/notebooks_test.py), so later runs reuse its compiled programs.
pytestmark = pytest.mark.xdist_group("deblur3dgs")


def _config(arg):
    return deblur_config.get_config(arg)


def test_smoke_run_writes_results_and_resumes(tmp_path):
    config = _config("smoke")
    workdir = str(tmp_path / "run")
    results = experiment.run(config, workdir)
    assert results["paper"] == "deblur3dgs" and results["preset"] == "smoke"
    m = results["metrics"]
    for blur in config.blur_types:
        for method in methods.methods_for(config.methods, blur):
            psnr = m[f"{blur}/{method}/psnr"]
            assert psnr["unit"] == "dB" and 5.0 < psnr["value"] < 60.0
            assert 0.0 < m[f"{blur}/{method}/ssim"]["value"] <= 1.0
            assert m[f"{blur}/{method}/fps"]["value"] > 0
        gain = m[f"{blur}/deblur/psnr"]["value"] - m[f"{blur}/vanilla/psnr"]["value"]
        assert abs(gain - m[f"{blur}/psnr_gain"]["value"]) < 1e-9
        assert os.path.exists(os.path.join(workdir, f"{blur}.png"))
    rows = results["tables"]["test_views"]
    counts = [len(methods.methods_for(config.methods, b)) for b in config.blur_types]
    assert len(rows) == sum(counts) + len(config.blur_types)
    for blur in config.blur_types:
        # The do-nothing baseline sits beside the methods.
        given = [r for r in rows if r["blur"] == blur and r["method"] == "blurry_input"]
        assert len(given) == 1
        over = m[f"{blur}/deblur_minus_blurry_psnr"]["value"]
        diff = m[f"{blur}/deblur/psnr"]["value"] - given[0]["psnr"]
        assert abs(over - diff) < 1e-3
        assert 1 <= m[f"{blur}/vanilla/gaussians"]["value"] <= config.max_gaussians
    # A second run on the same workdir resumes from the final checkpoints and
    # reproduces the same test-view quality without training again.
    again = experiment.run(config, workdir)
    for key, value in m.items():
        if key.endswith(("psnr", "ssim")):
            assert abs(again["metrics"][key]["value"] - value["value"]) < 1e-4, key
    with open(os.path.join(workdir, "results.json")) as f:
        written = json.load(f)
    assert written["claim"] == report.CLAIM
    typed = settings_lib.from_config(config)
    for blur in config.blur_types:
        for change in report.departures(typed.deblur(blur), blur):
            assert change in written["verdict"]
    assert metrics_lib.read_metrics(workdir)


def test_verdict_head_follows_the_numbers():
    head = report.verdict_head
    assert head({"defocus": 2.0}, {"defocus": 0.5}).startswith("Reproduced")
    assert "less than 1.5" in head(
        {"defocus": 1.0, "motion": 2}, {"defocus": 1, "motion": 1}
    )
    # Beating 3DGS but losing to the blurry inputs is not a reproduction.
    lost = head({"defocus": 2.0, "motion": 2.0}, {"defocus": -0.1, "motion": 1.0})
    assert lost.startswith("Not reproduced") and "defocus" in lost
    assert "motion" not in lost.split(":")[0]


def test_verdict_reports_lpips_only_where_every_score_exists():
    m = lambda v: {"value": v}
    metrics = {
        "defocus/vanilla/lpips": m(0.25),
        "defocus/deblur/lpips": m(0.125),
        "defocus/blurry_input_lpips": m(0.5),
        "motion/vanilla/lpips": m(0.3),  # motion lacks the other two scores
    }
    gains = {"defocus": 0.0, "motion": 0.0}
    sentence = report._second_opinions(gains, metrics)
    assert "LPIPS" in sentence and "defocus: 0.250 / 0.125 / 0.500" in sentence
    assert "motion" not in sentence and "shift" not in sentence
    assert report._second_opinions({"motion": 0.0}, metrics) == ""


def test_methods_are_checked_and_thin_lens_is_defocus_only():
    config = _config("smoke")
    with config.unlocked():
        config.methods = methods.METHODS
    assert "thin_lens" in methods.methods_for(config.methods, "defocus")
    assert "thin_lens" not in methods.methods_for(config.methods, "motion")
    for bad in [("vanilla", "deblur", "sharpen"), ("vanilla", "known_blur")]:
        with config.unlocked():
            config.methods = bad
        try:
            methods.methods_for(config.methods, "defocus")
        except ValueError as e:
            assert "vanilla" in str(e) and "thin_lens" in str(e)
        else:
            raise AssertionError(f"methods={bad} was accepted")


def _departures(config, blur):
    return report.departures(settings_lib.from_config(config).deblur(blur), blur)


def test_departures_from_the_code_are_named():
    config = _config("paper")
    assert _departures(config, "defocus") == []
    assert _departures(config, "motion") == []
    with config.unlocked():
        config.mlp_center_offsets = True
        config.mlp_rotation_factors = False
        config.mlp_scale_bias = 1.2
        config.max_clamp = 2.0
    named = _departures(config, "defocus")
    # Centring applies to motion only; the unprefixed keys are defocus's.
    assert len(named) == 3 and "mlp_scale_bias 1.2" in named
    assert "max_clamp 2.0 (code: 1.1)" in named
    assert _departures(config, "motion") == [
        "camera-motion offsets centred on the plain Gaussians"
    ]


def test_deblur_settings_take_the_motion_keys_for_motion():
    config = _config("paper")
    with config.unlocked():
        config.max_clamp = 2.0
        config.motion_max_clamp = 1.3
        config.mlp_relative_factors = True
        config.mlp_center_offsets = True
    typed = settings_lib.from_config(config)
    defocus, motion = typed.deblur("defocus"), typed.deblur("motion")
    assert defocus == settings_lib.deblur_settings(config, "defocus")
    assert motion == settings_lib.deblur_settings(config, "motion")
    assert defocus.max_clamp == 2.0 and defocus.mlp_relative_factors
    assert motion.max_clamp == 1.3 and not motion.mlp_relative_factors
    for key in settings_lib.MOTION_KEYS:
        assert getattr(motion, key) == config[f"motion_{key}"]
        assert getattr(defocus, key) == config[key]
    # The one unprefixed key both variants share.
    assert defocus.mlp_center_offsets and motion.mlp_center_offsets


def test_settings_hold_every_value_of_the_config():
    # Each typed field is the config's value of the same name.
    config = _config("small,implementation=xla,lpips=False")
    typed = settings_lib.from_config(config)
    for part in (typed.data, typed.optimizer, typed.train):
        for name, value in dataclasses.asdict(part).items():
            assert value == config[name], name
    assert typed.raster.implementation == "xla"
    assert typed.raster.capacity == config.capacity == typed.evaluation.raster.capacity
    assert not typed.evaluation.lpips and typed.methods == tuple(config.methods)
    assert settings_lib.from_config(_config("smoke")).raster.implementation is None
