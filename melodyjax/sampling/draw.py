"""Drawing one event from the heads' logits: temperature, top-k, top-p,
the constraints' masks, Gumbel noise, the joint of a `duration_given_pitch`
model. Used inside the sampler's scan (`sampler`), one step at a time.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from melodyjax.model import config as model_config_lib
from melodyjax.music import tokens

_NEG = -1e30
# Every note's Gumbel noise is drawn before the scan up to this size (64
# melodies of 256 notes on ESAC: 6 MB), else per note inside it.
MAX_NOISE_BYTES = 64 << 20


class Settings(NamedTuple):
  """Traced sampling controls (change them freely: no recompilation).

  Attributes:
    temperature: [2] (pitch, duration) softmax temperatures, > 0.
    top_k: [2] int keep the k most likely tokens per stream (0: all).
    top_p: [2] keep the smallest set with this much probability (1: all).
    short_term: [2, SHORT_TERM_BANDS] the short-term model's weight in each
      head's distribution per band of its relative entropy (`sampler`'s
      `short_term_order`, `model.memory.mix_short_term`; None: no
      short-term model, and nothing computed for it). `short_term_bands`
      makes them from one weight per stream.

  For a `duration_given_pitch` model the pitch's settings act on the
  pitch's marginal (of the tempered joint, restricted to the allowed
  pairs) and the duration's on the duration's distribution given the drawn
  pitch (`choose_joint`).
  """

  temperature: jax.Array
  top_k: jax.Array
  top_p: jax.Array
  short_term: jax.Array | None = None


def make_settings(
  temperature=1.0, top_k=0, top_p=1.0, short_term=None
) -> Settings:
  """Settings from scalars or (pitch, duration) pairs."""
  pair = lambda x, dtype: jnp.broadcast_to(jnp.asarray(x, dtype), (2,))  # noqa: E731
  return Settings(
    pair(temperature, jnp.float32),
    pair(top_k, jnp.int32),
    pair(top_p, jnp.float32),
    None
    if short_term is None
    else short_term_bands(pair(short_term, jnp.float32)),
  )


# The short-term model's weight counts where its relative entropy is below
# one half (it has heard the context before and agrees on what followed),
# none elsewhere: mixing a flat short-term model in only blurs the
# network's distribution (on every corpus of BENCHMARKS.md "The memory of
# the song", validation gives the two flattest bands weights of 0.05 or
# less: `python -m benchmarks.bench_song_memory`).
SHORT_TERM_BANDS = 4


def short_term_bands(weights: jax.Array) -> jax.Array:
  """[..., 2] weights per stream -> [..., 2, SHORT_TERM_BANDS] per band: the
  weight in the confident half of the bands, 0 in the other."""
  confident = jnp.arange(SHORT_TERM_BANDS) < SHORT_TERM_BANDS // 2
  return jnp.where(confident, weights[..., None], 0.0)


def filter_logits(
  logits: jax.Array, temperature: jax.Array, top_k: jax.Array, top_p: jax.Array
) -> jax.Array:
  """Temperature, then top-k, then nucleus (top-p) filtering.

  Args:
    logits: [batch, vocab] float32.
    temperature: scalar > 0.
    top_k: scalar int; 0 keeps every token.
    top_p: scalar in (0, 1]; 1 keeps every token.

  Returns:
    [batch, vocab] logits with filtered-out tokens at -1e30.
  """
  logits = logits / temperature

  def apply_filters(logits):
    # Ranks from pairwise comparisons instead of a sort: for a vocabulary of
    # ~50 tokens, [batch, vocab, vocab] compares are far cheaper on XLA:CPU
    # than two sorts per stream per note. Ties rank by token id.
    ids = jnp.arange(logits.shape[-1])
    ahead = (logits[:, None, :] > logits[:, :, None]) | (
      (logits[:, None, :] == logits[:, :, None])
      & (ids[None, None, :] < ids[None, :, None])
    )  # ahead[b, i, j]: token j ranks before token i
    rank = jnp.sum(ahead, axis=-1)
    keep = (top_k <= 0) | (rank < top_k)
    probs = jax.nn.softmax(jnp.where(keep, logits, _NEG), axis=-1)
    # Nucleus: keep a token if the mass ranked before it is < top_p.
    mass_before = jnp.einsum("bij,bj->bi", ahead.astype(probs.dtype), probs)
    keep = keep & (mass_before < top_p)
    return jnp.where(keep, logits, _NEG)

  return apply_filters(logits)


def _reserved_mask(vocab_size: int, allow_eos: bool) -> jax.Array:
  banned = [tokens.PAD_ID, tokens.BOS_ID, tokens.UNK_ID]
  if not allow_eos:
    banned.append(tokens.EOS_ID)
  return jnp.zeros(vocab_size, bool).at[jnp.array(banned)].set(True)


def _gumbel(key, t, batch: int, vocab: int) -> jax.Array:
  """Note t's Gumbel noise for both streams, [batch, vocab]."""
  return jax.random.gumbel(jax.random.fold_in(key, t), (batch, vocab))


