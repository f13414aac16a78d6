"""The jitted sampler: a batch of melodies from a trained model, as token ids.

`sample` is one `lax.scan` over a fixed-length buffer that carries the LSTM
state and feeds one event per step, so each note costs the same. Position 0
of the buffer is bos; the next `primer_lengths[b]` positions are the primer
of melody b, fed unchanged (teacher-forced under a mask); after it, each
step samples the next event. The buffer length is `max_primer_notes +
num_notes`, so one compilation serves every primer up to that length, and
temperatures, top-k, top-p, primer, key and the request's controls
(`constraints.Controls`: conditions, bars, ending) are traced values:
changing them never recompiles. A beam search (`search`) runs in the same
scan over `beam_size * branch_factor` rows per melody, compiled once per
shape (Magenta's beam search): each row samples its own events, and every
`controls.steps_per_iteration` sampled events each melody keeps its
`beam_size` likeliest rows (the log-likelihood at the temperature, before
top-k, top-p and the constraints' masks), each continued by
`branch_factor` copies; at the end the likeliest row is returned.
Best-of-N is `beam_size=1, branch_factor=N, steps_per_iteration=0`.

Independent heads (the reference model's) read the same context (the events
so far) and are sampled independently (the duration is drawn first, so that a
constraint on the pitch can depend on whether the event ends the melody).
A `duration_given_pitch` model gives the duration logits given every pitch,
so each step draws from the exact joint of (pitch, duration) restricted to
the pairs the constraints allow (`_choose_joint`: the pitch from the
restricted marginal, then the duration given it; temperature, top-k and
top-p of the pitch act on that marginal, those of the duration on the
conditional). The pitch head
decides where a song ends: when it samples
eos, the event is eos in both streams, and the melody stops there (eos is
not allowed as the first event). Other reserved tokens are never sampled.

`sample_window` reproduces the reference generator's sampling: for each new
note it re-reads the last `seq_len` events from a zero state (cost grows with
seq_len per note). It exists for comparison with models trained with the
'last' objective.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from melodyjax.model import config as model_config_lib
from melodyjax.model import memory
from melodyjax.model import model as model_lib
from melodyjax.music import tokens
from melodyjax.sampling import constraints, draw, search

# The sampler looks each note's bottom-layer input projection up in a table
# of every (pitch, duration) pair when the table is at most this large
# (ESAC: 49 x 42 pairs x 1,024 floats = 8.4 MB).
MAX_INPUT_TABLE_BYTES = 64 << 20


def use_input_table(config: model_config_lib.ModelConfig, lookups: int) -> bool:
  """Whether a sampler call of `lookups` events builds the input table.

  The table costs as much as projecting one event per (pitch, duration)
  pair, so it pays when a call has more events than pairs (64 melodies of
  256 notes on ESAC: 16,448 against 2,058; one melody: 257, so no).
  """
  if config.arch != "lstm":
    return False
  pairs = config.pitch_vocab_size * config.duration_vocab_size
  table_bytes = 4 * pairs * 4 * config.lstm_sizes[0]
  return table_bytes <= MAX_INPUT_TABLE_BYTES and lookups > pairs


def _start(model, params, primer_pitch, primer_duration, key, num_notes):
  """What both samplers start from: variables, (pitch buffer, duration
  buffer, done), and every note's noise (see `_noise_source`)."""
  variables = params if "params" in params else {"params": params}
  pitch_buffer, duration_buffer = _buffers(
    primer_pitch, primer_duration, num_notes
  )
  batch, length = pitch_buffer.shape
  vocab = model.config.pitch_vocab_size + model.config.duration_vocab_size
  noise, note_noise = draw.noise_source(key, length - 1, batch, vocab)
  done = jnp.zeros(batch, bool)
  return variables, (pitch_buffer, duration_buffer, done), noise, note_noise


def _buffers(primer_pitch, primer_duration, num_notes):
  """[batch, 1 + max_primer + num_notes] buffers: bos, primer, then room."""
  batch = primer_pitch.shape[0]
  bos = jnp.full((batch, 1), tokens.BOS_ID, jnp.int32)
  room = jnp.full((batch, num_notes), tokens.PAD_ID, jnp.int32)
  return (
    jnp.concatenate([bos, primer_pitch.astype(jnp.int32), room], 1),
    jnp.concatenate([bos, primer_duration.astype(jnp.int32), room], 1),
  )


def _advance(t, sampled, state, primer_lengths, num_notes):
  """Writes position t + 1: the primer's event, a sample, or padding.

  Returns:
    (pitch buffer, duration buffer, done) and whether position t + 1 was
    sampled, bool [batch].
  """
  pitch_buffer, duration_buffer, done = state
  pitch, duration = sampled
  position = t + 1
  forced = position <= primer_lengths
  limit = primer_lengths + num_notes
  pitch = jnp.where(forced, pitch_buffer[:, position], pitch)
  duration = jnp.where(forced, duration_buffer[:, position], duration)
  stopped = done | (position > limit)
  pitch = jnp.where(stopped, tokens.PAD_ID, pitch)
  duration = jnp.where(stopped, tokens.PAD_ID, duration)
  done = stopped | (pitch == tokens.EOS_ID)
  pitch_buffer = pitch_buffer.at[:, position].set(pitch)
  duration_buffer = duration_buffer.at[:, position].set(duration)
  return (pitch_buffer, duration_buffer, done), ~forced & ~stopped


