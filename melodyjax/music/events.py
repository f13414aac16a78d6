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
    time_signature: the first time signature as (numerator, denominator),
      or None when the file has none.
    key_signature: the first key signature in mido's spelling ('C', 'F#m',
      'Bb'), or None when the file has none.
    meter_changes: the later time signatures, each (onset in quarter notes
      from the file's start, numerator, denominator), in time order.
    start_quarters: the first event's onset from the file's start, in
      quarter notes (silence before the first note is not an event).
  """

  events: list[Event]
  tempo_bpm: float = 120.0
  time_signature: tuple[int, int] | None = (4, 4)
  key_signature: str | None = None
  meter_changes: tuple[tuple[fractions.Fraction, int, int], ...] = ()
  start_quarters: fractions.Fraction = fractions.Fraction(0)