def noise_source(key, steps: int, batch: int, vocab: int):
  """(scanned noise or None, per-step noise function).

  Threefry on XLA:CPU runs as a loop of its own, about a quarter of a note's
  time for one melody; drawing every note's noise in one batched call before
  the scan removes it from the loop. The values are the same either way
  (note t always uses `fold_in(key, t)`); above `MAX_NOISE_BYTES` the noise
  is drawn per note instead.
  """
  draw = functools.partial(_gumbel, key, batch=batch, vocab=vocab)
  if 4 * steps * batch * vocab > MAX_NOISE_BYTES:
    return None, lambda t, noise: draw(t)
  return jax.vmap(draw)(jnp.arange(steps)), lambda t, noise: noise


def _filtered(logits, settings: Settings, stream: int):
  """Top-k and nucleus filtering of one stream's tempered logits."""
  needed = (settings.top_k[stream] > 0) | (settings.top_p[stream] < 1.0)
  return jax.lax.cond(
    needed,
    lambda x: filter_logits(
      x, 1.0, settings.top_k[stream], settings.top_p[stream]
    ),
    lambda x: x,
    logits,
  )


def choose_independent(
  t, noise, pitch_logits, duration_logits, settings: Settings, rest_id, rules
):
  """Samples the event after position t: (pitch, duration) ids [batch] and
  its log-probability [batch] at the temperature, unfiltered.

  `noise` is the note's Gumbel noise for both streams, [batch, pitch_vocab
  + duration_vocab]. `rules` is None or (duration ban [batch,
  duration_vocab], pitch ban of a duration ids [batch] -> [batch,
  pitch_vocab]): the request's constraints (`constraints`). The duration
  is drawn first, so that the pitch can depend on whether it ends the
  melody; both heads read the same context.
  """
  banned = _pitch_ban(pitch_logits.shape[-1], t, rest_id)
  pitch_logits = jnp.where(banned, _NEG, pitch_logits)
  duration_logits = jnp.where(
    _reserved_mask(duration_logits.shape[-1], False), _NEG, duration_logits
  )
  pitch_logits = pitch_logits / settings.temperature[0]
  duration_logits = duration_logits / settings.temperature[1]
  vocab = pitch_logits.shape[-1]
  constrained = duration_logits
  if rules is not None:
    constrained = jnp.where(rules[0], _NEG, duration_logits)
  # Gumbel-max for both streams from one draw (as jax.random.categorical).
  duration = jnp.argmax(
    _filtered(constrained, settings, 1) + noise[:, vocab:], axis=-1
  )
  constrained = pitch_logits
  if rules is not None:
    constrained = jnp.where(rules[1](duration), _NEG, pitch_logits)
  pitch = jnp.argmax(
    _filtered(constrained, settings, 0) + noise[:, :vocab], axis=-1
  )
  duration = jnp.where(pitch == tokens.EOS_ID, tokens.EOS_ID, duration)
  log_prob = _log_prob(pitch_logits, pitch) + jnp.where(
    pitch == tokens.EOS_ID, 0.0, _log_prob(duration_logits, duration)
  )
  return pitch.astype(jnp.int32), duration.astype(jnp.int32), log_prob


