"""Weights round-trip through diffusers safetensors and Flax msgpack exactly,
and bad folders fail with errors that list what is wrong."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxsuite.gen3d import unet, weights

TINY = unet.UNetConfig(
    sample_size=8,
    in_channels=6,
    block_out_channels=(8, 16),
    norm_num_groups=4,
    attention_head_dim=4,
    class_embed_dim=5,
)


@nnx.jit
def _apply(model, x, t, c):
    return model(x, t, c)


def _outputs(model):
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 8, 8, 6))
    c = jax.random.normal(jax.random.PRNGKey(2), (2, 5))
    return np.asarray(_apply(model, x, jnp.array([3.0, 700.0]), c))


@pytest.mark.parametrize("fmt", ["safetensors", "msgpack"])
def test_round_trip_is_exact(tmp_path, fmt):
    model = unet.create(TINY, 0)
    weights.save_unet(model, str(tmp_path / "unet"), fmt=fmt)
    loaded = weights.load_unet(str(tmp_path), seed=5)  # finds the unet/ subfolder
    assert loaded.cfg == TINY
    np.testing.assert_array_equal(_outputs(loaded), _outputs(model))
    fresh = unet.create(TINY, 5)
    assert np.abs(_outputs(fresh) - _outputs(model)).max() > 1e-3


def test_torch_layout_and_names():
    model = unet.create(TINY, 0)
    sd = weights.to_diffusers_state_dict(model)
    k = np.asarray(model.conv_in.kernel.get_value())
    assert sd["conv_in.weight"].shape == (8, 6, 3, 3)
    np.testing.assert_array_equal(sd["conv_in.weight"][2, 4], k[:, :, 4, 2])
    assert sd["time_embedding.linear_1.weight"].shape == (32, 8)
    for key in (
        "down_blocks.0.resnets.0.norm1.weight",
        "down_blocks.0.downsamplers.0.conv.weight",
        "down_blocks.1.resnets.0.conv_shortcut.weight",
        "mid_block.attentions.0.to_out.0.bias",
        "up_blocks.0.resnets.1.conv_shortcut.weight",
        "up_blocks.0.upsamplers.0.conv.weight",
        "class_embedding.linear_2.weight",
        "conv_norm_out.weight",
    ):
        assert key in sd, key
    # diffusers' UpBlock2D widths: up_blocks.0 resnet 1 takes 16 + 8 channels.
    assert sd["up_blocks.0.resnets.1.conv1.weight"].shape == (16, 24, 3, 3)
    cfg = TINY.to_diffusers()
    assert unet.UNetConfig.from_diffusers(json.loads(json.dumps(cfg))) == TINY


def test_fp16_storage_loads(tmp_path):
    model = unet.create(TINY, 0)
    weights.save_unet(model, str(tmp_path), dtype="float16")
    loaded = weights.load_unet(str(tmp_path))
    np.testing.assert_allclose(_outputs(loaded), _outputs(model), atol=2e-2)


def test_missing_keys_and_wrong_shapes_are_listed(tmp_path):
    from safetensors.numpy import load_file, save_file

    model = unet.create(TINY, 0)
    path = weights.save_unet(model, str(tmp_path))
    sd = load_file(path)
    del sd["mid_block.attentions.0.to_q.weight"]
    del sd["conv_out.bias"]
    sd["conv_in.weight"] = np.zeros((8, 3, 3, 3), np.float32)
    sd["extra.layer.weight"] = np.zeros(3, np.float32)
    save_file(sd, path)
    with pytest.raises(weights.WeightsError) as err:
        weights.load_unet(str(tmp_path))
    msg = str(err.value)
    assert "missing keys (2)" in msg
    assert "mid_block.attentions.0.to_q.weight" in msg and "conv_out.bias" in msg
    assert "conv_in.weight: file (8, 3, 3, 3), model (8, 6, 3, 3)" in msg
    assert "extra.layer.weight" in msg


def test_missing_files_raise(tmp_path):
    with pytest.raises(FileNotFoundError):
        weights.load_unet(str(tmp_path / "nope"))
    os.makedirs(tmp_path / "w")
    with open(tmp_path / "w" / "config.json", "w") as f:
        json.dump(TINY.to_diffusers(), f)
    with pytest.raises(FileNotFoundError, match="neither"):
        weights.load_unet(str(tmp_path / "w"))
    bad = dict(TINY.to_diffusers(), down_block_types=["CrossAttnDownBlock2D"] * 2)
    with open(tmp_path / "w" / "config.json", "w") as f:
        json.dump(bad, f)
    with pytest.raises(ValueError, match="CrossAttnDownBlock2D"):
        weights.read_config(str(tmp_path / "w"))
