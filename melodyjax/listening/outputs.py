"""One melody's files: MIDI, a JSON sidecar, a piano roll and a WAV preview."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from melodyjax.listening import audio
from melodyjax.music import midi_io, tokens
from melodyjax.music.events import Event, Song
from melodyjax.sampling import generate


def write_outputs(
  melodies: Sequence[Sequence[Event]],
  output_dir: str,
  *,
  step: int,
  settings: Mapping[str, Any],
  tempo_bpm: float = 100.0,
  time_signature: tuple[int, int] = (4, 4),
  program: int = 0,
  velocity: int = 80,
  key_signature: str | None = "C",
  piano_roll: bool = True,
  wav: bool = True,
) -> list[str]:
  """Writes sample_<step>_<i>.mid, a .json sidecar, a .png piano roll and a
  .wav preview (`audio.synthesize`, at the MIDI file's tempo).

  Returns:
    The paths of the MIDI files.
  """
  try:
    os.makedirs(output_dir, exist_ok=True)
  except OSError as e:
    raise generate.GenerateError(
      f"cannot create the output folder {output_dir}: "
      f"{e.strerror or e} (is part of the path a file?)"
    ) from None
  paths = []
  for i, events in enumerate(melodies):
    stem = os.path.join(output_dir, f"sample_{step}_{i}")
    song = Song(list(events), tempo_bpm, tuple(time_signature), key_signature)
    midi_io.write_midi(song, stem + ".mid", program=program, velocity=velocity)
    pitch, duration = tokens.event_tokens(events)
    sidecar = {
      "index": i,
      "step": step,
      **settings,
      "tempo_bpm": tempo_bpm,
      "time_signature": list(time_signature),
      "program": program,
      "velocity": velocity,
      "num_events": len(events),
      "pitch": pitch,
      "duration": duration,
    }
    tmp = f"{stem}.json.tmp{os.getpid()}"
    with open(tmp, "w") as f:
      json.dump(sidecar, f, indent=1)
      f.write("\n")
    os.replace(tmp, stem + ".json")
    if piano_roll:
      from melodyjax.listening import plots  # pylint: disable=g-import-not-at-top

      plots.save_piano_roll(events, stem + ".png", title=os.path.basename(stem))
    if wav:
      audio.synthesize(events, stem + ".wav", tempo_bpm=tempo_bpm)
    paths.append(stem + ".mid")
  return paths
