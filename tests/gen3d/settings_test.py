"""The DreamCraft3D and prior-training configs are read once into frozen settings."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import pytest

from configs import dreamcraft3d as dc3d_config
from configs import gen3d_prior as prior_config
from jaxsuite.gen3d import experiment, geometry, losses, settings, stages, texture
from tests.settings_leaves import assert_same_leaves, leaves


@pytest.mark.parametrize("preset", list(dc3d_config.PRESETS))
def test_from_config_reads_every_field(preset):
    config = dc3d_config.get_config(preset)
    got = leaves(settings.from_config(config))
    assert got.pop("preset") == config.preset
    assert_same_leaves(config, got)


@pytest.mark.parametrize("preset", list(prior_config.PRESETS))
def test_prior_from_config_reads_every_field(preset):
    config = prior_config.get_config(preset)
    got = leaves(settings.prior_from_config(config))
    assert_same_leaves(config, got)


def test_overrides_reach_the_settings_as_tuples():
    arg = "smoke,variants=(sds,bsd2),elevation_range=(0,30),texture.t_max=(0.4,0.3)"
    s = settings.from_config(dc3d_config.get_config(arg))
    assert s.preset == arg
    assert s.variants == ("sds", "bsd2")
    assert s.elevation_range == (0.0, 30.0)
    assert s.texture.t_max == (0.4, 0.3)
    assert stages.camera_ranges(s) == ((0.0, 30.0), (-180.0, 180.0))


def test_settings_are_frozen_hashable_and_equal_across_reads():
    config = dc3d_config.get_config("smoke")
    s = settings.from_config(config)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.texture.steps = 3  # type: ignore[misc]
    # Equal reads hash equally: the jitted stage updates, which take the
    # settings as a static argument, compile once per experiment.
    again = settings.from_config(config)
    assert again == s and hash(again) == hash(s)
    assert s.field == geometry.FieldSpec(**dict(config.field))
    p = settings.prior_from_config(prior_config.get_config("smoke"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.lr = 1.0  # type: ignore[misc]
    assert p.channels == (8,) and hash(p) is not None


def test_context_keeps_the_settings_static():
    s = settings.from_config(dc3d_config.get_config("smoke"))
    im, vm, sched = experiment.load_priors(s.prior_source, s.size)
    ref = losses.Reference(
        rgb=jnp.ones((s.size, s.size, 3)),
        mask=jnp.ones((s.size, s.size)),
        depth=jnp.zeros((s.size, s.size)),
    )
    ctx = stages.make_context(ref, jnp.zeros(4), im, vm, sched, s, seed=3)
    assert ctx.settings is s and ctx.static.settings is s and ctx.seed == 3
    assert hash(ctx.static) == hash(
        ctx.static._replace(settings=dataclasses.replace(s))
    )


def test_erode_kernel_scales_the_released_kernel_to_the_render_size():
    t = settings.from_config(dc3d_config.get_config("small")).texture
    assert texture.erode_kernel(t, 1024) == 9  # the released 9 x 9 at 1024 px
    assert texture.erode_kernel(t, 32) == 1
    half = dataclasses.replace(t, erode_reference_size=32)
    assert texture.erode_kernel(half, 16) == 3  # 4.5 rounds to 4, made odd


def test_load_priors_rejects_a_size_the_priors_do_not_work_at():
    with pytest.raises(ValueError, match="works at 32px but config.size is 16"):
        experiment.load_priors("assets", 16)
