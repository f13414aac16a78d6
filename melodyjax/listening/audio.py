"""A WAV preview of a melody: a small additive synthesizer. No JAX."""

from __future__ import annotations

import wave
from collections.abc import Sequence

import numpy as np

from melodyjax import files
from melodyjax.music.events import Event

SAMPLE_RATE = 22050  # samples per second


def render(
  events: Sequence[Event],
  *,
  tempo_bpm: float = 100.0,
  sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
  """Events to mono audio in [-0.8, 0.8]: each note a few decaying harmonics.

  Returns:
    float64 [num_samples], half a second longer than the melody.
  """
  seconds_per_quarter = 60.0 / tempo_bpm
  total = sum(float(e.quarters) for e in events) * seconds_per_quarter + 0.5
  audio = np.zeros(int(total * sample_rate) + 1)
  onset = 0.0
  for event in events:
    length = float(event.quarters) * seconds_per_quarter
    n = int(length * sample_rate)
    t = np.arange(n) / sample_rate
    envelope = np.minimum(1.0, t / 0.01) * np.exp(-3.0 * t)
    envelope *= np.minimum(1.0, (length - t) / 0.02)
    start = int(onset * sample_rate)
    for pitch in event.pitches:
      f = 440.0 * 2.0 ** ((pitch - 69) / 12)
      tone = sum(np.sin(2 * np.pi * f * h * t) / h**1.5 for h in (1, 2, 3, 4))
      audio[start : start + n] += 0.25 * envelope * tone
    onset += length
  peak = np.max(np.abs(audio)) or 1.0
  return audio / peak * 0.8


def synthesize(
  events: Sequence[Event],
  path: str,
  *,
  tempo_bpm: float = 100.0,
  sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
  """Writes `render(events)` as a 16-bit mono WAV; returns the audio."""
  audio = render(events, tempo_bpm=tempo_bpm, sample_rate=sample_rate)
  with files.atomic_write(path, "wb") as out, wave.open(out, "wb") as f:
    f.setnchannels(1)
    f.setsampwidth(2)
    f.setframerate(sample_rate)
    f.writeframes((audio * 32767).astype("<i2").tobytes())
  return audio


def read_wav(path: str) -> tuple[np.ndarray, int]:
  """A 16-bit mono WAV as (float32 samples in [-1, 1], rate in Hz)."""
  with wave.open(path) as f:
    rate, frames = f.getframerate(), f.readframes(f.getnframes())
  return np.frombuffer(frames, "<i2").astype(np.float32) / 32768.0, rate
