"""The two token streams, pitch and duration, and their vocabularies. No JAX.

Pitch tokens are note names with sharps (`C4`, `G#5`; middle C is C4 = MIDI
60), chords are their ascending notes joined by `.` (`C4.E4.G4`), and a rest
is `R`. Duration tokens are canonical quarter-note lengths: a decimal when
the denominator is a power of two (`0.5`, `1.0`, `0.75`), else a fraction
(`1/3`, `2/3`, `4/3`). Each stream has its own vocabulary whose first ids are
reserved: pad = 0, bos = 1, eos = 2, unk = 3.
"""

from __future__ import annotations

import dataclasses
import fractions
import functools
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from melodyjax import files
from melodyjax.music.events import Event

REST = "R"
PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
RESERVED = (PAD, BOS, EOS, UNK)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
STREAMS = ("pitch", "duration")

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_NOTE_RE = re.compile(r"^([A-G])(#|b)?(-?\d+)$")
_NAME_TO_PC = {name: pc for pc, name in enumerate(NOTE_NAMES)}


class TokenError(ValueError):
  """A token that does not parse."""


@functools.cache
def note_name(pitch: int) -> str:
  """MIDI pitch to a note name with sharps: 60 -> 'C4', 80 -> 'G#5'."""
  if not 0 <= pitch <= 127:
    raise TokenError(f"MIDI pitch {pitch} is outside 0-127")
  return f"{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


@functools.cache
def parse_note_name(name: str) -> int:
  """Note name to MIDI pitch ('C4' -> 60; flats such as 'Bb3' accepted)."""
  match = _NOTE_RE.match(name)
  if not match:
    raise TokenError(f"not a note name: {name!r} (expected e.g. C4, G#5)")
  letter, accidental, octave = match.groups()
  pitch = _NAME_TO_PC[letter] + (int(octave) + 1) * 12
  pitch += {"#": 1, "b": -1, None: 0}[accidental]
  if not 0 <= pitch <= 127:
    raise TokenError(f"note {name!r} is outside the MIDI range")
  return pitch


@functools.lru_cache(maxsize=65536)
def pitch_token(pitches: tuple[int, ...]) -> str:
  """Ascending MIDI pitches (empty for a rest) to a pitch token."""
  if not pitches:
    return REST
  return ".".join(note_name(p) for p in pitches)


@functools.lru_cache(maxsize=65536)
def parse_pitch_token(token: str) -> tuple[int, ...]:
  """Pitch token to ascending MIDI pitches (empty for a rest)."""
  if token == REST:
    return ()
  pitches = tuple(sorted({parse_note_name(part) for part in token.split(".")}))
  return pitches


@functools.lru_cache(maxsize=4096)
def duration_token(quarters: fractions.Fraction) -> str:
  """Quarter-note length to its canonical token: 0.5 -> '0.5', 1/3 -> '1/3'."""
  quarters = fractions.Fraction(quarters)
  if quarters <= 0:
    raise TokenError(f"duration must be positive, got {quarters}")
  d = quarters.denominator
  if d & (d - 1) == 0:  # a power of two: exact as a decimal
    return repr(float(quarters))
  return f"{quarters.numerator}/{d}"


@functools.lru_cache(maxsize=4096)
def parse_duration_token(token: str) -> fractions.Fraction:
  """Duration token to a quarter-note length ('1/3' -> Fraction(1, 3))."""
  try:
    quarters = fractions.Fraction(token)
  except (ValueError, ZeroDivisionError):
    raise TokenError(
      f"not a duration: {token!r} (expected e.g. 0.5, 1.0, 1/3)"
    ) from None
  if quarters <= 0:
    raise TokenError(f"duration must be positive, got {token!r}")
  return quarters


def event_tokens(
  events: Iterable[Event],
) -> tuple[list[str], list[str]]:
  """Events to (pitch tokens, duration tokens)."""
  pitch, duration = [], []
  for event in events:
    pitch.append(pitch_token(event.pitches))
    duration.append(duration_token(event.quarters))
  return pitch, duration


def tokens_to_events(
  pitch: Sequence[str], duration: Sequence[str]
) -> list[Event]:
  """(pitch tokens, duration tokens) to events; reserved tokens stop it."""
  if len(pitch) != len(duration):
    raise TokenError(
      f"streams differ in length: {len(pitch)} pitch, {len(duration)} "
      "duration tokens"
    )
  events = []
  for p, d in zip(pitch, duration, strict=True):
    if p in RESERVED or d in RESERVED:
      raise TokenError(f"reserved token in events: {p!r}, {d!r}")
    events.append(Event(parse_pitch_token(p), parse_duration_token(d)))
  return events


