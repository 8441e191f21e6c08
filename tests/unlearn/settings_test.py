"""The S3T config is read once into frozen settings."""

from __future__ import annotations

import dataclasses

import pytest

from configs import s3t as s3t_config
from jaxsuite.unlearn import experiment, settings
from tests.settings_leaves import assert_same_leaves, leaves


@pytest.mark.parametrize("preset", list(s3t_config.PRESETS))
def test_from_config_reads_every_field(preset):
    config = s3t_config.get_config(preset)
    got = leaves(settings.from_config(config))
    assert_same_leaves(config, got)


def test_settings_are_frozen_and_pick_the_stage_hyperparameters():
    s = settings.from_config(s3t_config.get_config("smoke"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.train.epochs = 3  # type: ignore[misc]
    sisa = experiment.train_settings(s, "sisa")
    assert (sisa.method, sisa.epochs, sisa.seed) == ("sisa", 10, 0)
    assert experiment.make_adapters(s.model).rank == s.model.lora_rank
    dense = dataclasses.replace(s.model, adapters="dense")
    assert experiment.make_adapters(dense).name == "dense"
