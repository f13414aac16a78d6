"""The melody Transformer (`model.arch='transformer'`): the LSTM model's
streams, conditions and heads around a decoder-only, pre-norm, causal
Transformer. Knows nothing about MIDI.

The inputs are the reference model's: pitch and duration embeddings (and
the embedded conditions) concatenated, spatial dropout and layer norm
(`model.MelodyModel._features`), here projected to the model width. Then
`transformer_layers` blocks, each x + Attention(LN(x)) and x + MLP(LN(x)),
a final layer norm, and the reference model's shared Dense with ReLU and
two heads (`_heads`, `duration_given_pitch` included). Attention is
`jax.nn.dot_product_attention` (cuDNN's fused kernel on a GPU, XLA's on a
CPU), causal, with relative positions: rotary embeddings of queries and
keys (`position='rope'`, Su et al. 2021) or a per-head linear bias on the
distance (`position='alibi'`, Press et al. 2022). Dropout
(`transformer_dropout`) on the attention and MLP outputs takes one mask per
sequence row from the step's key folded with the row's global index, so a
batch gets the same masks however it is split across devices.

The same two calls as the LSTM model: `__call__` maps a whole window to
logits (one pass, every position attending to itself and those before it);
`step` maps one event to the next one's logits with a key/value cache in
the carry (`initial_carry(batch, length)`: per layer the keys and values of
the positions so far, [batch, heads, length, head_dim], and the position),
so a sampler's scan costs one step over the cached keys per event and
gives the logits the full pass gives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from melodyjax.model import model as model_lib
from melodyjax.model.config import ModelConfig

Carry = dict[str, Any]
_NEG = -1e30


def rope(x: jax.Array, positions: jax.Array) -> jax.Array:
  """Rotary position embedding of `x` [batch, time, heads, head_dim] at
  `positions` int [batch, time] (pairs of channels rotated by angles that
  fall geometrically with the channel)."""
  half = x.shape[-1] // 2
  frequencies = 1.0 / (10_000.0 ** (jnp.arange(half) / half))
  angles = positions[..., None].astype(jnp.float32) * frequencies
  cos = jnp.cos(angles)[:, :, None, :]
  sin = jnp.sin(angles)[:, :, None, :]
  first, second = x[..., :half], x[..., half:]
  rotated = jnp.concatenate(
    [first * cos - second * sin, first * sin + second * cos], axis=-1
  )
  return rotated.astype(x.dtype)


def alibi_slopes(heads: int) -> jax.Array:
  """ALiBi's per-head slopes: a geometric sequence from 2^(-8 / heads)."""
  return 2.0 ** (-8.0 * jnp.arange(1, heads + 1) / heads)


def row_dropout_mask(key, rows, shape, rate: float) -> jax.Array:
  """[batch, *shape] inverted-dropout mask, one per row from `key` folded
  with its global index (split-invariant, as `spatial_dropout_mask`)."""
  keep = jax.vmap(
    lambda row: jax.random.bernoulli(
      jax.random.fold_in(key, row), 1.0 - rate, shape
    )
  )(rows)
  return keep.astype(jnp.float32) / (1.0 - rate)


