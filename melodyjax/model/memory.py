"""Memory of the song being read: what the model adds to its own softmax (JAX).

The network knows the corpus in its weights; these functions give it the
song it is reading, from that song's own earlier events:

- `ppm`: a short-term model, PPM with escape method C and interpolated
  blending (as IDyOM's short-term model, and exactly
  `evaluation.idyom.ppm_distributions`), computed from a buffer of the
  song's events so far, so that the sampler's scan and the scorer share it.
- `combine`: IDyOM's entropy-weighted geometric combination of two
  distributions (exactly `evaluation.idyom.combine`).
- `mix_short_term`: the linear mixture of the model with the short-term
  model, its weight per band of the short-term model's entropy (the
  short-term model never hears a song end: the model's own eos is kept).
- `cache`: Grave et al.'s neural cache (2017): a distribution over the
  tokens that followed hidden states like the current one earlier in the
  song, mixed linearly with the model's.

Every function works on one row; `jax.vmap` gives batches.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from melodyjax.music import tokens

_FLOOR = 1e-12


def uniform(vocab_size: int) -> jax.Array:
  """The order -1 distribution: uniform over every id but pad and bos."""
  ids = jnp.arange(vocab_size)
  return jnp.where(ids >= 2, 1.0 / (vocab_size - 2), 0.0)


def ppm(
  history: jax.Array, length: jax.Array, order: int, vocab_size: int
) -> jax.Array:
  """PPM-C distribution of the next token after `history[:length]`.

  Args:
    history: int [capacity] the song's tokens (no bos); only the first
      `length` are read.
    length: int scalar, the tokens heard so far (0: none).
    order: longest context is order - 1 tokens; order >= 1 (static).
    vocab_size: the stream's vocabulary, reserved ids included (static).

  Returns:
    float32 [vocab_size], summing to 1 (0 for pad and bos).
  """
  capacity = history.shape[0]
  positions = jnp.arange(capacity)
  back = jnp.arange(order)[:, None]  # n tokens back, one row per order
  # target j's context matches the current one up to n tokens back: its
  # n-th token back equals the current n-th (row 0: every heard target)
  current = history[jnp.maximum(length - back, 0)]
  same = (history[jnp.maximum(positions - back, 0)] == current) & (
    (positions >= back) & (back <= length)
  )
  same = same | (back == 0)
  match = jnp.cumprod(same, axis=0) * (positions < length)
  counts = match.astype(jnp.float32) @ jax.nn.one_hot(
    history, vocab_size, dtype=jnp.float32
  )  # [order, vocab]
  totals = jnp.sum(counts, axis=-1)
  distinct = jnp.sum(counts > 0, axis=-1)
  p = uniform(vocab_size)
  for n in range(order):
    blended = (counts[n] + distinct[n] * p) / jnp.maximum(
      totals[n] + distinct[n], 1.0
    )
    p = jnp.where(totals[n] > 0, blended, p)
  return p


def song_ppm(song: jax.Array, order: int, vocab_size: int) -> jax.Array:
  """`ppm` before every position of `song` and after its last token:
  float32 [len(song) + 1, vocab_size]."""
  padded = jnp.concatenate([song, jnp.zeros(1, song.dtype)])
  lengths = jnp.arange(song.shape[0] + 1)
  return jax.vmap(lambda n: ppm(padded, n, order, vocab_size))(lengths)


def relative_entropy(p: jax.Array) -> jax.Array:
  """Entropy of `p` [..., vocab] over the uniform's on the predictable ids,
  in (0, 1]."""
  q = jnp.maximum(p[..., 2:], _FLOOR)
  h = -jnp.sum(q * jnp.log2(q), axis=-1)
  return jnp.maximum(h / jnp.log2(p.shape[-1] - 2), 1e-6)


def combine(log_p: jax.Array, p_other: jax.Array, bias: jax.Array) -> jax.Array:
  """IDyOM's combination of the model's `log_p` [..., vocab] (log-softmax)
  and another distribution `p_other` [..., vocab] (probabilities), the
  weights of each H_rel ** -bias; returns log-probabilities (pad and bos
  -inf)."""
  p_model = jnp.exp(log_p)
  w_model = relative_entropy(p_model) ** -bias
  w_other = relative_entropy(p_other) ** -bias
  total = w_model + w_other
  mixed = (w_model / total)[..., None] * jnp.log(
    jnp.maximum(p_model, _FLOOR)
  ) + (w_other / total)[..., None] * jnp.log(jnp.maximum(p_other, _FLOOR))
  reserved = jnp.arange(log_p.shape[-1]) < 2
  mixed = jnp.where(reserved, -jnp.inf, mixed)
  return jax.nn.log_softmax(mixed, axis=-1)


def mix_short_term(
  p: jax.Array, p_short: jax.Array, weights: jax.Array
) -> jax.Array:
  """(1 - w) p + w q: the model's `p` [..., vocab] with the short-term
  model's `p_short`, both probabilities.

  q is `p_short` with its eos mass given back to the model: q(eos) =
  p(eos), the other ids `p_short` renormalised over (1 - p(eos)). The
  short-term model has heard no song end (the song is still going), so its
  eos is only its escape to the uniform. The weight w is `weights[k]`, k
  the band of `p_short`'s relative entropy in `len(weights)` equal bands of
  (0, 1]: a confident short-term model (late in a repetitive song) gets the
  weight of the first band.
  """
  p, p_short = jnp.asarray(p), jnp.asarray(p_short)
  eos = tokens.EOS_ID
  p_eos = p[..., eos : eos + 1]
  rest = p_short.at[..., eos].set(0.0)
  rest = rest / jnp.maximum(jnp.sum(rest, axis=-1, keepdims=True), _FLOOR)
  q = (rest * (1.0 - p_eos)).at[..., eos].set(p_eos[..., 0])
  bands = weights.shape[0]
  band = jnp.clip(
    jnp.floor(relative_entropy(p_short) * bands).astype(jnp.int32),
    0,
    bands - 1,
  )
  w = weights[band][..., None]
  return (1.0 - w) * p + w * q


def cache(
  query: jax.Array,
  keys: jax.Array,
  next_ids: jax.Array,
  valid: jax.Array,
  theta: jax.Array,
  vocab_size: int,
) -> tuple[jax.Array, jax.Array]:
  """The neural cache's distribution for one query.

  Args:
    query: float [features], the hidden state now.
    keys: float [capacity, features] earlier hidden states of the song.
    next_ids: int [capacity] the token that followed each key.
    valid: bool [capacity] which keys are heard.
    theta: the sharpness of the match (scalar).
    vocab_size: static.

  Returns:
    (float32 [vocab_size] probabilities, whether any key was valid).
  """
  scores = theta * (keys @ query)
  scores = jnp.where(valid, scores, -jnp.inf)
  weights = jax.nn.softmax(jnp.where(jnp.any(valid), scores, 0.0))
  weights = jnp.where(valid, weights, 0.0)
  p = weights @ jax.nn.one_hot(next_ids, vocab_size, dtype=jnp.float32)
  return p, jnp.any(valid)


def mix_cache(
  log_p: jax.Array, p_cache: jax.Array, any_key: jax.Array, weight
) -> jax.Array:
  """log((1 - weight) p + weight p_cache), the model's alone before the
  song has a key."""
  weight = jnp.where(any_key, weight, 0.0)[..., None]
  mixed = (1.0 - weight) * jnp.exp(log_p) + weight * p_cache
  return jnp.log(jnp.maximum(mixed, 1e-30))


def song_cache(
  hidden: jax.Array, next_ids: jax.Array, theta, vocab_size: int
) -> tuple[jax.Array, jax.Array]:
  """The cache before each position of a song: position t reads the keys
  of positions < t (each key's next token is the target of its position).

  Args:
    hidden: float [time, features] the hidden states, position t's the
      one that predicts `next_ids[t]`.
    next_ids: int [time].

  Returns:
    (float32 [time, vocab_size], bool [time] whether t has a key).
  """
  time = hidden.shape[0]
  positions = jnp.arange(time)
  return jax.vmap(
    lambda t: cache(
      hidden[t], hidden, next_ids, positions < t, theta, vocab_size
    )
  )(positions)
