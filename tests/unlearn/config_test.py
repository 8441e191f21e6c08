"""The S3T config: presets build, bad values are refused with the key named."""

import pytest

from configs.s3t import PRESETS, get_config


def test_every_preset_builds():
    for preset in PRESETS:
        assert get_config(preset).preset == preset
    small = get_config("small")
    assert (small.num_shards, small.num_slices, small.budgets) == (5, 4, (1, 4, 24))


@pytest.mark.parametrize(
    "override,message",
    [
        ("model.depth=6", "model.depth=6 must be a multiple of num_slices=4"),
        ("budgets=(1,25)", "at most 24"),
        ("sequence_method=bms", "bms sequences of 4 slices allow at most 4"),
        ("deletions=0", "deletions=0"),
        ("accuracy_at=(0,500)", "exceeds deletions=120"),
        ("model.adapters=vera", "model.adapters='vera'"),
        ("devices=9", "devices=9 exceeds num_shards=5"),
    ],
)
def test_bad_settings_are_refused(override, message):
    with pytest.raises(
        ValueError, match=message.replace("(", r"\(").replace(")", r"\)")
    ):
        get_config(f"small,{override}")