def with_short_term(logits, buffer, t, weights, order: int) -> jax.Array:
  """One head's logits mixed with the short-term model of each row's song
  so far (`model.memory.ppm` of order `order` over `buffer[:, 1 : t + 1]`,
  primer included; `model.memory.mix_short_term` with the band `weights`
  [bands]); returns log-probabilities of the same shape ([batch, vocab],
  or [batch, pitch, vocab] for a `duration_given_pitch` model's
  duration)."""
  vocab = logits.shape[-1]
  q = jax.vmap(lambda history: memory.ppm(history, t, order, vocab))(
    buffer[:, 1:]
  )
  # [batch, 1, vocab] for a duration given every pitch: its entropy and
  # renormalisation once per row, not once per pitch
  q = q.reshape(q.shape[:1] + (1,) * (logits.ndim - 2) + q.shape[1:])
  p = jax.nn.softmax(logits, axis=-1)
  mixed = memory.mix_short_term(p, q, weights)
  return jnp.log(jnp.maximum(mixed, 1e-30))


def _mix_short_term(logits, buffers, t, settings, orders):
  """Both heads' logits `with_short_term` (unchanged if `orders` is None)."""
  if orders is None:
    return logits
  return tuple(
    with_short_term(head, buffer, t, weights, order)
    for head, buffer, weights, order in zip(
      logits, buffers, settings.short_term, orders, strict=True
    )
  )


def _scan_body(
  model,
  variables,
  lookups: int,
  settings: draw.Settings,
  controls: constraints.Controls | None,
  note_noise,
  primer_lengths: jax.Array,
  *,
  num_notes: int,
  rest_id: int,
  beam_size: int,
  branch_factor: int,
  short_term_order: tuple[int, int] | None,
):
  """`sample`'s scan step: one event of every row at position t + 1.

  The scan's state is (pitch buffer, duration buffer, done, LSTM carry,
  elapsed grid steps, events drawn, log-likelihood), each [batch, ...];
  `lookups` is the number of input lookups the scan makes, for the choice
  of the input table (`use_input_table`).
  """
  needed = model.config.conditions
  input_table = None
  if not needed and use_input_table(model.config, lookups):
    input_table = model.apply(variables, method="input_table")
  choose = draw.chooser(model.config)
  rows = beam_size * branch_factor

  def body(state, xs):
    t, noise = xs
    pitch_buffer, duration_buffer, done, carry, elapsed, count, score = state
    conditions = None
    if controls is not None:
      elapsed = elapsed + controls.duration_steps[duration_buffer[:, t]]
      conditions = constraints.conditions(controls, elapsed)
      conditions = {name: conditions[name] for name in needed}
    pitch_logits, duration_logits, carry = model.apply(
      variables,
      pitch_buffer[:, t],
      duration_buffer[:, t],
      carry,
      input_table,
      conditions,
      method="step",
    )
    pitch_logits, duration_logits = _mix_short_term(
      (pitch_logits, duration_logits), state[:2], t, settings, short_term_order
    )
    last = t + 1 == primer_lengths + num_notes
    *sampled, log_prob = choose(
      t,
      note_noise(t, noise),
      pitch_logits,
      duration_logits,
      settings,
      rest_id,
      constraints.rules(controls, elapsed, pitch_buffer[:, t], last, rest_id),
    )
    buffers, drawn = _advance(
      t,
      sampled,
      (pitch_buffer, duration_buffer, done),
      primer_lengths,
      num_notes,
    )
    score = score + jnp.where(drawn, log_prob, 0.0)
    count = count + drawn
    state = (*buffers, carry, elapsed, count, score)
    if rows > 1:
      state = search.prune_due(
        state, t + 1 - primer_lengths, controls, beam_size, branch_factor
      )
    return state, None

  return body


