"""Figures: piano rolls of event sequences (matplotlib, no screen needed)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

from melodyjax.music import tokens
from melodyjax.music.events import Event


def save_piano_roll(
  events: Sequence[Event], path: str, *, title: str = ""
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


def curves_png(
  records: Sequence[Mapping[str, Any]],
  panels: Sequence[tuple[str, Sequence[str]]],
) -> bytes | None:
  """Metrics against steps as a PNG, one panel per (title, metric names).

  Args:
    records: metrics.jsonl's records (`audition.read_metrics`).
    panels: the panels; names absent from every record are left out.

  Returns:
    The PNG's bytes, or None when no panel has a point.
  """
  series = []
  for title, names in panels:
    lines = {}
    for name in names:
      points = [(r["step"], r[name]) for r in records if name in r]
      if points:
        lines[name] = sorted(points)
    if lines:
      series.append((title, lines))
  if not series:
    return None
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  figure, axes = plt.subplots(
    1, len(series), figsize=(6 * len(series), 3.2), squeeze=False
  )
  for ax, (title, lines) in zip(axes[0], series, strict=True):
    for name, points in lines.items():
      steps, values = zip(*points, strict=True)
      many = len(points) > 20
      ax.plot(steps, values, label=name, marker="" if many else ".")
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  figure.tight_layout()
  buffer = io.BytesIO()
  figure.savefig(buffer, format="png", dpi=80)
  plt.close(figure)
  return buffer.getvalue()