def _sort_key(stream: str, token: str):
  if stream == "pitch":
    pitches = parse_pitch_token(token)
    return (len(pitches) > 1, pitches)  # rest, notes by pitch, then chords
  return (parse_duration_token(token),)


@dataclasses.dataclass(frozen=True)
class Vocab:
  """A stream's vocabulary: id <-> token, with reserved ids first.

  Attributes:
    stream: 'pitch' or 'duration'.
    tokens: all tokens by id; the first four are the reserved ones.
    counts: training-set count of each non-reserved token.
    min_count: tokens seen fewer times than this were mapped to unk.
  """

  stream: str
  tokens: tuple[str, ...]
  counts: Mapping[str, int] = dataclasses.field(default_factory=dict)
  min_count: int = 1

  def __post_init__(self):
    if self.stream not in STREAMS:
      raise ValueError(f"stream must be one of {STREAMS}, got {self.stream!r}")
    if self.tokens[: len(RESERVED)] != RESERVED:
      raise ValueError(f"{self.stream} vocabulary must start with {RESERVED}")
    if len(set(self.tokens)) != len(self.tokens):
      raise ValueError(f"{self.stream} vocabulary has duplicate tokens")
    object.__setattr__(
      self, "_index", {t: i for i, t in enumerate(self.tokens)}
    )

  def __len__(self) -> int:
    return len(self.tokens)

  def __contains__(self, token: str) -> bool:
    return token in self._index

  def id(self, token: str) -> int:
    """The id of `token`, or UNK_ID."""
    return self._index.get(token, UNK_ID)

  def encode(self, tokens: Iterable[str]) -> np.ndarray:
    """Tokens to an int32 array of ids; unknown tokens become UNK_ID."""
    get = self._index.get
    return np.fromiter((get(t, UNK_ID) for t in tokens), dtype=np.int32)

  def decode(self, ids: Iterable[int]) -> list[str]:
    """Ids to tokens."""
    return [self.tokens[int(i)] for i in ids]

  def to_json(self) -> dict:
    return {
      "stream": self.stream,
      "min_count": self.min_count,
      "reserved": {name: i for i, name in enumerate(RESERVED)},
      "tokens": [
        {"id": i, "token": t, "count": self.counts.get(t, 0)}
        for i, t in enumerate(self.tokens)
        if i >= len(RESERVED)
      ],
    }

  @classmethod
  def from_json(cls, data: Mapping) -> Vocab:
    entries = sorted(data["tokens"], key=lambda entry: entry["id"])
    ids = [entry["id"] for entry in entries]
    if ids != list(range(len(RESERVED), len(RESERVED) + len(ids))):
      raise ValueError("vocabulary ids are not contiguous")
    return cls(
      stream=data["stream"],
      tokens=RESERVED + tuple(entry["token"] for entry in entries),
      counts={entry["token"]: entry["count"] for entry in entries},
      min_count=data.get("min_count", 1),
    )

  def save(self, path: str | os.PathLike) -> None:
    """Writes the vocabulary as indented JSON (atomically)."""
    files.write_json(path, self.to_json())

  @classmethod
  def load(cls, path: str | os.PathLike) -> Vocab:
    """Reads a vocabulary written by `save`."""
    with open(path) as f:
      return cls.from_json(json.load(f))


def build_vocab(
  stream: str, counts: Mapping[str, int], min_count: int = 1
) -> Vocab:
  """Builds a vocabulary from token counts, in musical order.

  Args:
    stream: 'pitch' or 'duration'.
    counts: token -> count on the training split.
    min_count: tokens seen fewer times are left out (and encode as unk).

  Returns:
    The vocabulary: reserved tokens, then pitch tokens low to high (rest
    first, chords last) or durations short to long.
  """
  kept = [t for t, c in counts.items() if c >= min_count and t not in RESERVED]
  kept.sort(key=lambda t: _sort_key(stream, t))
  return Vocab(
    stream=stream,
    tokens=RESERVED + tuple(kept),
    counts={t: int(counts[t]) for t in kept},
    min_count=min_count,
  )
