"""A dataset's build report: counts, drops, duplicates; as JSON and text."""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from melodyjax.data import dataset as dataset_lib
from melodyjax.data.corpora import summary as summary_lib
from melodyjax.music import tokens


def make_report(
  records: Sequence[dict],
  arrays: Mapping[str, dict],
  pitch_vocab: tokens.Vocab,
  duration_vocab: tokens.Vocab,
  midi_dir: str,
  seconds: float,
  check_roundtrip: bool,
  conversion: Mapping[str, Any] | None = None,
  extra: Mapping[str, Any] | None = None,
) -> dict:
  """The report.json of a build (see `format_report` for its lines);
  `conversion` is the summary of the ABC conversion in the MIDI folder."""
  kept = [r for r in records if "drop" not in r]
  dropped = [r for r in records if "drop" in r]
  split_report = {
    split: _split_counts(arrays[split], pitch_vocab)
    for split in dataset_lib.SPLITS
  }
  groups, across = _duplicates(kept)
  duration_counts = collections.Counter()
  for record in kept:
    duration_counts.update(record["copies"][0][1][1])
  total_events = sum(duration_counts.values()) or 1
  common = ("0.25", "0.5", "0.75", "1.0", "1.5", "2.0", "3.0", "4.0")
  report = {
    "unknown_tokens": unknown_tokens(kept, pitch_vocab, duration_vocab),
    "midi_dir": midi_dir,
    "files": len(records),
    "songs": len(kept),
    "dropped": len(dropped),
    "dropped_by_reason": dict(
      sorted(collections.Counter(r["drop"] for r in dropped).items())
    ),
    "dropped_files": [
      {"source": r["source"], "reason": r["drop"], "message": r["message"]}
      for r in dropped
    ],
    "notes": sum(r["notes"] for r in kept),
    "splits": split_report,
    "vocab": {"pitch": len(pitch_vocab), "duration": len(duration_vocab)},
    "distinct_tokens_all_splits": {
      "pitch": len({t for r in kept for t in r["copies"][0][1][0]}),
      "duration": len(duration_counts),
    },
    "common_durations_share": round(
      sum(duration_counts[d] for d in common) / total_events, 5
    ),
    "keys": dict(sorted(collections.Counter(r["key"] for r in kept).items())),
    "key_sources": dict(collections.Counter(r["key_source"] for r in kept)),
    "duplicate_groups": len(groups),
    "duplicates_across_splits": [
      [{"source": s, "split": sp} for s, sp in g] for g in across
    ],
    "build_seconds": round(seconds, 3),
  }
  for name, value in (extra or {}).items():
    if value is not None:  # 'split_groups', 'excluded'
      report[name] = dict(value)
  if conversion:
    report["conversion"] = _conversion_report(conversion, kept)
  if check_roundtrip:
    failed = [r["source"] for r in kept if not r["roundtrip"]]
    report["roundtrip"] = {
      "checked": len(kept),
      "identical": len(kept) - len(failed),
      "failed": failed,
    }
  return report


def _conversion_report(conversion: Mapping[str, Any], kept) -> dict:
  """What the ABC conversion read: tunes, failures, each construct met,
  and the songs per collection and per type."""
  out = {
    key: conversion.get(key)
    for key in (
      "label",
      "corpus",
      "repeats",
      "source",
      "tunes",
      "written",
      "failed",
      "duplicates",
      "constructs",
      "construct_tunes",
    )
    if key in conversion
  }
  for key in ("collection", "type"):
    found = collections.Counter(
      r["tune"].get(key) or "" for r in kept if "tune" in r
    )
    out[f"songs_by_{key}"] = dict(sorted(found.items()))
  return out


def _split_counts(a: Mapping[str, np.ndarray], pitch_vocab) -> dict:
  """Songs, copies, events, rests, chords and unk tokens of one split."""
  rest_id = pitch_vocab.id(tokens.REST)
  rests = (
    int(np.sum(a["pitch"] == rest_id)) if tokens.REST in pitch_vocab else 0
  )
  chord_ids = [i for i, t in enumerate(pitch_vocab.tokens) if "." in t]
  return {
    "songs": int(np.sum(a["transpositions"] == 0)),
    "augmented_copies": int(np.sum(a["transpositions"] != 0)),
    "events": int(len(a["pitch"])),
    "rests": rests,
    "chords": int(np.isin(a["pitch"], chord_ids).sum()),
    "unk_pitch": int(np.sum(a["pitch"] == tokens.UNK_ID)),
    "unk_duration": int(np.sum(a["duration"] == tokens.UNK_ID)),
    "longest_song_events": int(np.diff(a["offsets"]).max(initial=0)),
  }


def _duplicates(kept: Sequence[dict]) -> tuple[list, list]:
  """(groups of songs with the same original token sequence, the groups
  among them that span splits); each member is (source, split)."""
  by_content = collections.defaultdict(list)
  for record in kept:
    pitch, duration = record["copies"][0][1]
    by_content[(tuple(pitch), tuple(duration))].append(
      (record["source"], record["split"])
    )
  groups = [group for group in by_content.values() if len(group) > 1]
  across = [g for g in groups if len({split for _, split in g}) > 1]
  return groups, across


