"""From a workdir to melodies: restore the parameters, parse a primer, sample.

Everything comes from the workdir: `config.json`, the vocabularies and a
checkpoint (the latest, the best by validation loss, or a given step). Only
the parameters are restored, shaped by `eval_shape(model.init)`: sampling
never builds an optimizer. A `request.Request` holds every setting of one
call, so that the files written from it (`listening.outputs`) can
regenerate it.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from melodyjax import errors, files
from melodyjax.music import midi_io, tokens, tonality
from melodyjax.music.events import Event, Song
from melodyjax.sampling import draw, plan, sampler
from melodyjax.sampling import request as request_lib
from melodyjax.training import runs


def _nearest(token: str, vocab: tokens.Vocab, stream: str) -> list[str]:
  valid = [t for t in vocab.tokens if t not in tokens.RESERVED]
  if stream == "pitch":
    try:
      wanted = tokens.parse_pitch_token(token)
      if wanted:
        center = sum(wanted) / len(wanted)

        def distance(t):
          pitches = tokens.parse_pitch_token(t)
          return abs(sum(pitches) / len(pitches) - center) if pitches else 99

        return sorted(valid, key=distance)[:6]
    except tokens.TokenError:
      pass
  else:
    try:
      wanted = float(tokens.parse_duration_token(token))
      return sorted(
        valid, key=lambda t: abs(float(tokens.parse_duration_token(t)) - wanted)
      )[:6]
    except tokens.TokenError:
      pass
  return difflib.get_close_matches(token, valid, n=6, cutoff=0) or valid[:6]


def encode_primer(
  events: Sequence[Event], run: runs.Run, source: str
) -> tuple[list[int], list[int]]:
  """Primer events to ids; a token outside the vocabulary is an error."""
  pitch_ids, duration_ids = [], []
  for event in events:
    for stream, token, vocab, ids in (
      ("pitch", tokens.pitch_token(event.pitches), run.pitch_vocab, pitch_ids),
      (
        "duration",
        tokens.duration_token(event.quarters),
        run.duration_vocab,
        duration_ids,
      ),
    ):
      if token not in vocab:
        near = ", ".join(_nearest(token, vocab, stream))
        raise errors.GenerateError(
          f"{source}: {stream} {token!r} is not in this model's vocabulary "
          f"(nearest valid: {near})"
        )
      ids.append(vocab.id(token))
  return pitch_ids, duration_ids


def parse_primer_text(text: str) -> list[Event]:
  """'C4:1 D4:0.5 R:0.5 C4.E4.G4:1/3' to events (flats accepted)."""
  events = []
  for item in text.split():
    pitch, sep, duration = item.rpartition(":")
    if not sep or not pitch:
      raise errors.GenerateError(
        f"primer event {item!r} is not PITCH:DURATION (e.g. C4:1, R:0.5)"
      )
    try:
      events.append(
        Event(
          tokens.parse_pitch_token(pitch), tokens.parse_duration_token(duration)
        )
      )
    except tokens.TokenError as e:
      raise errors.GenerateError(f"primer event {item!r}: {e}") from None
  return events


def read_primer_midi(path: str, run: runs.Run) -> list[Event]:
  """A MIDI file read and key-normalised as the run's corpus was."""
  data = run.config.data
  try:
    song = midi_io.read_midi(
      path, grid=data.grid, polyphony=data.polyphony, tracks=data.tracks
    )
  except FileNotFoundError:
    raise errors.GenerateError(f"primer MIDI not found: {path}") from None
  except OSError as e:  # permission denied, a folder, ...
    raise errors.GenerateError(
      f"primer MIDI {path} cannot be read: {files.reason(e)}"
    ) from None
  except midi_io.MidiError as e:
    raise errors.GenerateError(f"primer MIDI: {e}") from None
  return normalise_key(song, run, path)


def normalise_key(song: Song, run: runs.Run, source: str) -> list[Event]:
  """A primer song's events in the key the run's corpus was normalised to
  (unchanged for a run that keeps its songs' keys)."""
  events = song.events
  if run.config.data.normalize_key:
    events = tonality.transpose(
      events, tonality.normalizing_shift(*tonality.find_key(song))
    )
    if events is None:
      raise errors.GenerateError(
        f"{source}: pitches leave 0-127 when normalised"
      )
  return list(events)


def _primer_arrays(
  primer, run: runs.Run, request: request_lib.Request, source: str
):
  """The primer as [num_outputs, max_primer_notes] id buffers and lengths."""
  if len(primer) > request.max_primer_notes:
    raise errors.GenerateError(
      f"{source}: {len(primer)} events, more than max_primer_notes="
      f"{request.max_primer_notes}"
    )
  pitch_ids, duration_ids = encode_primer(primer, run, source)
  shape = (request.num_outputs, request.max_primer_notes)
  primer_pitch = np.zeros(shape, np.int32)
  primer_duration = np.zeros(shape, np.int32)
  primer_pitch[:, : len(pitch_ids)] = pitch_ids
  primer_duration[:, : len(duration_ids)] = duration_ids
  lengths = np.full(request.num_outputs, len(pitch_ids), np.int32)
  return (
    jnp.asarray(primer_pitch),
    jnp.asarray(primer_duration),
    jnp.asarray(lengths),
  )


