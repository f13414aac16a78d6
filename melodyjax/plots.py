"""Figures: piano rolls of event sequences (matplotlib, no screen needed)."""

from __future__ import annotations

from collections.abc import Sequence

from melodyjax import midi_io, tokens


def save_piano_roll(
  events: Sequence[midi_io.Event], path: str, *, title: str = ""
) -> None:
  """Draws events as a piano roll (time in quarter notes) into a PNG."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  onset = 0.0
  bars = []
  for event in events:
    length = float(event.quarters)
    for pitch in event.pitches:
      bars.append((onset, length, pitch))
    onset += length
  figure, axes = plt.subplots(figsize=(max(6.0, min(onset / 4, 24.0)), 3.0))
  for start, length, pitch in bars:
    axes.add_patch(
      matplotlib.patches.Rectangle(
        (start, pitch - 0.4), length * 0.95, 0.8, color="tab:blue"
      )
    )
  pitches = [pitch for _, _, pitch in bars] or [60]
  low, high = min(pitches) - 2, max(pitches) + 2
  axes.set_xlim(0, max(onset, 1.0))
  axes.set_ylim(low, high)
  ticks = [p for p in range(low, high + 1) if p % 12 in (0, 7)]
  axes.set_yticks(ticks, [tokens.note_name(p) for p in ticks])
  axes.set_xlabel("quarter notes")
  axes.grid(axis="x", alpha=0.3)
  if title:
    axes.set_title(title)
  figure.tight_layout()
  figure.savefig(path, dpi=80)
  plt.close(figure)
