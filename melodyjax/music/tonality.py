"""Key finding and transposition of songs. No JAX.

A song's key comes from its key signature when it has one, else from a
Krumhansl-Schmuckler estimate over its duration-weighted pitch classes.
A signature names a collection of pitches, not a mode: folk transcriptions
such as ESAC write a D minor tune with the D major signature and explicit
naturals. So with a signature, the key is the best-correlating of three
candidates: the signature's tonic as major, the same tonic as minor, and the
signature's relative minor (a minor signature is taken as it is).
Normalising transposes a song by the fewest semitones that take its key to
C major or A minor.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from melodyjax.music.events import Event, Song

MAJOR, MINOR = "major", "minor"
# Krumhansl & Kessler (1982) probe-tone profiles, tonic first.
_MAJOR_PROFILE = np.array(
  [6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88]
)
_MINOR_PROFILE = np.array(
  [6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17]
)
_PROFILES = {MAJOR: _MAJOR_PROFILE, MINOR: _MINOR_PROFILE}
_TONICS = {
  "C": 0,
  "B#": 0,
  "C#": 1,
  "Db": 1,
  "D": 2,
  "D#": 3,
  "Eb": 3,
  "E": 4,
  "Fb": 4,
  "F": 5,
  "E#": 5,
  "F#": 6,
  "Gb": 6,
  "G": 7,
  "G#": 8,
  "Ab": 8,
  "A": 9,
  "A#": 10,
  "Bb": 10,
  "B": 11,
  "Cb": 11,
}
_MAJOR_NAMES = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_MINOR_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "Bb", "B")


def parse_key_signature(key: str) -> tuple[int, str]:
  """mido key name to (tonic pitch class, mode): 'F#m' -> (6, 'minor')."""
  mode = MINOR if key.endswith("m") else MAJOR
  tonic = key[:-1] if mode == MINOR else key
  if tonic not in _TONICS:
    raise ValueError(f"unknown key signature {key!r}")
  return _TONICS[tonic], mode


TONIC_NAMES = tuple(_TONICS)


def parse_tonic(name: str) -> int:
  """A tonic's name to its pitch class: 'D' -> 2, 'Bb' -> 10.

  Raises:
    ValueError: not one of TONIC_NAMES.
  """
  if name not in _TONICS:
    raise ValueError(f"unknown tonic {name!r}")
  return _TONICS[name]


def key_signature_name(tonic: int, mode: str) -> str:
  """(tonic pitch class, mode) to a mido key name: (9, 'minor') -> 'Am'."""
  if mode == MINOR:
    return _MINOR_NAMES[tonic % 12] + "m"
  return _MAJOR_NAMES[tonic % 12]


def pitch_class_histogram(events: Sequence[Event]) -> np.ndarray:
  """Duration-weighted pitch-class histogram, shape [12]."""
  histogram = np.zeros(12)
  for event in events:
    for pitch in event.pitches:
      histogram[pitch % 12] += float(event.quarters)
  return histogram


def _standardize(x: np.ndarray) -> np.ndarray:
  x = x - x.mean(axis=-1, keepdims=True)
  norm = np.linalg.norm(x, axis=-1, keepdims=True)
  return x / np.where(norm > 0, norm, 1.0)


# Standardized profiles of all 24 keys, [mode, tonic, pitch class]: a key's
# Pearson correlation with a histogram is one dot product.
_KEY_PROFILES = {
  mode: _standardize(np.stack([np.roll(profile, t) for t in range(12)]))
  for mode, profile in _PROFILES.items()
}


def estimate_key(
  events: Sequence[Event],
  candidates: Sequence[tuple[int, str]] | None = None,
) -> tuple[int, str]:
  """Krumhansl-Schmuckler key estimate: (tonic pitch class, mode).

  Args:
    events: the song.
    candidates: keys to choose from (default: all 24). Ties go to the first.
  """
  if candidates is None:
    candidates = [(t, m) for m in (MAJOR, MINOR) for t in range(12)]
  histogram = _standardize(pitch_class_histogram(events))
  scores = [float(_KEY_PROFILES[m][t] @ histogram) for t, m in candidates]
  return candidates[int(np.argmax(scores))]


def find_key(song: Song) -> tuple[int, str]:
  """The song's key, from its signature and notes (see module docstring)."""
  if song.key_signature is None:
    return estimate_key(song.events)
  tonic, mode = parse_key_signature(song.key_signature)
  if mode == MINOR:
    return tonic, mode
  candidates = [(tonic, MAJOR), (tonic, MINOR), ((tonic + 9) % 12, MINOR)]
  return estimate_key(song.events, candidates)


def normalizing_shift(tonic: int, mode: str) -> int:
  """Semitones, in [-6, 5], that take the key to C major or A minor."""
  target = 0 if mode == MAJOR else 9
  return (target - tonic + 6) % 12 - 6


def transpose(events: Sequence[Event], semitones: int) -> list[Event] | None:
  """Events shifted by `semitones`, or None if a pitch leaves 0-127."""
  if semitones == 0:
    return list(events)
  out = []
  for event in events:
    pitches = tuple(p + semitones for p in event.pitches)
    if pitches and not (0 <= pitches[0] and pitches[-1] <= 127):
      return None
    out.append(Event(pitches, event.quarters))
  return out
