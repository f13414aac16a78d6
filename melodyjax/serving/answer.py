"""A generation's answer: every setting that reproduces it and each melody
as events, ABC, MIDI (base64 and a link to the file) and a link to its WAV
preview.

The WAVs are rendered when first fetched (`AudioStore`, `GET
/audio/NAME.wav`), by `listening.audio` (a General MIDI soundfont where one
is installed, else the additive synth; the answer names which), so that an
answer that is not listened to costs no rendering.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import json
import threading
from collections.abc import Sequence
from typing import Any

from melodyjax.listening import abc, audio
from melodyjax.music import metre, midi_io, tokens
from melodyjax.music.events import Event, Song
from melodyjax.sampling import plan as plan_lib
from melodyjax.serving import requests
from melodyjax.serving import store as store_lib
from melodyjax.training import runs


class AudioStore:
  """The melodies that answers link to, by name; the last `capacity`
  kept, the last `cached` WAVs kept rendered."""

  def __init__(self, capacity: int = 1024, cached: int = 32):
    self.capacity = capacity
    self.cached = cached
    self._melodies: collections.OrderedDict[str, tuple] = (
      collections.OrderedDict()
    )
    self._wavs: collections.OrderedDict[str, bytes] = collections.OrderedDict()
    self._lock = threading.Lock()

  def add(
    self,
    events: Sequence[Event],
    event_tokens: tuple[list[str], list[str]],
    tempo: float,
    program: int,
    velocity,
  ):
    """The name of a melody's WAV (the same for the same melody, by its
    `tokens.event_tokens`, and sound)."""
    key = (tuple(events), float(tempo), int(program), int(velocity))
    text = json.dumps([event_tokens, tempo, program, velocity]).encode()
    name = hashlib.sha256(text).hexdigest()[:24]
    with self._lock:
      self._melodies[name] = key
      self._melodies.move_to_end(name)
      while len(self._melodies) > self.capacity:
        self._melodies.popitem(last=False)
    return name

  def wav(self, name: str) -> bytes | None:
    """The WAV file of `name` (rendered now if not cached), None if the
    name is unknown or was dropped."""
    with self._lock:
      if name in self._wavs:
        self._wavs.move_to_end(name)
        return self._wavs[name]
      melody = self._melodies.get(name)
    if melody is None:
      return None
    events, tempo, program, velocity = melody
    samples, _ = audio.render(
      events, tempo_bpm=tempo, program=program, velocity=velocity
    )
    data = audio.wav_bytes(samples)
    with self._lock:
      self._wavs[name] = data
      while len(self._wavs) > self.cached:
        self._wavs.popitem(last=False)
    return data


def primer_text(events: Sequence[Event]) -> str:
  """Events as a primer ('C4:1 D4:1/2'), `generate.parse_primer_text`'s."""
  pitch, duration = tokens.event_tokens(events)
  return " ".join(f"{p}:{d}" for p, d in zip(pitch, duration, strict=True))


def _melody(
  index: int,
  written: Sequence[Event],
  run: runs.Run,
  checked: requests.Checked,
  store: AudioStore,
  file_store: store_lib.FileStore | None,
) -> dict[str, Any]:
  """One melody of the answer (`written`: in the run's normalised key)."""
  resolved = checked.plan
  events = plan_lib.to_key(resolved, written)
  key = plan_lib.key_signature(resolved, run.config.data.normalize_key)
  pitch, duration = tokens.event_tokens(events)
  song = Song(list(events), checked.tempo, resolved.time_signature, key)
  midi = midi_io.song_to_bytes(
    song, program=checked.program, velocity=checked.velocity
  )
  name = store.add(
    events, (pitch, duration), checked.tempo, checked.program, checked.velocity
  )
  midi_name = None if file_store is None else file_store.add(midi, ".mid")
  quarters = sum(float(e.quarters) for e in events)
  return {
    "index": index,
    "num_events": len(events),
    "events": [
      {"pitches": list(e.pitches), "quarters": float(e.quarters)}
      for e in events
    ],
    "pitch": pitch,
    "duration": duration,
    "abc": abc.to_abc(
      events,
      time_signature=resolved.time_signature,
      key_signature=key,
      number=index + 1,
      tempo_bpm=checked.tempo,
    ),
    "midi_base64": base64.b64encode(midi).decode("ascii"),
    # None where the store could not write it (the answer goes out).
    "midi_url": None if midi_name is None else f"/files/{midi_name}",
    "wav_url": f"/audio/{name}.wav",
    "seconds": quarters * 60 / checked.tempo + audio.TAIL_SECONDS,
    "outcome": plan_lib.outcome(
      resolved, checked.request, events, run.config.data.grid
    ),
    # The melody to continue, in the run's key: its last events that fit
    # the primer.
    "continue_primer": primer_text(
      written[-checked.request.max_primer_notes :]
    ),
  }


def make_answer(
  run: runs.Run,
  checked: requests.Checked,
  melodies: Sequence[Sequence[Event]],
  store: AudioStore,
  file_store: store_lib.FileStore | None = None,
) -> dict[str, Any]:
  """The JSON answer of a request whose melodies (in the run's normalised
  key, as the batcher gives them) are `melodies`; `file_store` keeps each
  melody's MIDI file for its `midi_url`."""
  resolved = checked.plan
  return {
    "run": run.workdir or run.model_path,
    "step": run.step,
    "seed": checked.request.seed,
    "settings": checked.settings(),
    "resolved": {
      "time_signature": metre.signature_label(resolved.time_signature),
      "mode": resolved.mode,
      "style": resolved.style,
      "key_signature": plan_lib.key_signature(
        resolved, run.config.data.normalize_key
      ),
    },
    "renderer": audio.renderer(),
    "melodies": [
      _melody(i, events, run, checked, store, file_store)
      for i, events in enumerate(melodies)
    ],
  }