def choose_joint(
  t, noise, pitch_logits, duration_logits, settings: Settings, rest_id, rules
):
  """`_choose` for a `duration_given_pitch` model: `duration_logits` are
  [batch, pitch_vocab, duration_vocab], given every pitch.

  The tempered joint q(p, d) = softmax(pitch / T_pitch)[p] *
  softmax(duration[p] / T_duration)[d] is restricted to the pairs the
  request allows (`constraints.joint_ban`: both bans at once) and drawn
  exactly: the pitch from the restricted joint's marginal, then the
  duration from its conditional given that pitch, each with its stream's
  top-k and top-p applied to that distribution and Gumbel noise as in
  `_choose`. Eos has no duration: its marginal is its pitch probability.
  The log-probability is log q(p) + log q(d | p) (at eos, log q(eos)),
  before the bans, top-k and top-p.
  """
  banned = _pitch_ban(pitch_logits.shape[-1], t, rest_id)
  pitch_logits = jnp.where(banned, _NEG, pitch_logits) / settings.temperature[0]
  duration_logits = jnp.where(
    _reserved_mask(duration_logits.shape[-1], False), _NEG, duration_logits
  )
  conditional = jax.nn.log_softmax(
    duration_logits / settings.temperature[1], axis=-1
  )  # [batch, pitch, duration]
  vocab = pitch_logits.shape[-1]
  allowed, eos_mass = conditional, jnp.zeros(conditional.shape[0])
  if rules is not None:
    ban = rules[2]()
    allowed = jnp.where(ban, _NEG, conditional)
    eos_mass = jnp.where(ban[:, tokens.EOS_ID, 0], _NEG, 0.0)
  # Eos has no duration: its whole probability, unless it is banned.
  mass = jax.nn.logsumexp(allowed, axis=-1).at[:, tokens.EOS_ID].set(eos_mass)
  marginal = jax.nn.log_softmax(pitch_logits, axis=-1) + mass
  pitch = jnp.argmax(
    _filtered(marginal, settings, 0) + noise[:, :vocab], axis=-1
  )
  rows = jnp.arange(pitch.shape[0])
  duration = jnp.argmax(
    _filtered(allowed[rows, pitch], settings, 1) + noise[:, vocab:], axis=-1
  )
  duration = jnp.where(pitch == tokens.EOS_ID, tokens.EOS_ID, duration)
  log_prob = _log_prob(pitch_logits, pitch) + jnp.where(
    pitch == tokens.EOS_ID, 0.0, conditional[rows, pitch, duration]
  )
  return pitch.astype(jnp.int32), duration.astype(jnp.int32), log_prob


def _pitch_ban(vocab: int, t, rest_id: int) -> jax.Array:
  """Pitch ids never drawn after position t: the reserved ones, and eos and
  the rest as the first event (a song starts with a note)."""
  banned = _reserved_mask(vocab, True)
  banned = banned.at[tokens.EOS_ID].set(t == 0)
  if rest_id >= 0:
    banned = banned.at[rest_id].set(t == 0)
  return banned


def _log_prob(logits, ids):
  return jnp.take_along_axis(
    jax.nn.log_softmax(logits, axis=-1), ids[:, None], axis=-1
  )[:, 0]


def chooser(config: model_config_lib.ModelConfig):
  """The event sampler of a model's heads: `_choose` for independent heads
  (the reference model's), `choose_joint` for `duration_given_pitch`."""
  return choose_joint if config.duration_given_pitch else choose_independent
