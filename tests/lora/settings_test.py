"""The MoS config is read once into frozen settings."""

from __future__ import annotations

import dataclasses

import pytest

from configs import mos as mos_config
from jaxsuite.lora import settings
from tests.settings_leaves import assert_same_leaves, leaves


@pytest.mark.parametrize("preset", list(mos_config.PRESETS))
def test_from_config_reads_every_field(preset):
    config = mos_config.get_config(preset)
    got = leaves(settings.from_config(config))
    assert_same_leaves(config, got)


def test_settings_are_frozen_and_keep_overrides():
    config = mos_config.get_config("smoke,adapt.steps=24,seeds=3")
    s = settings.from_config(config)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.adapt.steps = 3  # type: ignore[misc]
    assert (s.adapt.steps, s.seeds) == (24, 3)
    assert s.methods == ("lora r=1", "mos r=4 e=1 p=0 l=2")
    assert s.adapt.learning_rates == (3e-3, 1e-2)
