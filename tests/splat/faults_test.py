"""Overflowing renders are never silent, and their count survives a resume."""

import pytest
from jaxsuite.kernels.splatting import binning

from configs import deblur3dgs as deblur_config
from jaxsuite.core import metrics as metrics_lib
from jaxsuite.splat import evaluate, methods
from jaxsuite.splat import settings as settings_lib
from jaxsuite.splat import train as splat_train
from jaxsuite.splat.data import initial_gaussians, make_data


def _config(arg):
    return deblur_config.get_config(arg)


def _with(config, **values):
    out = config.copy_and_resolve_references()
    with out.unlocked():
        for k, v in values.items():
            out[k] = v
    return out


def _make_data(config):
    s = settings_lib.from_config(config)
    return make_data(s.data, s.raster)


@pytest.fixture(scope="module")
def smoke():
    config = _config(
        "smoke,blur_types=(defocus,),num_views=3,test_every=2,image_size=16,"
        "num_gaussians=60,scene_detail=0.3,blur_samples=2,known_blur_samples=1"
    )
    return config, _make_data(config)


def test_ground_truth_that_overflows_is_refused():
    # With capacity=64 the ground truth used to be rendered incomplete and the
    # blurry input scored 59 dB against it instead of 23 dB.
    config = _config("smoke,capacity=64,blur_types=(defocus,),num_views=3")
    with pytest.raises(binning.OverflowError, match="ground-truth renders") as e:
        _make_data(config)
    assert "capacity=64" in str(e.value) and "Raise capacity" in str(e.value)


def test_evaluation_renders_report_overflow(smoke):
    config, data = smoke
    s = settings_lib.from_config(config)
    points = initial_gaussians(s.data, data["gt"], sh_degree=s.train.sh_degree)
    params = splat_train.init_params(points, None)
    ok, _ = evaluate.evaluate(params, data, s.evaluation)
    assert ok["test_overflow_views"] == 0.0
    tiny = settings_lib.from_config(_with(config, capacity=16)).evaluation
    bad, _ = evaluate.evaluate(params, data, tiny)
    assert bad["test_overflow_views"] == len(data["test_ids"])


@pytest.mark.slow  # two compilations of the training step
def test_overflow_steps_are_checkpointed(smoke, tmp_path):
    # Every training render overflows a 16-slot workspace. A run stopped
    # after 4 steps and resumed to 6 must report 6 overflowing steps (the
    # count used to live in a list that a resumed process started empty).
    config, data = smoke
    tiny = _with(config, capacity=16, checkpoint_every=2, compensate_at=0)
    wd = str(tmp_path)
    with metrics_lib.MetricWriter(wd) as writer:
        _, first = methods.train_method(
            settings_lib.from_config(_with(tiny, steps=4)),
            data,
            "defocus",
            "vanilla",
            wd,
            writer,
        )
        _, resumed = methods.train_method(
            settings_lib.from_config(_with(tiny, steps=6)),
            data,
            "defocus",
            "vanilla",
            wd,
            writer,
        )
    assert (first, resumed) == (4, 6)
