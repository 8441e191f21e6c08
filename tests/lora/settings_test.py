"""The MoS config is read once into frozen settings."""

from __future__ import annotations

import dataclasses

import pytest

from configs import mos as mos_config
from jaxsuite.lora import experiment, report, settings
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


def test_settings_parts_build_the_model_and_the_scale_note():
    s = settings.from_config(mos_config.get_config("smoke"))
    mc = experiment.model_config(s.model, s.seq_len)
    assert (mc.vocab, mc.d_model, mc.n_layers, mc.n_heads, mc.d_ff) == (
        16,
        12,
        4,
        2,
        24,
    )
    assert mc.max_len == s.seq_len == 10 and mc.scan_layers
    assert "a 4-layer, d=12 decoder" in report.scale_note(s)
    assert "over 2 seeds" in report.scale_note(s)
