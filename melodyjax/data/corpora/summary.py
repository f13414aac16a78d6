"""A conversion's summary (conversion.json) from its tunes' records, and its
one-line report. No JAX.

Beside the totals of what was changed (repeats, grace notes, chords, ...),
the summary counts each ABC construct the abc reader met
(`music.abc_reader`'s counts: broken rhythm, tuplets, ties, chords, grace
notes, decorations, chord symbols, repeats, endings, inline fields, voices)
as occurrences and as tunes holding it.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

from melodyjax.data.corpora import builtin
from melodyjax.data.corpora.music21_abc import Flattened

# The constructs a report names, in the reader's counts' names.
CONSTRUCTS = (
  ("broken_rhythm", "broken rhythm"),
  ("tuplets", "tuplets"),
  ("ties", "ties"),
  ("chords", "chords"),
  ("grace_notes", "grace notes"),
  ("decorations", "decorations"),
  ("chord_symbols", "chord symbols"),
  ("annotations", "annotations"),
  ("repeats", "repeat signs"),
  ("endings", "endings"),
  ("inline_fields", "inline fields"),
  ("field_lines", "field lines in the body"),
  ("key_changes", "key changes"),
  ("meter_changes", "meter changes"),
  ("unit_changes", "unit changes"),
  ("voices_dropped", "voices dropped"),
  ("voice_overlays", "voice overlays"),
  ("unknown_symbols", "unknown symbols"),
  ("header_lines_skipped", "stray header lines skipped"),
)
_FAILURE_KEYS = ("path", "file", "index", "number", "title", "error")


def totals(records: list[dict]) -> dict[str, Any]:
  """The summary's counts, failures and warnings from the tunes' records."""
  done = [r for r in records if "error" not in r]
  failed = [r for r in records if "error" in r]
  occurrences, tunes = collections.Counter(), collections.Counter()
  for record in done:
    counts = record.get("constructs", {})
    occurrences.update(counts)
    tunes.update(name for name, count in counts.items() if count)
  return {
    "complete": True,
    "written": len(done),
    "failed": len(failed),
    "notes": sum(r["notes"] for r in done),
    "rests": sum(r["rests"] for r in done),
    "pickup_tunes": sum(1 for r in done if r["pickup"]),
    "ties_removed": sum(r["ties_removed"] for r in done),
    "repeats_played": sum(r["repeats_played"] for r in done),
    "shared_objects_copied": sum(r["objects_copied"] for r in done),
    **{
      field.name: sum(r[field.name] for r in done)
      for field in dataclasses.fields(Flattened)
    },
    "constructs": dict(sorted(occurrences.items())),
    "construct_tunes": dict(sorted(tunes.items())),
    "failures": [{k: r[k] for k in _FAILURE_KEYS if k in r} for r in failed],
    "warnings": [
      {"path": r["path"], "messages": r["warnings"]}
      for r in records
      if "warnings" in r
    ],
  }


def format_constructs(summary: dict) -> str:
  """'broken rhythm 1,204 (87 tunes), tuplets 12 (3 tunes), ...' of the
  constructs met ('' if none were counted)."""
  occurrences = summary.get("constructs") or {}
  tunes = summary.get("construct_tunes") or {}
  return ", ".join(
    f"{label} {occurrences[name]:,} ({tunes.get(name, 0):,} tunes)"
    for name, label in CONSTRUCTS
    if occurrences.get(name)
  )


def format_summary(summary: dict) -> str:
  """Returns the one-line report of a conversion summary."""
  flattened = [
    f"{summary[key]} {label}"
    for key, label in (
      ("duplicates", "second transcriptions skipped"),
      ("repeats_removed", "repeat signs removed"),
      ("repeats_played", "repeats played"),
      ("ending_bars_dropped", "first-ending bars dropped"),
      ("grace_notes_removed", "grace notes removed"),
      ("chords_flattened", "chords flattened"),
      ("chord_symbols_removed", "chord symbols removed"),
      ("voices_dropped", "voices dropped"),
    )
    if summary.get(key)
  ]
  return (
    f"{summary.get('label', 'ESAC')}: {summary['written']}/"
    f"{summary['tunes'] - summary.get('duplicates', 0)} tunes from "
    f"{summary['files']} files written, "
    f"{summary['failed']} failed; {summary['notes']} notes, "
    f"{summary['rests']} rests"
    + "".join(f"; {item}" for item in flattened)
    + f"; {summary['seconds']:.1f} s ({_reader_text(summary)})"
    + (", already done" if summary.get("reused") else "")
  )


def _reader_text(summary: dict) -> str:
  settings = builtin.summary_settings(summary)
  reader = (
    f"music21 {summary['music21_version']}"
    if settings["reader"] == "music21"
    else "abc reader"
  )
  return f"{reader}, repeats {settings['repeats']}"
