"""The blocking config is read once into frozen settings."""

from __future__ import annotations

import dataclasses

import pytest

from configs import blocking as blocking_config
from jaxsuite.climate import blocking, settings, stages
from tests.settings_leaves import assert_same_leaves, leaves

# Onset-definition fields the config leaves at their documented defaults.
_SPEC_DEFAULTS = ("box_lat", "box_lon", "input_lat_min")


@pytest.mark.parametrize("preset", list(blocking_config.PRESETS))
def test_from_config_reads_every_field(preset):
    config = blocking_config.get_config(preset)
    got = leaves(settings.from_config(config))
    default = blocking.OnsetSpec()
    for name in _SPEC_DEFAULTS:
        assert got.pop(f"onset.{name}") == getattr(default, name)
    assert_same_leaves(config, got)


def test_settings_are_frozen_and_give_the_model_configuration():
    s = settings.from_config(blocking_config.get_config("smoke"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.learn.seeds = 3  # type: ignore[misc]
    qg_target = stages.model_config(s.target)
    assert qg_target.tau_ekman == pytest.approx(1.5 * 86400.0)
    assert qg_target.rossby_radii == (700e3, 400e3)