def unknown_tokens(
  kept: Sequence[dict], pitch_vocab: tokens.Vocab, duration_vocab: tokens.Vocab
) -> dict[str, Any]:
  """Per stream: the share of events (every split, original songs) whose
  token is not in the vocabulary, and the most common such tokens."""
  out = {}
  for stream, vocab, index in (
    ("pitch", pitch_vocab, 0),
    ("duration", duration_vocab, 1),
  ):
    seen = collections.Counter()
    for record in kept:
      seen.update(record["copies"][0][1][index])
    total = sum(seen.values())
    unseen = {t: c for t, c in seen.items() if t not in vocab}
    out[stream] = {
      "share": sum(unseen.values()) / total if total else 0.0,
      "most_common": dict(collections.Counter(unseen).most_common(8)),
    }
  return out


def format_report(report: Mapping[str, Any], limit: int = 10) -> str:
  """The build report as a few human-readable lines."""
  lines = [
    f"files: {report['files']}  songs: {report['songs']}  "
    f"dropped: {report['dropped']}  notes: {report['notes']}",
  ]
  if report["dropped_by_reason"]:
    reasons = ", ".join(
      f"{k} {v}" for k, v in report["dropped_by_reason"].items()
    )
    lines.append(f"dropped by reason: {reasons}")
    for drop in report["dropped_files"][:limit]:
      lines.append(f"  {drop['reason']}: {drop['message']}")
    if len(report["dropped_files"]) > limit:
      lines.append(
        f"  ... {len(report['dropped_files']) - limit} more in report.json"
      )
  for split, s in report["splits"].items():
    extra = (
      f" (+{s['augmented_copies']} transposed)" if s["augmented_copies"] else ""
    )
    lines.append(
      f"{split:5s}: {s['songs']} songs{extra}, {s['events']} events, "
      f"{s['rests']} rests, {s['chords']} chords, unk {s['unk_pitch']} "
      f"pitch / {s['unk_duration']} duration"
      + (
        f", longest song {s['longest_song_events']} events"
        if "longest_song_events" in s
        else ""
      )
    )
  distinct = report["distinct_tokens_all_splits"]
  lines.append(
    f"distinct tokens: {distinct['pitch']} pitch, {distinct['duration']} "
    f"duration; vocab (with 4 reserved): {report['vocab']['pitch']} pitch, "
    f"{report['vocab']['duration']} duration"
  )
  for stream, unknown in report.get("unknown_tokens", {}).items():
    if unknown["share"]:
      common = ", ".join(
        f"{t} ({c})" for t, c in unknown["most_common"].items()
      )
      lines.append(
        f"{stream} tokens outside the vocabulary: "
        f"{100 * unknown['share']:.2f}% of events ({common})"
      )
  lines.append(
    "durations 0.25..4 (8 common values) cover "
    f"{100 * report['common_durations_share']:.2f}% of events"
  )
  lines.append(
    f"duplicate songs: {report['duplicate_groups']} groups, "
    f"{len(report['duplicates_across_splits'])} across splits"
  )
  if "split_groups" in report:
    g = report["split_groups"]
    lines.append(
      f"split by groups: {g['groups']} groups, {g['groups_of_several']} of "
      f"several songs ({g['songs_in_groups_of_several']} songs, the largest "
      f"{g['largest_group']}); {g['moved_from_path_hash']} songs in another "
      "split than their path's hash"
    )
  if "excluded" in report:
    e = report["excluded"]
    lines.append(
      f"excluded: {e['excluded']} songs matching the {'/'.join(e['splits'])} "
      f"songs ({e['reference_songs']}) of {e['dataset']}: {e['identical']} "
      f"identical, {e['near']} near-duplicates"
    )
  if "conversion" in report:
    lines.extend(_format_conversion(report["conversion"]))
  if "roundtrip" in report:
    rt = report["roundtrip"]
    lines.append(
      f"round trip events->MIDI->events: {rt['identical']}/"
      f"{rt['checked']} identical"
    )
  lines.append(f"built in {report['build_seconds']:.2f} s")
  return "\n".join(lines)


def _format_conversion(conversion: Mapping[str, Any]) -> list[str]:
  """The ABC conversion's lines of `format_report`."""
  lines = [
    f"ABC: {conversion.get('label', '')}: {conversion.get('written', 0)} of "
    f"{conversion.get('tunes', 0) - (conversion.get('duplicates') or 0)} "
    "tunes read, "
    f"{conversion.get('failed', 0)} unreadable (dropped as abc_unreadable)"
  ]
  constructs = summary_lib.format_constructs(conversion)
  if constructs:
    lines.append(f"ABC constructs: {constructs}")
  by_type = conversion.get("songs_by_type") or {}
  if any(by_type):
    common = sorted(by_type.items(), key=lambda kv: -kv[1])[:8]
    lines.append(
      "songs by type: "
      + ", ".join(f"{kind or '(none)'} {count}" for kind, count in common)
    )
  return lines


def describe_windows(split: dataset_lib.Split, seq_len: int) -> str:
  """How a split's songs fit training windows of `seq_len` events
  (objective 'all': a song of n events is whole in one window when
  n < seq_len, its bos and events the inputs, its events and eos the
  targets; a longer one is cut into ceil((n + 1) / seq_len) windows, and a
  model sees nothing across a cut unless it carries its state)."""
  lengths = np.diff(split.offsets)
  cut = lengths >= seq_len
  line = (
    f"{int(np.sum(~cut))} of {len(lengths)} songs whole in one window of "
    f"{seq_len} events"
  )
  if not cut.any():
    return line
  windows = int(np.sum((lengths[cut] + seq_len) // seq_len))
  return line + (
    f"; {int(cut.sum())} longer ones (up to {int(lengths.max())} events) "
    f"cut into {windows} windows"
  )
