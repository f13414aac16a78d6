"""The multi-stream LSTM melody model (Flax Linen). Knows nothing about MIDI.

Pitch and duration ids are embedded separately and concatenated, with the
embeddings of the conditions the config asks for (`condition_metre`: the
bar position and time signature of the next event's onset;
`condition_mode`; `condition_style`: song-level labels, each an id per
position; all off by default, the reference model); spatial
dropout (whole feature channels, one mask per sequence) and layer
normalization follow; a stack of LSTMs runs over time; a shared Dense layer
with ReLU feeds two heads that give the logits of the next pitch and of the
next duration. By default both heads read the same context and are sampled
independently (the reference model). With `duration_given_pitch` the duration
head also reads the pitch of the event it predicts: duration logits =
Dense_D(relu(Dense_H(z) + E(pitch))), z the shared layer's output and E an
embedding of the event's pitch, so log P(event) = log P(pitch | context) +
log P(duration | context, pitch). Training and scoring feed the true pitch
(`target_pitch`); a sampler asks for the duration logits given every pitch
at once ([..., pitch_vocab, duration_vocab]) and draws from the joint.

The LSTM stack has one small interface: `LSTMStack.__call__` maps a whole
sequence to outputs and the final carry (a `lax.scan` over time, no Python
loop over notes), `LSTMStack.step` maps one step to one step. Both run the
same cell, so training and sampling cannot drift apart, and a faster
implementation can replace the scan behind the same two calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from melodyjax.model import lstm
from melodyjax.model.config import ModelConfig


class MelodyModel(nn.Module):
  """Embeddings, spatial dropout, layer norm, LSTM stack, two heads."""

  config: ModelConfig

  def setup(self):
    self.setup_streams()
    config = self.config
    self.lstm = lstm.LSTMStack(
      config.lstm_sizes,
      config.input_dim,
      config.compute_dtype,
      config.lstm_impl,
    )

  def setup_streams(self):
    """The embeddings, the input norm and the heads (the parts every
    architecture shares)."""
    config = self.config
    self.pitch_embed = nn.Embed(config.pitch_vocab_size, config.pitch_embed_dim)
    self.duration_embed = nn.Embed(
      config.duration_vocab_size, config.duration_embed_dim
    )
    self.condition_embeds = {
      name: nn.Embed(ids, width, name=f"{name}_embed")
      for name, (ids, width) in config.embeddings().items()
    }
    self.norm = nn.LayerNorm()
    self.dense = nn.Dense(config.dense_size, dtype=config.compute_dtype)
    self.pitch_head = nn.Dense(
      config.pitch_vocab_size, dtype=config.compute_dtype
    )
    self.duration_head = nn.Dense(
      config.duration_vocab_size, dtype=config.compute_dtype
    )
    if config.duration_given_pitch:
      self.duration_hidden = nn.Dense(
        config.dense_size, dtype=config.compute_dtype
      )
      self.duration_pitch_embed = nn.Embed(
        config.pitch_vocab_size, config.dense_size
      )

  def _features(self, pitch, duration, conditions=None, channel_mask=None):
    parts = [self.pitch_embed(pitch), self.duration_embed(duration)]
    for name, embed in self.condition_embeds.items():
      if conditions is None or name not in conditions:
        raise ValueError(f"the model is conditioned on {name}: pass it")
      ids = conditions[name]
      if name == "bar_position":
        ids = jnp.clip(ids, -1, self.config.max_bar_steps - 1) + 1
      parts.append(embed(ids))
    x = jnp.concatenate(parts, axis=-1)
    if channel_mask is not None:
      x = x * jnp.expand_dims(channel_mask, axis=tuple(range(1, x.ndim - 1)))
    return self.norm(x)

  def _heads(self, h, target_pitch=None):
    """(pitch logits [..., pitch_vocab], duration logits) of LSTM outputs
    `h` [..., lstm_sizes[-1]].

    The duration logits are [..., duration_vocab] for independent heads or
    given `target_pitch` (int [...], the pitch of the predicted event);
    [..., pitch_vocab, duration_vocab], given every pitch, when the model
    has `duration_given_pitch` and no `target_pitch` is passed.
    """
    h = nn.relu(self.dense(h))
    pitch_logits = self.pitch_head(h).astype(jnp.float32)
    if not self.config.duration_given_pitch:
      return pitch_logits, self.duration_head(h).astype(jnp.float32)
    hidden = self.duration_hidden(h)
    if target_pitch is None:
      pitch_embed = self.duration_pitch_embed.embedding
      hidden = hidden[..., None, :] + pitch_embed.astype(hidden.dtype)
    else:
      hidden = hidden + self.duration_pitch_embed(target_pitch).astype(
        hidden.dtype
      )
    duration_logits = self.duration_head(nn.relu(hidden))
    return pitch_logits, duration_logits.astype(jnp.float32)

  def __call__(
    self,
    pitch: jax.Array,
    duration: jax.Array,
    *,
    conditions: Mapping[str, jax.Array] | None = None,
    channel_mask: jax.Array | None = None,
    carry: lstm.Carry | None = None,
    last_only: bool = False,
    target_pitch: jax.Array | None = None,
    hidden: bool = False,
  ) -> tuple[jax.Array, jax.Array, lstm.Carry]:
    """Logits of the next event at every position (or only the last).

    Args:
      pitch: int [batch, time] pitch ids.
      duration: int [batch, time] duration ids.
      conditions: {name: int [batch, time]} for `config.conditions`.
      channel_mask: [batch, input_dim] spatial dropout mask (training;
        from `spatial_dropout_mask`), or None.
      carry: initial LSTM state (default: zeros).
      last_only: give logits for the last position only (time = 1).
      target_pitch: int [batch, time] (time 1 with `last_only`) the pitch
        of each predicted event, which a `duration_given_pitch` model's
        duration head reads (teacher forcing); ignored by independent
        heads.
      hidden: return (the heads' input [batch, time, lstm_sizes[-1]],
        None, carry) instead: what the song's memory (`model.memory`)
        reads, and what `_heads` maps to logits.

    Returns:
      (pitch logits [batch, time, pitch_vocab], duration logits
      [batch, time, duration_vocab], final carry); logits are float32. A
      `duration_given_pitch` model without `target_pitch` gives duration
      logits given every pitch, [batch, time, pitch_vocab,
      duration_vocab].
    """
    x = self._features(pitch, duration, conditions, channel_mask)
    h, carry = self.lstm(x, carry)
    if last_only:
      h = h[:, -1:]
    if hidden:
      return h, None, carry
    pitch_logits, duration_logits = self._heads(h, target_pitch)
    return pitch_logits, duration_logits, carry

  def input_table(self) -> jax.Array:
    """The bottom LSTM layer's input projection of every event, once.

    Embeddings, layer norm and the first input matmul depend on the event
    alone, so a sampler can look a step's projection up instead of
    computing it: one gather instead of two embeddings, a layer norm and a
    [batch, input_dim] @ [input_dim, 4 * hidden] matmul per note.

    Returns:
      [pitch_vocab, duration_vocab, 4 * lstm_sizes[0]].
    """
    config = self.config
    pitch, duration = jnp.meshgrid(
      jnp.arange(config.pitch_vocab_size),
      jnp.arange(config.duration_vocab_size),
      indexing="ij",
    )
    return self.lstm.input_projection(self._features(pitch, duration))

  def step(
    self,
    pitch: jax.Array,
    duration: jax.Array,
    carry: lstm.Carry,
    input_table: jax.Array | None = None,
    conditions: Mapping[str, jax.Array] | None = None,
  ) -> tuple[jax.Array, jax.Array, lstm.Carry]:
    """One event in, logits of the next one out.

    Args:
      pitch: int [batch] pitch ids.
      duration: int [batch] duration ids.
      carry: LSTM state.
      input_table: `input_table()`, to look the input projection up (an
        unconditioned model only).
      conditions: {name: int [batch]} for `config.conditions`.

    Returns:
      (pitch logits [batch, pitch_vocab], duration logits
      [batch, duration_vocab], new carry); a `duration_given_pitch` model's
      duration logits are given every pitch, [batch, pitch_vocab,
      duration_vocab].
    """
    if input_table is None:
      features = self._features(pitch, duration, conditions)
      h, carry = self.lstm.step(features, carry)
    else:
      h, carry = self.lstm.step(None, carry, input_table[pitch, duration])
    pitch_logits, duration_logits = self._heads(h)
    return pitch_logits, duration_logits, carry

  def initial_carry(self, batch_size: int, length: int = 1) -> lstm.Carry:
    """The zero state of `batch_size` rows (`length`, the events a sampler
    call holds, matters to a Transformer's cache only)."""
    return self.lstm.initial_carry(batch_size)


def spatial_dropout_mask(
  key: jax.Array, rows: jax.Array, dim: int, rate: float
) -> jax.Array:
  """Keras SpatialDropout1D: one channel mask per sequence, inverted scaling.

  Each row's mask comes from `key` folded with the row's global index, so a
  batch gets the same masks however it is split across devices.

  Args:
    key: the step's dropout key.
    rows: int [batch] global example indices of the batch rows.
    dim: feature channels.
    rate: share of channels dropped.

  Returns:
    [batch, dim] float32 mask of zeros and 1 / (1 - rate).
  """
  if rate == 0.0:
    return jnp.ones((rows.shape[0], dim), jnp.float32)
  keep = jax.vmap(
    lambda row: jax.random.bernoulli(
      jax.random.fold_in(key, row), 1.0 - rate, (dim,)
    )
  )(rows)
  return keep.astype(jnp.float32) / (1.0 - rate)


def init_params(
  model: MelodyModel, init_key: jax.Array, seq_len: int = 1
) -> dict[str, Any]:
  """Fresh parameters of `model` (float32), from `init_key`."""
  dummy = jnp.zeros((1, seq_len), jnp.int32)
  conditions = {name: dummy for name in model.config.conditions}
  return model.init(init_key, dummy, dummy, conditions=conditions)["params"]


def abstract_params(model: MelodyModel) -> dict[str, Any]:
  """The parameters' shapes and dtypes (`jax.ShapeDtypeStruct`s), for a
  checkpoint restore; computes nothing."""
  return jax.eval_shape(lambda key: init_params(model, key), jax.random.key(0))
