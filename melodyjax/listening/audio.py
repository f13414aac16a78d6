"""A WAV preview of a melody: a General MIDI soundfont played by
TinySoundFont where one is installed, else a small additive synthesizer.
No JAX.

The soundfont is `$MELODYJAX_SOUNDFONT` (empty: none), else the first of
`SOUNDFONTS` that exists (Debian's `fluid-soundfont-gm`; `make soundfont`
installs it where it can). Every preview's renderer is named by
`renderer()`, which the sidecar, the server's answer and the pages show.
"""

from __future__ import annotations

import functools
import io
import os
import threading
import wave
from collections.abc import Sequence

import numpy as np

from melodyjax import files
from melodyjax.music.events import Event

SAMPLE_RATE = 22050  # samples per second
TAIL_SECONDS = 0.5  # after the last note: its release
SOUNDFONT_ENV = "MELODYJAX_SOUNDFONT"
SOUNDFONTS = (
  "/usr/share/sounds/sf2/FluidR3_GM.sf2",
  "/usr/share/sounds/sf2/default-GM.sf2",
  "/usr/share/soundfonts/FluidR3_GM.sf2",
  "/usr/share/soundfonts/default.sf2",
)
ADDITIVE = "additive"  # `render_additive`'s name
_FADE_SAMPLES = 4096
_LOCK = threading.Lock()  # one synthesizer per process, one note list at once


def find_soundfont() -> str | None:
  """The General MIDI soundfont to play, or None (module docstring)."""
  if SOUNDFONT_ENV in os.environ:
    path = os.environ[SOUNDFONT_ENV]
    return path if path and os.path.isfile(path) else None
  return next((p for p in SOUNDFONTS if os.path.isfile(p)), None)


@functools.lru_cache(maxsize=4)
def _synth(path: str, sample_rate: int):
  """(TinySoundFont synthesizer, soundfont id), loaded once per process
  (FluidR3_GM is 148 MB: about 2 s)."""
  import tinysoundfont

  synth = tinysoundfont.Synth(samplerate=sample_rate)
  return synth, synth.sfload(path)


def _playable_soundfont() -> str | None:
  """The soundfont `render` plays, None where none is found or
  TinySoundFont is missing (then the additive synth plays)."""
  path = find_soundfont()
  if path is None:
    return None
  try:
    import tinysoundfont  # noqa: F401
  except ImportError:
    return None
  return path


def _name(path: str | None) -> str:
  return ADDITIVE if path is None else f"tinysoundfont:{os.path.basename(path)}"


def renderer() -> str:
  """What `render` plays with: 'tinysoundfont:FILE.sf2' or 'additive'."""
  return _name(_playable_soundfont())


def _at_peak(audio: np.ndarray) -> np.ndarray:
  """`audio` scaled to peak at 0.8 (silence stays silent)."""
  return audio / (np.max(np.abs(audio)) or 1.0) * 0.8


def _length(events: Sequence[Event], tempo_bpm: float, sample_rate: int):
  """(onset sample of each event and of the end, total samples)."""
  seconds_per_quarter = 60.0 / tempo_bpm
  onsets = np.cumsum([0.0] + [float(e.quarters) for e in events])
  samples = np.round(onsets * seconds_per_quarter * sample_rate).astype(int)
  total = onsets[-1] * seconds_per_quarter + TAIL_SECONDS
  return samples, int(total * sample_rate) + 1


