"""Figures: piano rolls, training curves and the evaluation's histograms
(matplotlib, no screen needed)."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from melodyjax import files
from melodyjax.music import tokens
from melodyjax.music.events import Event


def _save(figure, path: str, dpi: int) -> None:
  """Writes a figure as a PNG atomically (`files.atomic_write`), closes it."""
  from matplotlib import pyplot as plt

  try:
    with files.atomic_write(path, "wb") as f:
      figure.savefig(f, format="png", dpi=dpi)
  finally:
    plt.close(figure)


def save_piano_roll(
  events: Sequence[Event], path: str, *, title: str = ""
) -> None:
  """Draws events as a piano roll (time in quarter notes) into a PNG."""
  import matplotlib

  matplotlib.use("Agg")
  from matplotlib import pyplot as plt

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
  _save(figure, path, dpi=80)


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
      # null (an undefined value) and NaN are gaps, not points.
      points = [
        (r["step"], r[name])
        for r in records
        if isinstance(r.get(name), int | float) and math.isfinite(r[name])
      ]
      if points:
        lines[name] = sorted(points)
    if lines:
      series.append((title, lines))
  if not series:
    return None
  import matplotlib

  matplotlib.use("Agg")
  from matplotlib import pyplot as plt

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


def save_histograms(generated, reference, path: str) -> None:
  """Pitch-class, interval and duration histograms of two sets, as a PNG.

  Args:
    generated, reference: `listening.stats.compute_statistics` results.
    path: the PNG file.
  """
  import matplotlib

  matplotlib.use("Agg")
  from matplotlib import pyplot as plt

  figure, axes = plt.subplots(1, 3, figsize=(14, 3.5))
  names = [tokens.NOTE_NAMES, [str(i) for i in range(-12, 13)]]
  for ax, key, labels in zip(
    axes[:2], ("pitch_class", "interval"), names, strict=True
  ):
    x = np.arange(len(labels))
    for offset, source, label in (
      (-0.2, reference, "corpus"),
      (0.2, generated, "generated"),
    ):
      values = source[key] / max(source[key].sum(), 1)
      ax.bar(x + offset, values, width=0.4, label=label)
    ax.set_xticks(
      x[:: 1 if key == "pitch_class" else 3],
      labels[:: 1 if key == "pitch_class" else 3],
    )
    ax.set_title(key.replace("_", " "))
  # The 12 most common durations of either set, shortest first.
  counts = {
    d: reference["duration"].get(d, 0) + generated["duration"].get(d, 0)
    for d in set(reference["duration"]) | set(generated["duration"])
  }
  durations = sorted(
    sorted(counts, key=counts.get, reverse=True)[:12],
    key=tokens.parse_duration_token,
  )
  x = np.arange(len(durations))
  for offset, source, label in (
    (-0.2, reference, "corpus"),
    (0.2, generated, "generated"),
  ):
    total = max(sum(source["duration"].values()), 1)
    axes[2].bar(
      x + offset,
      [source["duration"].get(d, 0) / total for d in durations],
      width=0.4,
      label=label,
    )
  axes[2].set_xticks(x, durations, rotation=60)
  axes[2].set_title("duration (quarters)")
  axes[2].legend()
  figure.tight_layout()
  _save(figure, path, dpi=90)
