"""Where each event falls in its bar: time signatures, pickups, positions.
No JAX.

A bar position is an event's onset within its bar, in grid steps (`grid`
per quarter note). Bar lines come from the song's time signatures: the
first one holds from the file's start, each later one starts a bar where
it stands. The first bar may be a pickup (anacrusis): music21, and so the
ESAC conversion, writes a pickup from time 0 with no leading silence, so
bar lines counted from time 0 would all be shifted by its length. The
pickup is, in this order:
- given (ESAC: read from each tune's ABC text, `data.esac_metre`);
- where the first time signature changes off its own bar lines, the
  remainder (music21 writes a change at a bar line);
- for a song whose first note starts the file: the shift, in grid steps,
  that puts the most note length on bar lines (each note on a bar line
  counts its duration; ties go to the smallest shift, 0 first). Against
  music21's own pickups this is right for 431 of 528 sampled ESAC tunes
  (82%; no pickup, 0, is right for 35%); the ABC gives every one.
- 0 for a song with silence before its first note (the file's bars hold).
A song without a time signature, or with one whose bar is not a whole
number of grid steps, has unknown positions (-1).
"""

from __future__ import annotations

import bisect
import fractions
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from melodyjax.music.events import Event, Song

UNKNOWN = -1  # the bar position of an event whose bar is unknown
# A metre hint of a corpus (`data.corpora.builtin.metre_hints`): the song
# has no meter, whatever its MIDI file says; other hints are pickups.
NO_METER = "none"


def signature_label(signature: tuple[int, int]) -> str:
  """(3, 4) -> '3/4'."""
  return f"{signature[0]}/{signature[1]}"


def parse_signature(text: str) -> tuple[int, int]:
  """'3/4' -> (3, 4).

  Raises:
    ValueError: not NUMERATOR/DENOMINATOR with a numerator >= 1 and a
      power-of-two denominator up to 32.
  """
  try:
    numerator, denominator = (int(x) for x in text.split("/"))
  except ValueError:
    raise ValueError(f"must look like 3/4, got {text!r}") from None
  if numerator < 1 or denominator not in (1, 2, 4, 8, 16, 32):
    raise ValueError(
      f"{text}: the numerator must be >= 1 and the denominator a power of "
      "two up to 32"
    )
  return numerator, denominator


def bar_quarters(signature: tuple[int, int]) -> fractions.Fraction:
  """The length of a bar in quarter notes: (6, 8) -> 3."""
  return fractions.Fraction(4 * signature[0], signature[1])


def bar_steps(signature: tuple[int, int] | None, grid: int) -> int | None:
  """A bar's length in grid steps, or None (no signature, or not whole)."""
  if signature is None:
    return None
  steps = bar_quarters(signature) * grid
  return int(steps) if steps.denominator == 1 and steps > 0 else None


class Metre(NamedTuple):
  """The bar structure of one song.

  Attributes:
    positions: [num_events] each event's onset within its bar, in grid
      steps (UNKNOWN: no usable time signature).
    signatures: [num_events] the time signature in force at each onset
      (None where unknown).
    end_position: where an event after the last one would start.
    end_signature: the time signature in force there.
    pickup_steps: the pickup's length in grid steps (0: none).
  """

  positions: list[int]
  signatures: list[tuple[int, int] | None]
  end_position: int
  end_signature: tuple[int, int] | None
  pickup_steps: int


def infer_pickup(
  onsets: np.ndarray, lengths: np.ndarray, bar: int, limit: int | None
) -> int:
  """The shift of the bar lines that puts the most note length on them.

  Args:
    onsets: int [num_notes] note onsets in grid steps from the file start.
    lengths: int [num_notes] their durations in grid steps.
    bar: the bar length in grid steps.
    limit: only notes before this step count (the next time signature).

  Returns:
    The pickup in grid steps, in [0, bar).
  """
  if limit is not None:
    keep = onsets < limit
    onsets, lengths = onsets[keep], lengths[keep]
  shifts = np.arange(bar)
  on_line = (onsets[None, :] - shifts[:, None]) % bar == 0
  scores = on_line.astype(np.int64) @ lengths.astype(np.int64)
  return int(np.argmax(scores))  # the first maximum: the smallest shift


def _onsets(events: Sequence[Event], start: int, grid: int) -> np.ndarray:
  """int [num_events + 1] onsets in grid steps, then the end."""
  steps = [int(event.quarters * grid) for event in events]
  return start + np.concatenate([[0], np.cumsum(steps, dtype=np.int64)])


def song_metre(
  song: Song, grid: int, pickup_quarters: fractions.Fraction | None = None
) -> Metre:
  """Every event's bar position (see the module docstring).

  Args:
    song: the song, with its time signatures and start.
    grid: quantization steps per quarter note.
    pickup_quarters: the pickup's length when known (ESAC's ABC), else
      None to find it.
  """
  n = len(song.events)
  unknown = Metre([UNKNOWN] * n, [None] * n, UNKNOWN, None, 0)
  first_bar = bar_steps(song.time_signature, grid)
  if first_bar is None:
    return unknown
  onsets = _onsets(song.events, int(song.start_quarters * grid), grid)
  anchors = [0] + [int(q * grid) for q, _, _ in song.meter_changes]
  signatures = [song.time_signature] + [
    (a, b) for _, a, b in song.meter_changes
  ]
  limit = anchors[1] if len(anchors) > 1 else None
  if pickup_quarters is not None:
    pickup = int(pickup_quarters * grid) % first_bar
  elif limit is not None and limit % first_bar:
    pickup = limit % first_bar
  elif onsets[0] == 0:
    notes = np.array([bool(e.pitches) for e in song.events], bool)
    pickup = infer_pickup(
      onsets[:-1][notes], np.diff(onsets)[notes], first_bar, limit
    )
  else:
    pickup = 0
  anchors[0] = pickup - first_bar if pickup else 0
  positions, in_force = [], []
  for onset in onsets.tolist():
    segment = max(0, bisect.bisect_right(anchors, onset) - 1)
    bar = bar_steps(signatures[segment], grid)
    if bar is None:
      positions.append(UNKNOWN)
      in_force.append(None)
    else:
      positions.append((onset - anchors[segment]) % bar)
      in_force.append(signatures[segment])
  return Metre(
    positions[:-1], in_force[:-1], positions[-1], in_force[-1], pickup
  )


def event_positions(
  events: Sequence[Event], signature: tuple[int, int], grid: int
) -> list[int]:
  """Bar positions of events that start on a downbeat (a generated melody
  in one time signature), in grid steps; [num_events]."""
  song = Song(list(events), time_signature=signature)
  return song_metre(song, grid, fractions.Fraction(0)).positions
