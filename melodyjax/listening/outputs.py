"""One generation's files: per melody a MIDI file, a JSON sidecar, a piano
roll, a WAV preview and its ABC notation.

The sidecar (`sample_<step>_<i>.json`) holds the melody's tokens and every
setting needed to regenerate it: the request (`request_lib.Request`), the
checkpoint step and workdir, and how it was rendered (`Rendering`).
"""

from __future__ import annotations

import dataclasses
import errno
import os
from collections.abc import Mapping, Sequence
from typing import Any

from melodyjax import errors, files
from melodyjax.listening import abc, audio
from melodyjax.music import midi_io, tokens
from melodyjax.music.events import Event, Song
from melodyjax.sampling import request as request_lib


@dataclasses.dataclass(frozen=True)
class Rendering:
  """How melodies become files (not what they are).

  Attributes:
    tempo_bpm: quarter notes per minute, in the MIDI file and the WAV.
    time_signature: written to the MIDI file.
    program: General MIDI program (0: piano).
    velocity: note velocity, 1-127.
    key_signature: written to the MIDI file ('C' for key-normalised
      models), or None.
    piano_roll: also write a piano-roll PNG.
    wav: also write a WAV preview.
    abc: also write the melody as ABC notation (`abc.to_abc`).
  """

  tempo_bpm: float = 100.0
  time_signature: tuple[int, int] = (4, 4)
  program: int = 0
  velocity: int = 80
  key_signature: str | None = "C"
  piano_roll: bool = True
  wav: bool = True
  abc: bool = True


def sidecar(
  index: int,
  events: Sequence[Event],
  *,
  step: int,
  workdir: str | None,
  request: request_lib.Request,
  rendering: Rendering,
  sampled_during_training: bool = False,
  model_path: str | None = None,
  outcome: Mapping[str, Any] | None = None,
) -> dict:
  """The sidecar record of melody `index` of a request; `outcome` is what
  it met of the request's promises (`sampling.plan.outcome`)."""
  pitch, duration = tokens.event_tokens(events)
  return {
    "index": index,
    "step": step,
    "workdir": workdir,
    **({"model": model_path} if model_path else {}),
    **request.to_json(),
    "sampled_during_training": sampled_during_training,
    "tempo_bpm": rendering.tempo_bpm,
    "time_signature": list(rendering.time_signature),
    "program": rendering.program,
    "velocity": rendering.velocity,
    **({"renderer": audio.renderer()} if rendering.wav else {}),
    "num_events": len(events),
    "pitch": pitch,
    "duration": duration,
    **({"outcome": dict(outcome)} if outcome is not None else {}),
  }


def write_outputs(
  melodies: Sequence[Sequence[Event]],
  output_dir: str,
  *,
  step: int,
  workdir: str | None,
  request: request_lib.Request,
  rendering: Rendering = Rendering(),
  sampled_during_training: bool = False,
  model_path: str | None = None,
  outcomes: Sequence[Mapping[str, Any]] | None = None,
) -> list[str]:
  """Writes sample_<step>_<i>.mid, a .json sidecar, a .png piano roll, a
  .wav preview (`audio.synthesize`, at the MIDI file's tempo and program;
  the sidecar names its renderer) and a .abc
  file (notation with the rendering's metre, key and tempo).

  Returns:
    The paths of the MIDI files.

  Raises:
    GenerateError: `output_dir` cannot be created, or a file in it cannot
      be written (a full disk, a read-only folder); files written before
      it are complete (each is written atomically).
  """
  try:
    os.makedirs(output_dir, exist_ok=True)
  except OSError as e:
    hint = (
      "is part of the path a file?"
      if e.errno in (errno.ENOTDIR, errno.EEXIST)
      else "choose a folder you can write"
    )
    raise errors.GenerateError(
      f"cannot create the output folder {output_dir}: {files.reason(e)} "
      f"({hint})"
    ) from None
  try:
    return _write_files(
      melodies,
      output_dir,
      step=step,
      workdir=workdir,
      request=request,
      rendering=rendering,
      sampled_during_training=sampled_during_training,
      model_path=model_path,
      outcomes=outcomes,
    )
  except OSError as e:  # a full disk, a read-only or locked folder
    raise errors.GenerateError(
      f"cannot write {e.filename or output_dir}: {files.reason(e)} (the "
      "files written before it are complete; --output_dir writes elsewhere)"
    ) from None


def _write_files(
  melodies,
  output_dir,
  *,
  step,
  workdir,
  request,
  rendering,
  sampled_during_training,
  model_path,
  outcomes,
) -> list[str]:
  paths = []
  for i, events in enumerate(melodies):
    stem = os.path.join(output_dir, f"sample_{step}_{i}")
    song = Song(
      list(events),
      rendering.tempo_bpm,
      tuple(rendering.time_signature),
      rendering.key_signature,
    )
    midi_io.write_midi(
      song,
      stem + ".mid",
      program=rendering.program,
      velocity=rendering.velocity,
    )
    files.write_json(
      stem + ".json",
      sidecar(
        i,
        events,
        step=step,
        workdir=workdir,
        request=request,
        rendering=rendering,
        sampled_during_training=sampled_during_training,
        model_path=model_path,
        outcome=outcomes[i] if outcomes is not None else None,
      ),
    )
    if rendering.piano_roll:
      from melodyjax.listening import plots

      plots.save_piano_roll(events, stem + ".png", title=os.path.basename(stem))
    if rendering.wav:
      audio.synthesize(
        events,
        stem + ".wav",
        tempo_bpm=rendering.tempo_bpm,
        program=rendering.program,
        velocity=rendering.velocity,
      )
    if rendering.abc:
      files.write_text(
        stem + ".abc",
        abc.to_abc(
          events,
          time_signature=tuple(rendering.time_signature),
          key_signature=rendering.key_signature,
          title=os.path.basename(stem),
          number=i + 1,
          tempo_bpm=rendering.tempo_bpm,
        ),
      )
    paths.append(stem + ".mid")
  return paths
