"""From a workdir to MIDI files: restore a run, parse a primer, sample, write.

Everything comes from the workdir: `config.json`, the vocabularies and a
checkpoint (the latest, the best by validation loss, or a given step).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from melodyjax.model import model as model_lib
from melodyjax.music import midi_io, tokens, tonality
from melodyjax.music.events import Event
from melodyjax.sampling import sampler
from melodyjax.training import checkpoints
from melodyjax.training import state as state_lib


class GenerateError(Exception):
  """A user-facing problem with a primer, workdir or option."""


@dataclasses.dataclass(frozen=True)
class Run:
  """A restored run: what generation needs, read from the workdir alone."""

  workdir: str
  config: ml_collections.ConfigDict
  model: model_lib.MelodyModel
  params: Any
  step: int
  pitch_vocab: tokens.Vocab
  duration_vocab: tokens.Vocab


def _best_step(workdir: str, steps: Sequence[int]) -> int:
  """The saved step with the lowest validation loss in metrics.jsonl."""
  losses = {}
  path = os.path.join(workdir, "metrics.jsonl")
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        record = json.loads(line)
        if "eval/loss" in record and record["step"] in steps:
          losses[record["step"]] = record["eval/loss"]
  if not losses:
    raise GenerateError(
      f"no validation loss logged for any checkpoint in "
      f"{workdir}; use --step latest or a step number"
    )
  return min(losses, key=lambda s: (losses[s], -s))


def load_run(workdir: str, step: str | int = "latest") -> Run:
  """Restores a run from its workdir.

  Args:
    workdir: a folder written by `train_main.py`.
    step: 'latest', 'best' (lowest validation loss) or a step number.

  Raises:
    GenerateError, checkpoints.CheckpointError: with a one-line reason.
  """

  workdir = os.path.abspath(os.path.expanduser(workdir))
  if not os.path.isdir(workdir):
    raise GenerateError(f"workdir not found: {workdir}")
  config = checkpoints.read_config(workdir)
  pitch_vocab, duration_vocab = checkpoints.read_vocabs(workdir)
  model = model_lib.MelodyModel(
    model_lib.get_model_config(
      config.model, len(pitch_vocab), len(duration_vocab)
    )
  )
  checkpoint_dir = os.path.join(workdir, checkpoints.CHECKPOINT_DIR)
  if not os.path.isdir(checkpoint_dir):
    raise GenerateError(
      f"no checkpoints in {workdir}: train first (train_main.py "
      f"--workdir={workdir}) until a checkpoint is saved"
    )
  manager = checkpoints.create_manager(
    workdir, max_to_keep=1, keep_best=0, enable_async=False, read_only=True
  )
  try:
    steps = sorted(manager.all_steps())
    if not steps:
      raise GenerateError(
        f"no checkpoints in {checkpoint_dir}: train first until a "
        "checkpoint is saved"
      )
    if step == "latest":
      chosen = steps[-1]
    elif step == "best":
      chosen = _best_step(workdir, steps)
    else:
      try:
        chosen = int(step)
      except ValueError:
        raise GenerateError(
          f"--step must be 'latest', 'best' or a number, got {step!r}"
        ) from None
    tx = state_lib.create_optimizer(config.train)
    abstract = jax.eval_shape(
      lambda k: state_lib.create_train_state(k, model, tx, 1), jax.random.key(0)
    )
    state, _ = checkpoints.restore(manager, chosen, abstract)
  finally:
    manager.close()
  return Run(
    workdir, config, model, state.params, chosen, pitch_vocab, duration_vocab
  )


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
  events: Sequence[Event], run: Run, source: str
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
        raise GenerateError(
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
      raise GenerateError(
        f"primer event {item!r} is not PITCH:DURATION (e.g. C4:1, R:0.5)"
      )
    try:
      events.append(
        Event(
          tokens.parse_pitch_token(pitch), tokens.parse_duration_token(duration)
        )
      )
    except tokens.TokenError as e:
      raise GenerateError(f"primer event {item!r}: {e}") from None
  return events


def read_primer_midi(path: str, run: Run) -> list[Event]:
  """A MIDI file read and key-normalised as the run's corpus was."""
  data = run.config.data
  try:
    song = midi_io.read_midi(
      path, grid=data.grid, polyphony=data.polyphony, tracks=data.tracks
    )
  except FileNotFoundError:
    raise GenerateError(f"primer MIDI not found: {path}") from None
  except midi_io.MidiError as e:
    raise GenerateError(f"primer MIDI: {e}") from None
  events = song.events
  if data.normalize_key:
    events = tonality.transpose(
      events, tonality.normalizing_shift(*tonality.find_key(song))
    )
    if events is None:
      raise GenerateError(f"{path}: pitches leave 0-127 when normalised")
  return events


def generate(
  run: Run,
  *,
  num_outputs: int,
  num_notes: int,
  primer: Sequence[Event] = (),
  primer_source: str = "primer",
  temperature: float | Sequence[float] = 1.0,
  top_k: int | Sequence[int] = 0,
  top_p: float | Sequence[float] = 1.0,
  seed: int = 0,
  mode: str = "scan",
  max_primer_notes: int = 64,
) -> list[list[Event]]:
  """Samples `num_outputs` melodies; returns their events (primer included).

  Raises:
    GenerateError: a bad primer or option.
  """
  if num_outputs < 1 or num_notes < 1:
    raise GenerateError("--num_outputs and --num_notes must be >= 1")
  if len(primer) > max_primer_notes:
    raise GenerateError(
      f"{primer_source}: {len(primer)} events, more than max_primer_notes="
      f"{max_primer_notes}"
    )
  temperatures = np.broadcast_to(np.asarray(temperature, float), (2,))
  if np.any(temperatures <= 0):
    raise GenerateError("--temperature must be > 0")
  top_ps = np.broadcast_to(np.asarray(top_p, float), (2,))
  if np.any(top_ps <= 0) or np.any(top_ps > 1):
    raise GenerateError("--top_p must be in (0, 1]")
  pitch_ids, duration_ids = encode_primer(primer, run, primer_source)
  primer_pitch = np.zeros((num_outputs, max_primer_notes), np.int32)
  primer_duration = np.zeros((num_outputs, max_primer_notes), np.int32)
  primer_pitch[:, : len(pitch_ids)] = pitch_ids
  primer_duration[:, : len(duration_ids)] = duration_ids
  lengths = np.full(num_outputs, len(pitch_ids), np.int32)
  settings = sampler.make_settings(temperatures, top_k, top_ps)
  key = jax.random.key(seed)
  args = (
    run.model,
    run.params,
    jnp.asarray(primer_pitch),
    jnp.asarray(primer_duration),
    jnp.asarray(lengths),
    key,
    settings,
  )
  rest_id = (
    run.pitch_vocab.id(tokens.REST) if tokens.REST in (run.pitch_vocab) else -1
  )
  if mode == "scan":
    out = sampler.sample(*args, num_notes=num_notes, rest_id=rest_id)
  elif mode == "window":
    out = sampler.sample_window(
      *args,
      num_notes=num_notes,
      seq_len=run.config.train.seq_len,
      rest_id=rest_id,
    )
  else:
    raise GenerateError(f"--mode must be 'scan' or 'window', got {mode!r}")
  melodies = []
  for pitch, duration in sampler.strip(*jax.device_get(out)):
    events = tokens.tokens_to_events(
      run.pitch_vocab.decode(pitch), run.duration_vocab.decode(duration)
    )
    melodies.append(midi_io.canonical_events(events))
  return melodies
