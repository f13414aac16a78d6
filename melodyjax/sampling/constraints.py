"""What a request asks of the sampler beyond the model: the conditions fed to
it, the bar count and the ending, as traced arrays and logit masks.

`Controls` holds everything per call as arrays, so changing a value never
recompiles. The sampler tracks each melody's elapsed time in grid steps
(the cumulative onset: the sum of the durations so far, the primer's
included), from which

- the bar position fed to a metre-conditioned model is the next onset
  modulo the bar length (`bar_steps`; the melody starts on a downbeat);
- `--bars N` (`max_steps` = N bars) masks the durations that would cross
  the end of bar N or leave a remainder no sequence of durations fills,
  bans eos before it and forces eos there; the event that reaches it may
  not be a rest;
- `--end_on_tonic` makes the last note a tonic note (`tonic`): the event
  that ends bar N, or, without `--bars`, eos is allowed only after a tonic
  note and the last event the buffer holds must be one.

Every rule masks logits: there is no rejection loop.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from melodyjax.music import tokens

# Remainders below this many grid steps are checked for being fillable
# exactly by the vocabulary's durations; longer ones are taken as fillable.
FILL_STEPS = 1024


class Controls(NamedTuple):
  """Traced per-call controls of `sampler.sample`.

  Attributes:
    bar_steps: int32 [batch] bar length in grid steps (0: unknown).
    max_steps: int32 [batch] where the melody ends, in grid steps from its
      start (0: no bar limit).
    end_on_tonic: bool [batch] the last note must be a tonic note.
    tonic: bool [batch, pitch_vocab] the pitch ids that may end a melody.
    labels: int32 [batch, 3] time signature, mode and style label ids fed
      to a conditioned model.
    duration_steps: int32 [duration_vocab] grid steps of each duration id
      (0 for reserved ids).
    fillable: bool [FILL_STEPS] whether a remainder of that many grid
      steps is a sum of vocabulary durations.
    steps_per_iteration: int32 [] beam search: prune every this many
      sampled events (0: only at the end, best-of-N).
  """

  bar_steps: jax.Array
  max_steps: jax.Array
  end_on_tonic: jax.Array
  tonic: jax.Array
  labels: jax.Array
  duration_steps: jax.Array
  fillable: jax.Array
  steps_per_iteration: jax.Array


def duration_steps(duration_tokens, grid: int) -> np.ndarray:
  """int32 [vocab] grid steps of each duration token (0: reserved or not
  on the grid)."""
  out = np.zeros(len(duration_tokens), np.int32)
  for i, token in enumerate(duration_tokens):
    if token not in tokens.RESERVED:
      steps = tokens.parse_duration_token(token) * grid
      out[i] = int(steps) if steps.denominator == 1 else 0
  return out


def fillable_table(steps: np.ndarray, size: int = FILL_STEPS) -> np.ndarray:
  """bool [size]: whether r grid steps are a sum of the given durations."""
  table = np.zeros(size, bool)
  table[0] = True
  lengths = sorted({int(s) for s in steps if s > 0})
  for r in range(1, size):
    table[r] = any(s <= r and table[r - s] for s in lengths)
  return table


@functools.lru_cache(maxsize=16)
def _duration_tables(duration_tokens: tuple, grid: int):
  """(`duration_steps`, `fillable_table`) of a vocabulary, computed once
  (a server checks every request's controls: 3 ms each otherwise)."""
  steps = duration_steps(duration_tokens, grid)
  return steps, fillable_table(steps)


def tonic_mask(pitch_tokens, tonic_classes) -> np.ndarray:
  """bool [vocab]: single notes of the given pitch classes (all True for
  None: any pitch id may end a melody)."""
  if tonic_classes is None:
    return np.ones(len(pitch_tokens), bool)
  mask = np.zeros(len(pitch_tokens), bool)
  for i, token in enumerate(pitch_tokens):
    if token not in tokens.RESERVED:
      pitches = tokens.parse_pitch_token(token)
      mask[i] = len(pitches) == 1 and pitches[0] % 12 in tonic_classes
  return mask


def make_controls(
  batch: int,
  pitch_tokens,
  duration_tokens,
  grid: int,
  *,
  bar_steps: int = 0,
  bars: int = 0,
  end_on_tonic: bool = False,
  tonic_classes=None,
  labels=(0, 0, 0),
  steps_per_iteration: int = 1,
) -> Controls:
  """Controls for `batch` melodies (host values to device arrays)."""
  steps, fillable = _duration_tables(tuple(duration_tokens), grid)
  tonic = tonic_mask(pitch_tokens, tonic_classes if end_on_tonic else None)
  return Controls(
    bar_steps=jnp.full(batch, bar_steps, jnp.int32),
    max_steps=jnp.full(batch, bars * bar_steps, jnp.int32),
    end_on_tonic=jnp.full(batch, end_on_tonic, bool),
    tonic=jnp.asarray(np.broadcast_to(tonic, (batch, len(tonic)))),
    labels=jnp.asarray(
      np.broadcast_to(np.asarray(labels, np.int32), (batch, 3))
    ),
    duration_steps=jnp.asarray(steps),
    fillable=jnp.asarray(fillable),
    steps_per_iteration=jnp.asarray(steps_per_iteration, jnp.int32),
  )


def conditions(controls: Controls, elapsed: jax.Array) -> dict[str, jax.Array]:
  """The model's condition inputs for the event starting at `elapsed`."""
  bar = controls.bar_steps
  return {
    "bar_position": jnp.where(bar > 0, elapsed % jnp.maximum(bar, 1), -1),
    "time_signature": controls.labels[:, 0],
    "mode": controls.labels[:, 1],
    "style": controls.labels[:, 2],
  }


def duration_ban(controls: Controls, elapsed: jax.Array) -> jax.Array:
  """bool [batch, duration_vocab]: durations that break `--bars`."""
  steps = controls.duration_steps[None, :]
  remaining = (controls.max_steps - elapsed)[:, None]
  left = remaining - steps
  fills = jnp.where(
    left >= FILL_STEPS,
    True,
    controls.fillable[jnp.clip(left, 0, FILL_STEPS - 1)] & (left >= 0),
  )
  real = steps > 0
  fits = real & (steps <= remaining)
  allowed = fits & fills
  allowed = jnp.where(jnp.any(allowed, -1, keepdims=True), allowed, fits)
  allowed = jnp.where(jnp.any(allowed, -1, keepdims=True), allowed, real)
  limited = (controls.max_steps > 0)[:, None]
  return limited & ~allowed


def pitch_ban(
  controls: Controls,
  elapsed: jax.Array,
  last_pitch: jax.Array,
  final: jax.Array,
  rest_id: int,
) -> jax.Array:
  """bool [batch, pitch_vocab]: pitches the controls forbid.

  Args:
    controls: the call's controls.
    elapsed: int [batch] the next event's onset, in grid steps.
    last_pitch: int [batch] the pitch id of the event before it.
    final: bool [batch] whether the next event ends the melody (it fills
      bar N, or it is the last the buffer holds).
    rest_id: the rest's pitch id (-1: none).
  """
  vocab = controls.tonic.shape[-1]
  limited = controls.max_steps > 0
  at_end = limited & (elapsed >= controls.max_steps)
  is_eos = jnp.arange(vocab) == tokens.EOS_ID
  untonic = ~controls.tonic & controls.end_on_tonic[:, None]
  last_is_tonic = jnp.take_along_axis(controls.tonic, last_pitch[:, None], 1)
  ban_eos = (limited & ~at_end) | (controls.end_on_tonic & ~last_is_tonic[:, 0])
  ban = is_eos[None, :] & ban_eos[:, None]
  ending = final & (limited | controls.end_on_tonic)
  rest = (jnp.arange(vocab) == rest_id)[None, :]
  ban = ban | (ending[:, None] & (untonic | rest) & ~is_eos[None, :])
  # At the end of bar N only eos remains.
  return jnp.where(at_end[:, None], ~is_eos[None, :], ban)


def is_final(
  controls: Controls, elapsed: jax.Array, duration: jax.Array, last: jax.Array
) -> jax.Array:
  """bool [batch]: whether an event of `duration` ids starting at `elapsed`
  ends the melody (fills bar N; `last`: the buffer's last event)."""
  after = elapsed + controls.duration_steps[duration]
  return last | ((controls.max_steps > 0) & (after >= controls.max_steps))


def joint_ban(
  controls: Controls,
  elapsed: jax.Array,
  last_pitch: jax.Array,
  last: jax.Array,
  rest_id: int,
) -> jax.Array:
  """bool [batch, pitch_vocab, duration_vocab]: the (pitch, duration)
  pairs the controls forbid, both bans at once (a duration ban, and the
  pitch ban of whether that duration ends the melody).

  The eos row holds eos's own ban for every duration: eos has no duration
  of its own, so its ban cannot depend on one.
  """
  # final[b, d]: as `is_final`, for every duration id at once.
  after = elapsed[:, None] + controls.duration_steps[None, :]
  limit = controls.max_steps[:, None]
  final = last[:, None] | ((limit > 0) & (after >= limit))
  bans = [
    pitch_ban(controls, elapsed, last_pitch, jnp.full_like(last, end), rest_id)
    for end in (False, True)
  ]
  pitch = jnp.where(final[:, None, :], bans[1][:, :, None], bans[0][:, :, None])
  ban = pitch | duration_ban(controls, elapsed)[:, None, :]
  eos = bans[0][:, tokens.EOS_ID, None]
  return ban.at[:, tokens.EOS_ID, :].set(eos)


def rules(controls, elapsed, last_pitch, last, rest_id):
  """The constraints' (duration ban, pitch ban of the duration, joint ban
  of both) or None. The independent heads' sampler calls the pitch ban
  once its duration is drawn; a `duration_given_pitch` model's calls the
  joint ban (unused bans are removed by jit)."""
  if controls is None:
    return None
  return (
    duration_ban(controls, elapsed),
    lambda duration: pitch_ban(
      controls,
      elapsed,
      last_pitch,
      is_final(controls, elapsed, duration, last),
      rest_id,
    ),
    lambda: joint_ban(controls, elapsed, last_pitch, last, rest_id),
  )
