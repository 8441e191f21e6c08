"""The LSM-GNN config is read once into frozen settings."""

from __future__ import annotations

import dataclasses

import pytest

from configs import lsmgnn as lsmgnn_config
from jaxsuite.gnn import experiment, settings
from tests.settings_leaves import assert_same_leaves, leaves


@pytest.mark.parametrize("preset", list(lsmgnn_config.PRESETS))
def test_from_config_reads_every_field(preset):
    config = lsmgnn_config.get_config(preset)
    got = leaves(settings.from_config(config))
    got["io.compute_seconds"] = got.pop("compute_seconds")
    assert_same_leaves(config, got)


def test_settings_are_frozen_and_model_dims_follow_them():
    s = settings.from_config(lsmgnn_config.get_config("smoke"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.train.hidden = 64  # type: ignore[misc]
    assert experiment.model_dims(s) == (128, 32, 16)