@functools.partial(
  jax.jit,
  static_argnames=(
    "model",
    "num_notes",
    "rest_id",
    "beam_size",
    "branch_factor",
    "with_scores",
    "short_term_order",
  ),
)
def sample(
  model: model_lib.MelodyModel,
  params,
  primer_pitch: jax.Array,
  primer_duration: jax.Array,
  primer_lengths: jax.Array,
  key: jax.Array,
  settings: draw.Settings,
  controls: constraints.Controls | None = None,
  *,
  num_notes: int,
  rest_id: int = -1,
  beam_size: int = 1,
  branch_factor: int = 1,
  with_scores: bool = False,
  short_term_order: tuple[int, int] | None = None,
) -> tuple[jax.Array, ...]:
  """Generates a batch of melodies, carrying the LSTM state (a search over
  `beam_size * branch_factor` rows per melody when > 1: module docstring).

  Args:
    model, params: the MelodyModel (static) and its parameters.
    primer_pitch, primer_duration: int [batch, max_primer] primer ids.
    primer_lengths: int [batch] primer events of each melody (0: none).
    key, settings: PRNG key (note t: `fold_in(key, t)`), `draw.Settings`.
    controls: conditions, bars, ending, pruning period (traced, [batch]
      each; `constraints`); None: none (an unconditioned model).
    num_notes, rest_id: events generated after each primer at most; the
      rest's pitch id, never sampled first (-1: none). Static.
    beam_size, branch_factor, with_scores: the search's shape; return the
      log-likelihoods (static).
    short_term_order: the short-term model's (pitch, duration) orders,
      `settings.short_term` its weights (static; None: none).

  Returns:
    (pitch, duration) int32 [batch, 1 + max_primer + num_notes]: bos, the
    primer, the events, then eos and/or padding; with_scores: and the
    sampled events' log-likelihood, float32 [batch] (nats).
  """
  rows = beam_size * branch_factor
  primer_pitch, primer_duration, primer_lengths, controls = search.repeat_rows(
    rows, primer_pitch, primer_duration, primer_lengths, controls
  )
  variables, (pitch_buffer, duration_buffer, done), noise, note_noise = _start(
    model, params, primer_pitch, primer_duration, key, num_notes
  )
  batch, length = pitch_buffer.shape
  carry = model.apply(variables, batch, length, method="initial_carry")
  body = _scan_body(
    model,
    variables,
    batch * length,
    settings,
    controls,
    note_noise,
    primer_lengths,
    num_notes=num_notes,
    rest_id=rest_id,
    beam_size=beam_size,
    branch_factor=branch_factor,
    short_term_order=short_term_order,
  )

  zeros = jnp.zeros(batch, jnp.int32)
  state = (
    pitch_buffer,
    duration_buffer,
    done,
    carry,
    zeros,
    zeros,
    zeros * 0.0,
  )
  (pitch_buffer, duration_buffer, *_, count, score), _ = jax.lax.scan(
    body, state, (jnp.arange(length - 1), noise)
  )
  out = (pitch_buffer, duration_buffer, score)
  if rows > 1:
    out = search.best(out, search.per_event(score, count), rows)
  return out if with_scores else out[:2]


@functools.partial(
  jax.jit, static_argnames=("model", "num_notes", "seq_len", "rest_id")
)
def sample_window(
  model: model_lib.MelodyModel,
  params,
  primer_pitch: jax.Array,
  primer_duration: jax.Array,
  primer_lengths: jax.Array,
  key: jax.Array,
  settings: draw.Settings,
  *,
  num_notes: int,
  seq_len: int,
  rest_id: int = -1,
) -> tuple[jax.Array, jax.Array]:
  """The reference generator's sampling: each note re-reads the last
  `seq_len` events.

  Same arguments and result as `sample`, plus `seq_len` (static), the
  window the model was trained on. Events before bos are padding, as in
  training with the 'last' objective.
  """
  variables, (pitch_buffer, duration_buffer, done), noise, note_noise = _start(
    model, params, primer_pitch, primer_duration, key, num_notes
  )
  batch, length = pitch_buffer.shape
  pad = jnp.full((batch, seq_len - 1), tokens.PAD_ID, jnp.int32)

  def body(state, xs):
    t, noise = xs
    pitch_buffer, duration_buffer, done = state
    window = lambda b: jax.lax.dynamic_slice_in_dim(  # noqa: E731
      jnp.concatenate([pad, b], 1), t, seq_len, axis=1
    )
    pitch_logits, duration_logits, _ = model.apply(
      variables, window(pitch_buffer), window(duration_buffer), last_only=True
    )
    *sampled, _ = draw.chooser(model.config)(
      t,
      note_noise(t, noise),
      pitch_logits[:, 0],
      duration_logits[:, 0],
      settings,
      rest_id,
      None,
    )
    return _advance(t, sampled, state, primer_lengths, num_notes)[0], None

  (pitch_buffer, duration_buffer, _), _ = jax.lax.scan(
    body,
    (pitch_buffer, duration_buffer, done),
    (jnp.arange(length - 1), noise),
  )
  return pitch_buffer, duration_buffer


def strip(pitch_ids, duration_ids) -> list[tuple[list[int], list[int]]]:
  """Buffers to per-melody id lists without bos, eos and padding."""
  melodies = []
  for pitch_row, duration_row in zip(
    pitch_ids.tolist(), duration_ids.tolist(), strict=True
  ):
    pitch, duration = [], []
    for p, d in zip(pitch_row[1:], duration_row[1:], strict=True):
      if p in (tokens.EOS_ID, tokens.PAD_ID):
        break
      pitch.append(p)
      duration.append(d)
    melodies.append((pitch, duration))
  return melodies
