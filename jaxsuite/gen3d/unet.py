"""Pixel-space diffusion UNet (epsilon prediction) as Flax NNX modules.

The module tree mirrors diffusers' ``UNet2DModel`` (``DownBlock2D`` /
``UpBlock2D`` blocks, a ``UNetMidBlock2D`` with one attention layer) plus the
``"projection"`` class embedding of ``UNet2DConditionModel``, so parameter
paths map one-to-one onto diffusers' keys (``conv_in``,
``time_embedding.linear_1``, ``down_blocks.0.resnets.0.conv1``,
``mid_block.attentions.0.to_q``, ``up_blocks.2.upsamplers.0.conv``, ...);
``jaxsuite.gen3d.weights`` converts between the two.

Two priors share this network:

* the image prior (the role of DeepFloyd IF / Stable Diffusion): input the
  noisy image, condition a multi-hot "prompt" vector (object class,
  attributes, view direction, modality) through ``class_embedding``;
* the view-conditioned prior (the role of Zero-1-to-3): input the noisy
  target view concatenated with the reference image (``in_channels = 6``, the
  ``c_concat`` of Zero-1-to-3), condition the relative camera
  ``[d_elevation, sin d_azimuth, cos d_azimuth, d_radius]``.

Classifier-free guidance drops the condition to zeros (both the vector and,
for the view prior, the concatenated reference image).

Images are NHWC, ``(B, H, W, C)`` in ``[-1, 1]``; timesteps ``(B,)`` in
``[0, T)``.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    """Sizes of the UNet (the fields of diffusers' ``config.json`` that matter).

    Attributes:
      sample_size: image side ``H = W``.
      in_channels: input channels (3, or 6 with a concatenated reference).
      out_channels: predicted noise channels.
      block_out_channels: channels per resolution level.
      layers_per_block: resnets per down block (up blocks have one more).
      norm_num_groups: GroupNorm groups.
      attention_head_dim: channels per attention head in the mid block.
      class_embed_dim: width of the condition vector (0: unconditional).
      flip_sin_to_cos, freq_shift: timestep embedding conventions.
      norm_eps: GroupNorm epsilon.
    """

    sample_size: int = 32
    in_channels: int = 3
    out_channels: int = 3
    block_out_channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 1
    norm_num_groups: int = 8
    attention_head_dim: int = 8
    class_embed_dim: int = 0
    flip_sin_to_cos: bool = True
    freq_shift: int = 0
    norm_eps: float = 1e-5

    def to_diffusers(self) -> dict:
        """The equivalent diffusers ``config.json`` contents."""
        n = len(self.block_out_channels)
        cfg = {
            "_class_name": "UNet2DModel",
            "sample_size": self.sample_size,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "block_out_channels": list(self.block_out_channels),
            "layers_per_block": self.layers_per_block,
            "norm_num_groups": self.norm_num_groups,
            "attention_head_dim": self.attention_head_dim,
            "down_block_types": ["DownBlock2D"] * n,
            "up_block_types": ["UpBlock2D"] * n,
            "flip_sin_to_cos": self.flip_sin_to_cos,
            "freq_shift": self.freq_shift,
            "norm_eps": self.norm_eps,
            "add_attention": True,
        }
        if self.class_embed_dim:
            cfg["class_embed_type"] = "projection"
            cfg["projection_class_embeddings_input_dim"] = self.class_embed_dim
        return cfg

    @classmethod
    def from_diffusers(cls, cfg: dict) -> UNetConfig:
        """Reads a diffusers ``config.json`` dict (unsupported blocks raise)."""
        for key in ("down_block_types", "up_block_types"):
            bad = [b for b in cfg.get(key, []) if b not in ("DownBlock2D", "UpBlock2D")]
            if bad:
                raise ValueError(
                    f"Unsupported {key} {bad}: this UNet has DownBlock2D/UpBlock2D "
                    "blocks and attention in the mid block only."
                )
        embed = cfg.get("class_embed_type")
        if embed not in (None, "projection"):
            raise ValueError(f"Unsupported class_embed_type {embed!r}.")
        return cls(
            sample_size=int(cfg.get("sample_size", 32)),
            in_channels=int(cfg.get("in_channels", 3)),
            out_channels=int(cfg.get("out_channels", 3)),
            block_out_channels=tuple(int(c) for c in cfg["block_out_channels"]),
            layers_per_block=int(cfg.get("layers_per_block", 2)),
            norm_num_groups=int(cfg.get("norm_num_groups", 32)),
            attention_head_dim=int(cfg.get("attention_head_dim") or 8),
            class_embed_dim=int(cfg.get("projection_class_embeddings_input_dim") or 0)
            if embed == "projection"
            else 0,
            flip_sin_to_cos=bool(cfg.get("flip_sin_to_cos", True)),
            freq_shift=int(cfg.get("freq_shift", 0)),
            norm_eps=float(cfg.get("norm_eps", 1e-5)),
        )


def timestep_embedding(
    t: jax.Array, dim: int, flip_sin_to_cos: bool = True, shift: float = 0.0
) -> jax.Array:
    """diffusers' sinusoidal ``Timesteps``: ``(B,) -> (B, dim)``."""
    half = dim // 2
    exponent = -math.log(10000.0) * jnp.arange(half, dtype=jnp.float32) / (half - shift)
    args = t.astype(jnp.float32)[:, None] * jnp.exp(exponent)[None]
    emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
    if flip_sin_to_cos:
        emb = jnp.concatenate([emb[:, half:], emb[:, :half]], axis=-1)
    return emb


def _conv(cin: int, cout: int, k: int, rngs: nnx.Rngs, stride: int = 1) -> nnx.Conv:
    pad = (k - 1) // 2
    return nnx.Conv(
        cin,
        cout,
        (k, k),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        rngs=rngs,
    )


class TimestepEmbedding(nnx.Module):
    """``linear_2(silu(linear_1(x)))``."""

    def __init__(self, din: int, dout: int, rngs: nnx.Rngs):
        self.linear_1 = nnx.Linear(din, dout, rngs=rngs)
        self.linear_2 = nnx.Linear(dout, dout, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.linear_2(jax.nn.silu(self.linear_1(x)))


class ResnetBlock2D(nnx.Module):
    """diffusers' ``ResnetBlock2D`` (default time-embedding shift, scale 1)."""

    def __init__(self, cin: int, cout: int, temb: int, cfg: UNetConfig, rngs):
        g, eps = cfg.norm_num_groups, cfg.norm_eps
        self.norm1 = nnx.GroupNorm(cin, num_groups=g, epsilon=eps, rngs=rngs)
        self.conv1 = _conv(cin, cout, 3, rngs)
        self.time_emb_proj = nnx.Linear(temb, cout, rngs=rngs)
        self.norm2 = nnx.GroupNorm(cout, num_groups=g, epsilon=eps, rngs=rngs)
        self.conv2 = _conv(cout, cout, 3, rngs)
        self.conv_shortcut = _conv(cin, cout, 1, rngs) if cin != cout else None

    def __call__(self, x: jax.Array, temb: jax.Array) -> jax.Array:
        h = self.conv1(jax.nn.silu(self.norm1(x)))
        h = h + self.time_emb_proj(jax.nn.silu(temb))[:, None, None, :]
        h = self.conv2(jax.nn.silu(self.norm2(h)))
        skip = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return skip + h


class Attention(nnx.Module):
    """diffusers' spatial self-attention block (group norm, residual)."""

    def __init__(self, c: int, head_dim: int, cfg: UNetConfig, rngs: nnx.Rngs):
        self.heads = max(c // head_dim, 1)
        self.group_norm = nnx.GroupNorm(
            c, num_groups=cfg.norm_num_groups, epsilon=cfg.norm_eps, rngs=rngs
        )
        self.to_q = nnx.Linear(c, c, rngs=rngs)
        self.to_k = nnx.Linear(c, c, rngs=rngs)
        self.to_v = nnx.Linear(c, c, rngs=rngs)
        self.to_out = nnx.List([nnx.Linear(c, c, rngs=rngs)])

    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        y = self.group_norm(x).reshape(b, h * w, c)
        split = lambda z: z.reshape(b, h * w, self.heads, c // self.heads)
        q, k, v = split(self.to_q(y)), split(self.to_k(y)), split(self.to_v(y))
        scale = (c // self.heads) ** -0.5
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) * scale
        att = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", att, v).reshape(b, h * w, c)
        return x + self.to_out[0](out).reshape(b, h, w, c)


class Sampler(nnx.Module):
    """Holds the ``conv`` of a ``Downsample2D`` / ``Upsample2D``."""

    def __init__(self, c: int, rngs: nnx.Rngs, stride: int):
        self.conv = _conv(c, c, 3, rngs, stride=stride)


class Block(nnx.Module):
    """A ``DownBlock2D`` or ``UpBlock2D``: resnets and an optional resampler."""

    def __init__(self, resnets: list, sampler: Sampler | None, down: bool):
        self.resnets = nnx.List(resnets)
        name = "downsamplers" if down else "upsamplers"
        setattr(self, name, nnx.List([sampler]) if sampler is not None else None)
        self._down = down


class MidBlock(nnx.Module):
    def __init__(self, c: int, temb: int, cfg: UNetConfig, rngs: nnx.Rngs):
        self.resnets = nnx.List(
            [ResnetBlock2D(c, c, temb, cfg, rngs), ResnetBlock2D(c, c, temb, cfg, rngs)]
        )
        self.attentions = nnx.List([Attention(c, cfg.attention_head_dim, cfg, rngs)])

    def __call__(self, x, temb):
        x = self.resnets[0](x, temb)
        x = self.attentions[0](x)
        return self.resnets[1](x, temb)


class UNet(nnx.Module):
    """The UNet: ``(x (B,H,W,Cin), t (B,), cond (B,D) | None) -> eps (B,H,W,Cout)``."""

    def __init__(self, cfg: UNetConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        ch = cfg.block_out_channels
        temb = 4 * ch[0]
        self.conv_in = _conv(cfg.in_channels, ch[0], 3, rngs)
        self.time_embedding = TimestepEmbedding(ch[0], temb, rngs)
        self.class_embedding = (
            TimestepEmbedding(cfg.class_embed_dim, temb, rngs)
            if cfg.class_embed_dim
            else None
        )
        n = len(ch)
        down, cout = [], ch[0]
        for i in range(n):
            cin, cout = cout, ch[i]
            res = [
                ResnetBlock2D(cin if j == 0 else cout, cout, temb, cfg, rngs)
                for j in range(cfg.layers_per_block)
            ]
            samp = Sampler(cout, rngs, stride=2) if i < n - 1 else None
            down.append(Block(res, samp, down=True))
        self.down_blocks = nnx.List(down)
        self.mid_block = MidBlock(ch[-1], temb, cfg, rngs)
        rev = ch[::-1]
        up, cout = [], rev[0]
        for i in range(n):
            prev, cout = cout, rev[i]
            cin = rev[min(i + 1, n - 1)]
            res = []
            for j in range(cfg.layers_per_block + 1):
                skip = cin if j == cfg.layers_per_block else cout
                res.append(
                    ResnetBlock2D(
                        (prev if j == 0 else cout) + skip, cout, temb, cfg, rngs
                    )
                )
            samp = Sampler(cout, rngs, stride=1) if i < n - 1 else None
            up.append(Block(res, samp, down=False))
        self.up_blocks = nnx.List(up)
        self.conv_norm_out = nnx.GroupNorm(
            ch[0], num_groups=cfg.norm_num_groups, epsilon=cfg.norm_eps, rngs=rngs
        )
        self.conv_out = _conv(ch[0], cfg.out_channels, 3, rngs)

    def __call__(
        self, x: jax.Array, t: jax.Array, cond: jax.Array | None = None
    ) -> jax.Array:
        cfg = self.cfg
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), (x.shape[0],))
        emb = self.time_embedding(
            timestep_embedding(
                t, cfg.block_out_channels[0], cfg.flip_sin_to_cos, cfg.freq_shift
            )
        )
        if self.class_embedding is not None:
            if cond is None:
                cond = jnp.zeros((x.shape[0], cfg.class_embed_dim), x.dtype)
            emb = emb + self.class_embedding(cond)
        h = self.conv_in(x)
        skips = [h]
        for block in self.down_blocks:
            for res in block.resnets:
                h = res(h, emb)
                skips.append(h)
            if block.downsamplers is not None:
                h = block.downsamplers[0].conv(h)
                skips.append(h)
        h = self.mid_block(h, emb)
        for block in self.up_blocks:
            for res in block.resnets:
                h = res(jnp.concatenate([h, skips.pop()], axis=-1), emb)
            if block.upsamplers is not None:
                b, hh, ww, c = h.shape
                h = jax.image.resize(h, (b, 2 * hh, 2 * ww, c), "nearest")
                h = block.upsamplers[0].conv(h)
        h = jax.nn.silu(self.conv_norm_out(h))
        return self.conv_out(h)


def count_params(model: nnx.Module) -> int:
    """Number of parameters of ``model``."""
    return int(sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param))))


def create(cfg: UNetConfig, seed: int = 0) -> UNet:
    """A freshly initialised UNet.

    Kernels are LeCun-normal (``N(0, 1 / fan_in)``, flax's default family),
    biases zero and norm scales one, drawn on the host with numpy from
    ``seed``: eager or jitted initialisation through ``jax.random`` compiles
    a program per layer or one very large one, which takes minutes on a
    small CPU.
    """
    abstract = nnx.eval_shape(lambda: UNet(cfg, nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    rng = np.random.default_rng(seed)
    flat = nnx.to_flat_state(state)
    for path, var in flat:
        shape = var.get_value().shape
        leaf = str(path[-1])
        if leaf == "kernel":
            fan_in = int(np.prod(shape[:-1]))
            value = rng.normal(size=shape) / np.sqrt(fan_in)
        elif leaf == "scale":
            value = np.ones(shape)
        else:
            value = np.zeros(shape)
        var.set_value(jnp.asarray(value, jnp.float32))
    return nnx.merge(graphdef, nnx.from_flat_state(flat))
