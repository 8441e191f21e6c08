"""End-to-end smoke runs of both launchers' experiments, with resume."""

import json
import os

import numpy as np
import pytest

from jaxsuite.core import metrics as metrics_lib
from jaxsuite.gen3d import experiment, mesh, weights

# One worker runs every test of this paper's smoke run (here and in
# tests/notebooks_test.py), so later runs reuse its compiled programs.
pytestmark = pytest.mark.xdist_group("dreamcraft3d")


@pytest.mark.slow
def test_dreamcraft3d_smoke_end_to_end_and_resume(tmp_path, load_config):
    config = load_config("dreamcraft3d", "smoke")
    wd = str(tmp_path / "run")
    res = experiment.run(config, wd)
    assert res["paper"] == "dreamcraft3d" and res["preset"] == "smoke"
    variants = [r["variant"] for r in res["tables"]["variants"]]
    assert variants == list(config.variants)
    for v in variants:
        for k in ("back_psnr", "front_psnr", "ref_psnr", "janus_rate"):
            assert np.isfinite(res["metrics"][f"{v}_{k}"]["value"])
    boot = res["metrics"]["bsd1_minus_sds_back_psnr"]
    assert boot["ci95"][0] <= boot["value"] <= boot["ci95"][1]
    rows = res["tables"]["runs"]
    sds = next(r for r in rows if r["variant"] == "sds")
    b1 = next(r for r in rows if r["variant"] == "bsd1")
    assert boot["value"] == pytest.approx(b1["back_psnr"] - sds["back_psnr"])
    # Geometry is shared by the texture variants.
    assert len({r["chamfer"] for r in rows}) == 1
    assert os.path.exists(os.path.join(wd, "turntable.png"))
    v, f, c = mesh.read_ply(os.path.join(wd, "meshes", "obj100000_s0.ply"))
    assert len(v) > 0 and f.max() < len(v) and c.shape == (len(v), 3)
    json.dumps(res)  # strict JSON
    # A second run resumes every stage and variant from the workdir.
    again = experiment.run(config, wd)
    assert again["tables"]["runs"] == rows


@pytest.mark.slow
def test_prior_training_smoke_writes_loadable_weights(tmp_path, load_config):
    config = load_config("gen3d_prior", "smoke")
    wd = str(tmp_path / "priors")
    res = experiment.run_priors(config, wd)
    assert res["paper"] == "gen3d_prior"
    assert 0.0 < res["metrics"]["image_denoise_mse_t500"]["value"] < 10.0
    model = weights.load_unet(os.path.join(wd, "view_prior"))
    assert model.cfg.in_channels == 6 and model.cfg.sample_size == 16
    extra = weights.read_extra_config(os.path.join(wd, "image_prior"))
    assert extra["prior_kind"] == "image" and extra["noise_schedule"] == "cosine"
    assert metrics_lib.read_results(wd)["preset"] == "smoke"


def test_configs_declare_their_ranges(load_config):
    for arg in ("smoke", "small", "paper"):
        load_config("dreamcraft3d", arg)
        load_config("gen3d_prior", arg)
    with pytest.raises(ValueError, match="bsdx"):
        load_config("dreamcraft3d", "small,variants=(sds,bsdx)")
    with pytest.raises(ValueError, match="32x32"):
        load_config("dreamcraft3d", "small,size=16")
    with pytest.raises(ValueError, match="t_max"):
        load_config("dreamcraft3d", "small,texture.t_min=0.9")
    with pytest.raises(ValueError, match="multiple of 8"):
        load_config("gen3d_prior", "small,channels=(12,24)")
