"""Note events and songs: the unit every stage passes on. No JAX, no MIDI.

A song is a list of events, one per note, chord or rest. Each event has the
MIDI pitches sounding (ascending; empty for a rest) and a duration in quarter
notes. Onsets are implicit: an event starts where the previous one ends.
"""

from __future__ import annotations

import fractions
from typing import NamedTuple


class Event(NamedTuple):
  """One note, chord or rest.

  Attributes:
    pitches: ascending MIDI pitches; empty for a rest.
    quarters: duration in quarter notes.
  """

  pitches: tuple[int, ...]
  quarters: fractions.Fraction


class Song(NamedTuple):
  """Events of one piece plus the meta data needed to write it back.

  Attributes:
    events: the note, chord and rest events in order.
    tempo_bpm: the first tempo, in quarter notes per minute.
    time_signature: the first time signature as (numerator, denominator).
    key_signature: the first key signature in mido's spelling ('C', 'F#m',
      'Bb'), or None when the file has none.
  """

  events: list[Event]
  tempo_bpm: float = 120.0
  time_signature: tuple[int, int] = (4, 4)
  key_signature: str | None = None