class Block(nn.Module):
  """One pre-norm decoder block: causal self-attention, then an MLP."""

  config: ModelConfig

  def setup(self):
    config = self.config
    dtype = config.compute_dtype
    width = config.transformer_width
    self.attention_norm = nn.LayerNorm()
    self.qkv = nn.DenseGeneral(
      (3, config.transformer_heads, width // config.transformer_heads),
      dtype=dtype,
      use_bias=False,
    )
    self.out = nn.DenseGeneral(width, axis=(-2, -1), dtype=dtype)
    self.mlp_norm = nn.LayerNorm()
    self.up = nn.Dense(config.transformer_ff, dtype=dtype)
    self.down = nn.Dense(width, dtype=dtype)

  def _project(self, x, positions):
    qkv = self.qkv(self.attention_norm(x))
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    if self.config.transformer_position == "rope":
      q, k = rope(q, positions), rope(k, positions)
    return q, k, v

  def _bias(self, query_positions, key_positions):
    """ALiBi's [batch, heads, queries, keys] bias (None for RoPE)."""
    if self.config.transformer_position != "alibi":
      return None
    distance = query_positions[:, :, None] - key_positions[:, None, :]
    slopes = alibi_slopes(self.config.transformer_heads)
    bias = -slopes[None, :, None, None] * distance[:, None].astype(jnp.float32)
    return bias.astype(self.config.compute_dtype)

  def _mlp_and_out(self, x, attended, masks):
    attended = self.out(attended)
    if masks is not None:
      attended = attended * masks[0]
    x = x + attended.astype(x.dtype)
    hidden = self.down(nn.gelu(self.up(self.mlp_norm(x))))
    if masks is not None:
      hidden = hidden * masks[1]
    return x + hidden.astype(x.dtype)

  def __call__(self, x, positions, masks=None):
    """A whole window: x [batch, time, width], causal."""
    q, k, v = self._project(x, positions)
    attended = jax.nn.dot_product_attention(
      q, k, v, bias=self._bias(positions, positions), is_causal=True
    )
    return self._mlp_and_out(x, attended, masks), (k, v)

  def step(self, x, position, cache):
    """One event at `position` (int [batch]) with the cached keys and
    values (each [batch, heads, length, head_dim]); the updated cache.

    The cache is kept in the layout the two products read (heads before
    positions) and attended with einsums: `jax.nn.dot_product_attention`
    takes [batch, length, heads, head_dim] and would transpose the whole
    cache at every event (measured: BENCHMARKS.md, issue 27)."""
    q, k, v = self._project(x, position[:, None])
    index = position[0]
    keys = jax.lax.dynamic_update_slice_in_dim(
      cache[0], k.transpose(0, 2, 1, 3), index, axis=2
    )
    values = jax.lax.dynamic_update_slice_in_dim(
      cache[1], v.transpose(0, 2, 1, 3), index, axis=2
    )
    length = keys.shape[2]
    scale = 1.0 / float(q.shape[-1]) ** 0.5
    scores = jnp.einsum(
      "bnh,bnlh->bnl", q[:, 0], keys, preferred_element_type=jnp.float32
    )
    scores = scores * scale
    key_positions = jnp.broadcast_to(jnp.arange(length), (x.shape[0], length))
    bias = self._bias(position[:, None], key_positions)
    if bias is not None:
      scores = scores + bias[:, :, 0].astype(jnp.float32)
    valid = key_positions <= position[:, None]
    scores = jnp.where(valid[:, None, :], scores, _NEG)
    probs = jax.nn.softmax(scores, axis=-1).astype(values.dtype)
    attended = jnp.einsum("bnl,bnlh->bnh", probs, values)[:, None]
    return self._mlp_and_out(x, attended, None), (keys, values)


class MelodyTransformer(model_lib.MelodyModel):
  """Embeddings and conditions, a causal Transformer, two heads."""

  def setup(self):
    self.setup_streams()
    config = self.config
    self.project = nn.Dense(
      config.transformer_width, dtype=config.compute_dtype
    )
    self.blocks = [
      Block(config, name=f"block_{i}") for i in range(config.transformer_layers)
    ]
    self.final_norm = nn.LayerNorm()

  def _masks(self, dropout, time: int):
    """Per block (attention, MLP) dropout masks, or None."""
    rate = self.config.transformer_dropout
    if dropout is None or rate == 0.0:
      return [None] * len(self.blocks)
    key, rows = dropout
    shape = (time, self.config.transformer_width)
    return [
      tuple(
        row_dropout_mask(jax.random.fold_in(key, 2 * i + j), rows, shape, rate)
        for j in range(2)
      )
      for i in range(len(self.blocks))
    ]

  def __call__(
    self,
    pitch: jax.Array,
    duration: jax.Array,
    *,
    conditions: Mapping[str, jax.Array] | None = None,
    channel_mask: jax.Array | None = None,
    carry: Any = None,
    last_only: bool = False,
    target_pitch: jax.Array | None = None,
    dropout: tuple[jax.Array, jax.Array] | None = None,
    hidden: bool = False,
  ):
    """`MelodyModel.__call__`'s logits or `hidden` states (`carry` must be
    None: a window starts the song's context afresh); `dropout` is (the
    step's key, the rows' global indices) in training. The carry returned
    is None."""
    if carry is not None:
      raise ValueError("the Transformer takes no initial carry")
    x = self.project(self._features(pitch, duration, conditions, channel_mask))
    batch, time = pitch.shape
    positions = jnp.broadcast_to(jnp.arange(time), (batch, time))
    masks = self._masks(dropout, time)
    for block, block_masks in zip(self.blocks, masks, strict=True):
      x, _ = block(x, positions, block_masks)
    h = self.final_norm(x)
    if last_only:
      h = h[:, -1:]
    if hidden:
      return h, None, None
    pitch_logits, duration_logits = self._heads(h, target_pitch)
    return pitch_logits, duration_logits, None

  def step(
    self,
    pitch: jax.Array,
    duration: jax.Array,
    carry: Carry,
    input_table: jax.Array | None = None,
    conditions: Mapping[str, jax.Array] | None = None,
  ):
    """`MelodyModel.step` with the key/value cache as the carry."""
    if conditions is not None:
      conditions = {name: ids[:, None] for name, ids in conditions.items()}
    features = self._features(pitch[:, None], duration[:, None], conditions)
    x = self.project(features)
    position = carry["position"]
    caches = []
    for block, cache in zip(self.blocks, carry["caches"], strict=True):
      x, cache = block.step(x, position, cache)
      caches.append(cache)
    pitch_logits, duration_logits = self._heads(self.final_norm(x)[:, 0])
    return (
      pitch_logits,
      duration_logits,
      {"position": position + 1, "caches": tuple(caches)},
    )

  def initial_carry(self, batch_size: int, length: int = 1) -> Carry:
    config = self.config
    heads = config.transformer_heads
    shape = (batch_size, heads, length, config.transformer_width // heads)
    dtype = config.compute_dtype
    zeros = jnp.zeros(shape, dtype)
    return {
      "position": jnp.zeros(batch_size, jnp.int32),
      "caches": tuple((zeros, zeros) for _ in range(config.transformer_layers)),
    }

  def input_table(self) -> jax.Array:
    raise NotImplementedError("the Transformer has no input table")


def cache_bytes(config: ModelConfig, batch: int, length: int) -> int:
  """The key/value cache of a sampler call, in bytes."""
  itemsize = jnp.dtype(config.compute_dtype).itemsize
  per_layer = 2 * batch * length * config.transformer_width * itemsize
  return per_layer * config.transformer_layers


def attention_flops(config: ModelConfig, time: int) -> float:
  """Forward FLOPs of one window's attention scores and mixing."""
  layers, width = config.transformer_layers, config.transformer_width
  return 4.0 * layers * time * time * width
