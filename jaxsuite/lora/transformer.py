"""A small LLaMA-style decoder-only transformer in Flax NNX.

Layer names follow LLaMA (``layers.<i>.attn.{q,k,v,o}_proj``,
``layers.<i>.mlp.{gate,up,down}_proj``), so adapter configs written for
LLaMA apply unchanged. Blocks are pre-norm (RMSNorm), attention is causal
multi-head with optional grouped key/value heads, the MLP is SwiGLU, and
positions are learned embeddings.

With ``scan_layers=True`` the blocks are created with ``nnx.vmap`` (every
kernel gains a leading layer axis and the names lose the index:
``layers.attn.q_proj``) and run with ``nnx.scan``; shared adapter arrays
are broadcast through ``jaxsuite.lora.scan_axes``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from jaxsuite.lora import adapters


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """Sizes of the decoder.

    Attributes:
      vocab: number of tokens.
      d_model: hidden size.
      n_layers: number of blocks.
      n_heads: attention heads (``d_model`` must be divisible by it).
      n_kv_heads: key/value heads (grouped-query attention); None = n_heads.
      d_ff: SwiGLU intermediate size.
      max_len: longest sequence (learned position embeddings).
      scan_layers: stack the blocks and run them with ``nnx.scan``.
    """

    vocab: int = 32
    d_model: int = 48
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int | None = None
    d_ff: int = 96
    max_len: int = 64
    scan_layers: bool = False

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads


LLAMA2_7B = TransformerConfig(
    vocab=32000, d_model=4096, n_layers=32, n_heads=32, d_ff=11008, max_len=4096
)


class Attention(nnx.Module):
    """Causal self-attention: (B, T, d) -> (B, T, d)."""

    def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs):
        d, hd = cfg.d_model, cfg.head_dim
        self.n_heads, self.kv_heads, self.head_dim = cfg.n_heads, cfg.kv_heads, hd
        self.q_proj = nnx.Linear(d, cfg.n_heads * hd, use_bias=False, rngs=rngs)
        self.k_proj = nnx.Linear(d, cfg.kv_heads * hd, use_bias=False, rngs=rngs)
        self.v_proj = nnx.Linear(d, cfg.kv_heads * hd, use_bias=False, rngs=rngs)
        self.o_proj = nnx.Linear(cfg.n_heads * hd, d, use_bias=False, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b, t, _ = x.shape
        q = self.q_proj(x).reshape(b, t, self.n_heads, self.head_dim)
        k = self.k_proj(x).reshape(b, t, self.kv_heads, self.head_dim)
        v = self.v_proj(x).reshape(b, t, self.kv_heads, self.head_dim)
        rep = self.n_heads // self.kv_heads
        if rep > 1:
            k, v = jnp.repeat(k, rep, axis=2), jnp.repeat(v, rep, axis=2)
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(float(self.head_dim))
        mask = jnp.tril(jnp.ones((t, t), dtype=bool))
        logits = jnp.where(mask[None, None], logits, jnp.finfo(logits.dtype).min)
        attn = jax.nn.softmax(logits, axis=-1)
        out = jnp.einsum("bhqk,bkhd->bqhd", attn, v).reshape(b, t, -1)
        return self.o_proj(out)


class MLP(nnx.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs):
        self.gate_proj = nnx.Linear(cfg.d_model, cfg.d_ff, use_bias=False, rngs=rngs)
        self.up_proj = nnx.Linear(cfg.d_model, cfg.d_ff, use_bias=False, rngs=rngs)
        self.down_proj = nnx.Linear(cfg.d_ff, cfg.d_model, use_bias=False, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nnx.Module):
    """Pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs):
        self.attn_norm = nnx.RMSNorm(cfg.d_model, rngs=rngs)
        self.attn = Attention(cfg, rngs=rngs)
        self.mlp_norm = nnx.RMSNorm(cfg.d_model, rngs=rngs)
        self.mlp = MLP(cfg, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.attn(self.attn_norm(x))
        return x + self.mlp(self.mlp_norm(x))


class Transformer(nnx.Module):
    """Decoder-only LM: tokens (B, T) int -> logits (B, T, vocab)."""

    def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embed = nnx.Embed(cfg.vocab, cfg.d_model, rngs=rngs)
        self.pos = nnx.Embed(cfg.max_len, cfg.d_model, rngs=rngs)
        if cfg.scan_layers:

            @nnx.split_rngs(splits=cfg.n_layers)
            @nnx.vmap(in_axes=(0,), out_axes=0)
            def make(rngs):
                return Block(cfg, rngs=rngs)

            self.layers = make(rngs)
        else:
            self.layers = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.n_layers)])
        self.norm = nnx.RMSNorm(cfg.d_model, rngs=rngs)
        self.lm_head = nnx.Linear(cfg.d_model, cfg.vocab, use_bias=False, rngs=rngs)

    def hidden(self, tokens: jax.Array) -> jax.Array:
        """Final hidden states (B, T, d_model), normalised."""
        t = tokens.shape[1]
        x = self.embed(tokens) + self.pos(jnp.arange(t))[None]
        if self.cfg.scan_layers:

            @nnx.scan(in_axes=(adapters.scan_axes(0), nnx.Carry), out_axes=nnx.Carry)
            def body(block, h):
                return block(h)

            x = body(self.layers, x)
        else:
            for block in self.layers:
                x = block(x)
        return self.norm(x)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        return self.lm_head(self.hidden(tokens))


PROJECTIONS = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)


def projection_shapes(cfg: TransformerConfig) -> dict[str, tuple[int, int]]:
    """``{layers.i.<module>.<proj>: (d_in, d_out)}`` of every projection."""
    d, kv = cfg.d_model, cfg.kv_heads * cfg.head_dim
    per_layer = {
        "attn.q_proj": (d, cfg.n_heads * cfg.head_dim),
        "attn.k_proj": (d, kv),
        "attn.v_proj": (d, kv),
        "attn.o_proj": (cfg.n_heads * cfg.head_dim, d),
        "mlp.gate_proj": (d, cfg.d_ff),
        "mlp.up_proj": (d, cfg.d_ff),
        "mlp.down_proj": (cfg.d_ff, d),
    }
    return {
        f"layers.{i}.{name}": shape
        for i in range(cfg.n_layers)
        for name, shape in per_layer.items()
    }
