"""The config is read once into frozen settings; ``with_experts`` is pure."""

from __future__ import annotations

import dataclasses

import jax
import pytest

from configs import hecate as hecate_config
from jaxsuite.moe import replay, settings
from tests.settings_leaves import assert_same_leaves, leaves


@pytest.mark.parametrize("preset", ["smoke", "small", "paper"])
def test_from_config_reads_every_field(preset):
    config = hecate_config.get_config(preset)
    got = leaves(settings.from_config(config))
    assert_same_leaves(config, got)


def test_settings_are_frozen():
    s = settings.from_config(hecate_config.get_config("smoke"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.model.experts = 32  # type: ignore[misc]


def test_with_experts_returns_new_settings_and_leaves_the_old_alone():
    s = settings.from_config(hecate_config.get_config("smoke"))
    devices = jax.device_count()
    wider = replay.with_experts(s, 32)
    assert s == settings.from_config(hecate_config.get_config("smoke"))
    assert wider.model.experts == 32
    assert wider.fssdp.slots == s.model.layers * 32 // devices
    assert wider.fssdp.layer_slots == max(32 // devices, 2 * s.fssdp.layer_slots)
    assert wider.fssdp.mat_slots == s.fssdp.mat_slots
    unchanged = ("model", "fssdp")
    for f in dataclasses.fields(s):
        if f.name not in unchanged:
            assert getattr(wider, f.name) == getattr(s, f.name), f.name