def sample_ids(
  run: runs.Run,
  request: request_lib.Request,
  primer: Sequence[Event] = (),
  primer_source: str = "primer",
  melody_plan: plan.Plan | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
  """The sampler's buffers for a request: (pitch ids, duration ids) int32
  [num_outputs, length] and each melody's log-likelihood in nats, float
  [num_outputs] (None for the window sampler).

  Args:
    melody_plan: `plan.make_plan(run, request)`, if the caller has it.

  Raises:
    GenerateError: a bad primer or setting.
  """
  request.check()
  if melody_plan is None:
    melody_plan = plan.make_plan(run, request)
  short_term = request.short_term_orders is not None
  settings = draw.make_settings(
    np.asarray(request.temperature, float),
    request.top_k,
    np.asarray(request.top_p, float),
    np.asarray(request.short_term, float) if short_term else None,
  )
  args = (
    run.model,
    run.params,
    *_primer_arrays(primer, run, request, primer_source),
    jax.random.key(request.seed),
    settings,
  )
  if request.sampler == "window":
    _check_window(run, request)
    out = sampler.sample_window(
      *args,
      num_notes=request.num_notes,
      seq_len=run.config.train.seq_len,
      rest_id=rest_id(run),
    )
    return (*jax.device_get(out), None)
  beam = request.search_shape
  out = sampler.sample(
    *args,
    plan.make_controls(melody_plan, run, request),
    num_notes=request.num_notes,
    rest_id=rest_id(run),
    beam_size=beam[0],
    branch_factor=beam[1],
    with_scores=True,
    short_term_order=request.short_term_orders,
  )
  return jax.device_get(out)


def generate_scored(
  run: runs.Run,
  request: request_lib.Request,
  primer: Sequence[Event] = (),
  primer_source: str = "primer",
) -> tuple[list[list[Event]], np.ndarray | None]:
  """`generate`, and each melody's log-likelihood in nats (float
  [num_outputs]; None for the window sampler)."""
  melody_plan = plan.make_plan(run, request)
  pitch_ids, duration_ids, scores = sample_ids(
    run, request, primer, primer_source, melody_plan
  )
  melodies = [
    plan.to_key(melody_plan, events)
    for events in decode_melodies(run, pitch_ids, duration_ids)
  ]
  return melodies, scores


def generate(
  run: runs.Run,
  request: request_lib.Request,
  primer: Sequence[Event] = (),
  primer_source: str = "primer",
) -> list[list[Event]]:
  """Samples `request.num_outputs` melodies (primer included in each),
  moved to the asked key (`plan.to_key`).

  Args:
    run: from `load_run` (or a training run's current parameters).
    request: the settings.
    primer: events to continue (key-normalised like the corpus).
    primer_source: how errors name the primer ('--primer', a file).

  Raises:
    GenerateError: a bad primer or setting.
  """
  return generate_scored(run, request, primer, primer_source)[0]


def rest_id(run: runs.Run) -> int:
  """The rest's pitch id (never sampled first), -1 if the model has none."""
  rest = tokens.REST
  return run.pitch_vocab.id(rest) if rest in run.pitch_vocab else -1


def decode_melodies(
  run: runs.Run, pitch_ids, duration_ids, max_events: int | None = None
) -> list[list[Event]]:
  """Sampler buffers ([batch, length] ids) to melodies of events.

  Args:
    run: the run whose vocabularies the ids index.
    pitch_ids, duration_ids: the sampler's output, on the host.
    max_events: keep at most this many events (primer included) of each.
  """
  melodies = []
  for pitch, duration in sampler.strip(pitch_ids, duration_ids):
    events = tokens.tokens_to_events(
      run.pitch_vocab.decode(pitch[:max_events]),
      run.duration_vocab.decode(duration[:max_events]),
    )
    melodies.append(midi_io.canonical_events(events))
  return melodies


def _check_window(run: runs.Run, request: request_lib.Request) -> None:
  """The window sampler takes no controls and no conditioned model."""
  asked = [
    name
    for name in request_lib.CONTROLS
    if getattr(request, name) != getattr(request_lib.Request, name)
    and name not in ("time_signature", "key")
  ]
  if asked or run.model.config.conditions:
    raise errors.GenerateError(
      "--sampler=window takes no conditioned model and no "
      + (f"--{asked[0]}" if asked else "conditions")
      + ": use --sampler=scan"
    )
