"""Checks of a request's outcome: did the melodies come out as asked? No JAX.

The sample statistics (`stats`) compare sets of melodies with a corpus;
these check the controls of `sample_main.py` on the melodies they gave.
In the asked time signature, `downbeat_share` is the share of the bar
lines inside a melody (it starts on one) at which a note starts, and
`strong_on_beat_share` the share of strong onsets (notes at least a beat
long; a compound metre's beat is three of its units) on a beat; `bars` is
the length in bars; `third_share` the share of the asked mode's third
among the notes a minor or a major third above the tonic; `mode_share`
the share of melodies that `tonality.estimate_key` puts in the asked key
rather than its relative (same notes, other tonic: the mode); `key_share`
the share it puts, among all 24 keys, in the asked key or its relative
(the asked key's notes); `tonic_end_share` the share ending on a single
note of the tonic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from melodyjax.music import metre, tonality
from melodyjax.music.events import Event

Melody = Sequence[Event]


def _share(a, b) -> float:
  return float(a / b) if b else math.nan


def beat_steps(signature: tuple[int, int], grid: int) -> int:
  """A beat in grid steps: the denominator's unit, three of them in a
  compound metre (6/8, 9/8, 12/8)."""
  numerator, denominator = signature
  unit = 4 * grid // denominator
  compound = denominator >= 8 and numerator % 3 == 0 and numerator > 3
  return 3 * unit if compound else unit


def _metre_counts(events: Melody, signature, grid: int) -> np.ndarray:
  """[bar lines hit, bar lines, strong onsets on a beat, strong onsets]."""
  bar = metre.bar_steps(signature, grid)
  beat = beat_steps(signature, grid)
  positions = metre.event_positions(events, signature, grid)
  onsets = np.concatenate(
    [[0], np.cumsum([int(e.quarters * grid) for e in events])]
  )
  notes = [i for i, e in enumerate(events) if e.pitches]
  hit = {int(onsets[i]) for i in notes}
  lines = range(bar, int(onsets[-1]), bar)
  strong = [i for i in notes if onsets[i + 1] - onsets[i] >= beat]
  return np.array(
    [
      sum(line in hit for line in lines),
      len(lines),
      sum(positions[i] % beat == 0 for i in strong),
      len(strong),
    ]
  )


def control_checks(
  melodies: Sequence[Melody],
  *,
  signature: tuple[int, int],
  grid: int,
  tonic: int,
  mode: str,
) -> dict[str, float]:
  """The checks of a request's outcome (see the module docstring).

  Args:
    melodies: the generated melodies, each starting on a downbeat.
    signature: the time signature asked for.
    grid: quantization steps per quarter note.
    tonic: the asked key's tonic pitch class; mode: its mode.

  Returns:
    {downbeat_share, strong_on_beat_share, bars_mean, bars_min, bars_max,
    third_share, mode_share, key_share, tonic_end_share}.
  """
  counts = sum(_metre_counts(m, signature, grid) for m in melodies)
  bars = [
    float(sum(e.quarters for e in m) / metre.bar_quarters(signature))
    for m in melodies
  ]
  third = 3 if mode == tonality.MINOR else 4
  thirds = [(p - tonic) % 12 for m in melodies for e in m for p in e.pitches]
  asked = sum(t == third for t in thirds)
  relative = (
    ((tonic + 3) % 12, tonality.MAJOR)
    if mode == tonality.MINOR
    else ((tonic + 9) % 12, tonality.MINOR)
  )
  sounding = [m for m in melodies if any(e.pitches for e in m)]
  in_mode = [
    tonality.estimate_key(m, [(tonic, mode), relative]) == (tonic, mode)
    for m in sounding
  ]
  in_key = [
    tonality.estimate_key(m) in ((tonic, mode), relative) for m in sounding
  ]
  last = [next((e for e in reversed(m) if e.pitches), None) for m in melodies]
  return {
    "downbeat_share": _share(counts[0], counts[1]),
    "strong_on_beat_share": _share(counts[2], counts[3]),
    "bars_mean": float(np.mean(bars)),
    "bars_min": float(np.min(bars)),
    "bars_max": float(np.max(bars)),
    "third_share": _share(asked, sum(t in (3, 4) for t in thirds)),
    "mode_share": _share(sum(in_mode), len(in_mode)),
    "key_share": _share(sum(in_key), len(in_key)),
    "tonic_end_share": _share(
      sum(
        e is not None and len(e.pitches) == 1 and e.pitches[0] % 12 == tonic
        for e in last
      ),
      len(melodies),
    ),
  }
