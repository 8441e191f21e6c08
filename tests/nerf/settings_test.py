"""The PVD config is read once into frozen settings."""

from __future__ import annotations

import dataclasses

import pytest

from configs import pvd as pvd_config
from jaxsuite.nerf import experiment, fields, loop, settings, trainer
from tests.settings_leaves import assert_same_leaves, leaves


@pytest.mark.parametrize("preset", list(pvd_config.PRESETS))
def test_from_config_reads_every_field(preset):
    config = pvd_config.get_config(preset)
    got = leaves(settings.from_config(config))
    assert_same_leaves(config, got)


def test_settings_are_frozen_and_build_the_parts_arguments():
    config = pvd_config.get_config("smoke")
    s = settings.from_config(config)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.num_samples = 3  # type: ignore[misc]
    assert s.field == fields.FieldConfig(**dict(config.field))
    assert s.occ == trainer.OccConfig(
        resolution=8, every=8, warmup=64, decay=0.95, threshold=10.0
    )
    oc = experiment.optim_config(s, "mlp", 7)
    assert (oc.lr_grid, oc.lr_net, oc.total_steps) == (1e-3, 1e-3, 7)
    dc = experiment.distill_config(s)
    assert (dc.total_steps, dc.stage1_steps, dc.stage2_steps) == (100000, 2, 4)
    assert (dc.batch_rays, dc.num_samples, dc.image_size) == (64, 12, 16)
    assert dc.elevation_range_deg == (5.0, 75.0)
    marks = experiment.eval_marks(s)
    # Two marks up to the distillation budget, two more up to scratch's.
    assert marks == pytest.approx((0.2, 0.5, 1.0))
    sched = experiment.schedule(s, 0.5)
    assert sched == loop.Schedule(
        budget_s=0.5, eval_seconds=marks, num_evals=2, retime_steps=2, retime_repeats=2
    )
    assert sched.eval_steps(100) == (0,)
    assert loop.Schedule(num_evals=2).eval_steps(100) == loop.eval_schedule(100, 2)