def render_additive(
  events: Sequence[Event],
  *,
  tempo_bpm: float = 100.0,
  sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
  """Events to mono audio in [-0.8, 0.8]: each note a few decaying harmonics.

  Returns:
    float64 [num_samples], half a second longer than the melody.
  """
  onsets, total = _length(events, tempo_bpm, sample_rate)
  audio = np.zeros(total)
  for event, start, end in zip(events, onsets[:-1], onsets[1:], strict=True):
    n = end - start
    length = n / sample_rate
    t = np.arange(n) / sample_rate
    envelope = np.minimum(1.0, t / 0.01) * np.exp(-3.0 * t)
    envelope *= np.minimum(1.0, (length - t) / 0.02)
    for pitch in event.pitches:
      f = 440.0 * 2.0 ** ((pitch - 69) / 12)
      tone = sum(np.sin(2 * np.pi * f * h * t) / h**1.5 for h in (1, 2, 3, 4))
      audio[start:end] += 0.25 * envelope * tone
  return _at_peak(audio)


def render_soundfont(
  events: Sequence[Event],
  path: str,
  *,
  tempo_bpm: float = 100.0,
  sample_rate: int = SAMPLE_RATE,
  program: int = 0,
  velocity: int = 80,
) -> np.ndarray:
  """Events played on General MIDI `program` of soundfont `path`: mono
  audio peaking at 0.8, as long as `render_additive`'s."""
  onsets, total = _length(events, tempo_bpm, sample_rate)
  with _LOCK:
    synth, font = _synth(path, sample_rate)
    # From a silent synthesizer: the same melody gives the same samples,
    # whatever this process played before it (a reset lets the notes still
    # sounding fade out over the next few hundred samples: dropped).
    synth.soundfonts[font].reset()
    synth.generate(_FADE_SAMPLES)
    synth.program_select(0, font, 0, program)
    chunks = []
    for event, start, end in zip(events, onsets[:-1], onsets[1:], strict=True):
      for pitch in event.pitches:
        synth.noteon(0, pitch, velocity)
      if end > start:
        chunks.append(np.frombuffer(synth.generate(int(end - start)), "<f4"))
      for pitch in event.pitches:
        synth.noteoff(0, pitch)
    chunks.append(np.frombuffer(synth.generate(total - onsets[-1]), "<f4"))
  stereo = np.concatenate(chunks).reshape(-1, 2)
  return _at_peak(stereo.mean(axis=1, dtype=np.float64)[:total])


def render(
  events: Sequence[Event],
  *,
  tempo_bpm: float = 100.0,
  sample_rate: int = SAMPLE_RATE,
  program: int = 0,
  velocity: int = 80,
) -> tuple[np.ndarray, str]:
  """Events to mono audio in [-0.8, 0.8] by `renderer()`: (float64
  [num_samples], half a second longer than the melody; the renderer)."""
  path = _playable_soundfont()
  if path is None:
    audio = render_additive(
      events, tempo_bpm=tempo_bpm, sample_rate=sample_rate
    )
    return audio, ADDITIVE
  audio = render_soundfont(
    events,
    path,
    tempo_bpm=tempo_bpm,
    sample_rate=sample_rate,
    program=program,
    velocity=velocity,
  )
  return audio, _name(path)


def wav_bytes(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
  """Audio in [-1, 1] as a 16-bit mono WAV file's bytes."""
  out = io.BytesIO()
  with wave.open(out, "wb") as f:
    f.setnchannels(1)
    f.setsampwidth(2)
    f.setframerate(sample_rate)
    f.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
  return out.getvalue()


def synthesize(
  events: Sequence[Event],
  path: str,
  *,
  tempo_bpm: float = 100.0,
  sample_rate: int = SAMPLE_RATE,
  program: int = 0,
  velocity: int = 80,
) -> tuple[np.ndarray, str]:
  """Writes `render(events)` as a 16-bit mono WAV; returns (the audio,
  its renderer)."""
  audio, name = render(
    events,
    tempo_bpm=tempo_bpm,
    sample_rate=sample_rate,
    program=program,
    velocity=velocity,
  )
  with files.atomic_write(path, "wb") as out:
    out.write(wav_bytes(audio, sample_rate))
  return audio, name


def read_wav(path: str) -> tuple[np.ndarray, int]:
  """A 16-bit mono WAV as (float32 samples in [-1, 1], rate in Hz)."""
  with wave.open(path) as f:
    rate, frames = f.getframerate(), f.readframes(f.getnframes())
  return np.frombuffer(frames, "<i2").astype(np.float32) / 32768.0, rate
