"""A folder of MIDI files to a tokenized, split dataset cached on disk. No JAX.

`build_dataset` reads every MIDI file below a folder in parallel, turns each
into a song of (pitch, duration) tokens or drops it with a reason, splits the
songs into train / validation / test by a hash of their relative path, builds
one vocabulary per stream on the training split, and writes:

  OUT/manifest.json        source files (size, mtime), data config, version
  OUT/arrays.npz           token ids per split (flat, with song offsets)
  OUT/vocab_pitch.json     the pitch vocabulary (human-readable)
  OUT/vocab_duration.json  the duration vocabulary
  OUT/report.json          counts, drops per reason, dropped files, duplicates
  OUT/songs.jsonl          every song's tokens, one JSON object per line

A second call with the same folder and data config loads the cache (well
under a second); a changed folder or config rebuilds it.

Command line: `python -m melodyjax.corpus --midi_dir DIR --out DIR`.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from melodyjax import keys, midi_io, tokens

FORMAT_VERSION = 1
SPLITS = ("train", "valid", "test")
MIDI_SUFFIXES = (".mid", ".midi", ".smf", ".kar")


class CorpusError(Exception):
  """A user-facing problem with the corpus folder, cache or options."""


@dataclasses.dataclass(frozen=True)
class CorpusConfig:
  """How MIDI files become token sequences (mirrors `config.data`).

  Attributes:
    grid: quantization steps per quarter note.
    polyphony: 'chord', 'top' or 'reject' for notes that share an onset.
    tracks: 'merge' every non-drum track, or keep the 'melody' part.
    normalize_key: transpose each song to C major / A minor.
    transpositions: extra copies of each training song shifted by these
      semitones (augmentation; 0 and out-of-range copies are skipped).
    min_notes: songs with fewer note or chord events are dropped.
    max_notes: songs with more note or chord events are dropped (0: no limit).
    min_count: training-set count below which a token maps to unk.
    valid_fraction: share of songs in the validation split.
    test_fraction: share of songs in the test split.
  """

  grid: int = 12
  polyphony: str = "chord"
  tracks: str = "merge"
  normalize_key: bool = True
  transpositions: tuple[int, ...] = ()
  min_notes: int = 4
  max_notes: int = 0
  min_count: int = 1
  valid_fraction: float = 0.05
  test_fraction: float = 0.05

  def __post_init__(self):
    object.__setattr__(self, "transpositions", tuple(self.transpositions))
    problems = []
    if self.grid < 1:
      problems.append(f"grid must be >= 1, got {self.grid}")
    if self.polyphony not in midi_io.POLYPHONY_POLICIES:
      problems.append(
        f"polyphony must be one of {midi_io.POLYPHONY_POLICIES}, "
        f"got {self.polyphony!r}"
      )
    if self.tracks not in midi_io.TRACK_POLICIES:
      problems.append(
        f"tracks must be one of {midi_io.TRACK_POLICIES}, got {self.tracks!r}"
      )
    if self.min_notes < 1 or self.max_notes < 0:
      problems.append("min_notes must be >= 1 and max_notes >= 0")
    if self.min_count < 1:
      problems.append(f"min_count must be >= 1, got {self.min_count}")
    fractions = (self.valid_fraction, self.test_fraction)
    if min(fractions) < 0 or sum(fractions) >= 1:
      problems.append(
        "valid_fraction and test_fraction must be >= 0 and sum to < 1, got "
        f"{self.valid_fraction} and {self.test_fraction}"
      )
    if problems:
      raise CorpusError("; ".join(problems))

  @classmethod
  def from_config(cls, data_config: Mapping[str, Any]) -> CorpusConfig:
    """Builds it from the `data` group of a config (extra fields ignored)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in dict(data_config).items() if k in names})

  def to_json(self) -> dict:
    return {
      **dataclasses.asdict(self),
      "transpositions": list(self.transpositions),
    }


@dataclasses.dataclass(frozen=True)
class Split:
  """The songs of one split as flat id arrays.

  Attributes:
    pitch: int32 [total_events] pitch ids of all songs, concatenated.
    duration: int32 [total_events] duration ids.
    offsets: int64 [num_songs + 1]; song i is events offsets[i]:offsets[i+1].
    sources: [num_songs] source file path relative to the MIDI folder.
    transpositions: int32 [num_songs] semitones of augmentation (0: original).
  """

  pitch: np.ndarray
  duration: np.ndarray
  offsets: np.ndarray
  sources: np.ndarray
  transpositions: np.ndarray

  def __len__(self) -> int:
    return len(self.offsets) - 1

  @property
  def num_events(self) -> int:
    return int(self.offsets[-1])

  def song(self, i: int) -> tuple[np.ndarray, np.ndarray]:
    """(pitch ids, duration ids) of song i, each [num_events]."""
    start, end = self.offsets[i], self.offsets[i + 1]
    return self.pitch[start:end], self.duration[start:end]


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A built dataset: splits, vocabularies and the build report."""

  path: str
  config: CorpusConfig
  splits: Mapping[str, Split]
  pitch_vocab: tokens.Vocab
  duration_vocab: tokens.Vocab
  report: Mapping[str, Any]

  @property
  def train(self) -> Split:
    return self.splits["train"]

  @property
  def valid(self) -> Split:
    return self.splits["valid"]

  @property
  def test(self) -> Split:
    return self.splits["test"]


# ---------------------------------------------------------------- file level


def list_midi_files(midi_dir: str | os.PathLike) -> list[str]:
  """Relative paths of the MIDI files below `midi_dir`, sorted."""
  root = os.fspath(midi_dir)
  found = []
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames.sort()
    for name in filenames:
      if name.lower().endswith(MIDI_SUFFIXES) and not name.startswith("."):
        found.append(os.path.relpath(os.path.join(dirpath, name), root))
  found.sort()
  return found


def assign_split(relpath: str, config: CorpusConfig) -> str:
  """Deterministic split of a song from a hash of its relative path."""
  digest = hashlib.sha1(relpath.replace(os.sep, "/").encode()).digest()
  u = int.from_bytes(digest[:8], "big") / 2.0**64
  if u < config.test_fraction:
    return "test"
  if u < config.test_fraction + config.valid_fraction:
    return "valid"
  return "train"


def _process_file(
  midi_dir: str, relpath: str, config: CorpusConfig, check_roundtrip: bool
) -> dict:
  """One file to a song record, or a drop record with a reason."""
  path = os.path.join(midi_dir, relpath)
  try:
    song = midi_io.read_midi(
      path,
      grid=config.grid,
      polyphony=config.polyphony,
      tracks=config.tracks,
    )
  except midi_io.MidiError as e:
    return {"source": relpath, "drop": e.reason, "message": str(e)}
  except Exception as e:  # noqa: BLE001 - a corrupt file never stops a build
    return {"source": relpath, "drop": "unreadable", "message": f"{path}: {e}"}
  num_notes = sum(1 for event in song.events if event.pitches)
  if num_notes < config.min_notes:
    return {
      "source": relpath,
      "drop": "too_short",
      "message": f"{path}: {num_notes} notes < min_notes",
    }
  if config.max_notes and num_notes > config.max_notes:
    return {
      "source": relpath,
      "drop": "too_long",
      "message": f"{path}: {num_notes} notes > max_notes",
    }
  record = {"source": relpath, "split": assign_split(relpath, config)}
  if check_roundtrip:
    again = midi_io.read_midi(
      midi_io.song_to_bytes(song),
      grid=config.grid,
      polyphony=config.polyphony,
      tracks=config.tracks,
    )
    record["roundtrip"] = again.events == song.events
  events = song.events
  try:
    tonic, mode = keys.find_key(song)
  except ValueError:
    tonic, mode = keys.estimate_key(events)
  record["key"] = keys.key_signature_name(tonic, mode)
  record["key_source"] = "signature" if song.key_signature else "estimate"
  if config.normalize_key:
    shifted = keys.transpose(events, keys.normalizing_shift(tonic, mode))
    if shifted is None:
      return {
        "source": relpath,
        "drop": "out_of_range",
        "message": f"{path}: pitches leave 0-127 when normalised",
      }
    events = shifted
  copies = [(0, tokens.event_tokens(events))]
  if record["split"] == "train":
    for shift in config.transpositions:
      if shift != 0 and (moved := keys.transpose(events, shift)) is not None:
        copies.append((shift, tokens.event_tokens(moved)))
  record["copies"] = copies
  record["notes"] = num_notes
  return record


def _process_chunk(args) -> list[dict]:
  midi_dir, relpaths, config, check_roundtrip = args
  return [_process_file(midi_dir, r, config, check_roundtrip) for r in relpaths]


def _map_files(
  midi_dir: str,
  relpaths: Sequence[str],
  config: CorpusConfig,
  check_roundtrip: bool,
  workers: int,
  progress: bool,
) -> list[dict]:
  """Processes all files, in worker processes when workers > 1."""
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top

  bar = tqdm(
    total=len(relpaths),
    desc="reading MIDI",
    unit="file",
    disable=not progress,
    file=sys.stderr,
    mininterval=0.5,
  )
  records = []
  chunk = 64
  jobs = [
    (midi_dir, relpaths[i : i + chunk], config, check_roundtrip)
    for i in range(0, len(relpaths), chunk)
  ]
  with bar:
    if workers <= 1 or len(jobs) <= 1:
      for job in jobs:
        records.extend(_process_chunk(job))
        bar.update(len(job[1]))
    else:
      # fork is fastest, but not once JAX has started its threads.
      method = "forkserver" if "jax" in sys.modules else "fork"
      context = multiprocessing.get_context(method)
      with context.Pool(workers) as pool:
        for result in pool.imap_unordered(_process_chunk, jobs):
          records.extend(result)
          bar.update(len(result))
  records.sort(key=lambda r: r["source"])
  return records


# ------------------------------------------------------------- dataset level


def _source_listing(midi_dir: str, relpaths: Sequence[str]) -> dict:
  listing = {}
  for relpath in relpaths:
    stat = os.stat(os.path.join(midi_dir, relpath))
    listing[relpath] = [stat.st_size, stat.st_mtime_ns]
  return listing


def _listing_digest(listing: Mapping[str, Sequence[int]]) -> str:
  return hashlib.sha1(json.dumps(listing, sort_keys=True).encode()).hexdigest()


def _write_json(path: str, data: Any, indent: int | None = 1) -> None:
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(data, f, indent=indent)
    f.write("\n")
  os.replace(tmp, path)


def _assemble(
  records: Sequence[dict], config: CorpusConfig
) -> tuple[dict[str, dict], tokens.Vocab, tokens.Vocab]:
  """Song records to per-split id arrays and the two vocabularies."""
  counts = {stream: collections.Counter() for stream in tokens.STREAMS}
  for record in records:
    if record.get("split") == "train":
      for _, (pitch, duration) in record["copies"]:
        counts["pitch"].update(pitch)
        counts["duration"].update(duration)
  pitch_vocab = tokens.build_vocab("pitch", counts["pitch"], config.min_count)
  duration_vocab = tokens.build_vocab(
    "duration", counts["duration"], config.min_count
  )
  arrays = {}
  for split in SPLITS:
    pitch_ids, duration_ids, lengths, sources, shifts = [], [], [], [], []
    for record in records:
      if record.get("split") != split:
        continue
      for shift, (pitch, duration) in record["copies"]:
        pitch_ids.append(pitch_vocab.encode(pitch))
        duration_ids.append(duration_vocab.encode(duration))
        lengths.append(len(pitch))
        sources.append(record["source"])
        shifts.append(shift)
    empty = np.zeros(0, np.int32)
    arrays[split] = {
      "pitch": np.concatenate(pitch_ids) if pitch_ids else empty,
      "duration": np.concatenate(duration_ids) if duration_ids else empty,
      "offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
      "sources": np.array(sources, dtype=str),
      "transpositions": np.array(shifts, dtype=np.int32),
    }
  return arrays, pitch_vocab, duration_vocab


def _make_report(
  records: Sequence[dict],
  arrays: Mapping[str, dict],
  pitch_vocab: tokens.Vocab,
  duration_vocab: tokens.Vocab,
  midi_dir: str,
  seconds: float,
  check_roundtrip: bool,
) -> dict:
  kept = [r for r in records if "drop" not in r]
  dropped = [r for r in records if "drop" in r]
  split_report = {}
  for split in SPLITS:
    a = arrays[split]
    rest_id = pitch_vocab.id(tokens.REST)
    rests = (
      int(np.sum(a["pitch"] == rest_id)) if tokens.REST in pitch_vocab else 0
    )
    chord_ids = [i for i, t in enumerate(pitch_vocab.tokens) if "." in t]
    split_report[split] = {
      "songs": int(np.sum(a["transpositions"] == 0)),
      "augmented_copies": int(np.sum(a["transpositions"] != 0)),
      "events": int(len(a["pitch"])),
      "rests": rests,
      "chords": int(np.isin(a["pitch"], chord_ids).sum()),
      "unk_pitch": int(np.sum(a["pitch"] == tokens.UNK_ID)),
      "unk_duration": int(np.sum(a["duration"] == tokens.UNK_ID)),
    }
  # Exact duplicates: the same original token sequence in different songs.
  by_content = collections.defaultdict(list)
  for record in kept:
    pitch, duration = record["copies"][0][1]
    by_content[(tuple(pitch), tuple(duration))].append(
      (record["source"], record["split"])
    )
  groups = [group for group in by_content.values() if len(group) > 1]
  across = [g for g in groups if len({split for _, split in g}) > 1]
  duration_counts = collections.Counter()
  for record in kept:
    duration_counts.update(record["copies"][0][1][1])
  total_events = sum(duration_counts.values()) or 1
  common = ("0.25", "0.5", "0.75", "1.0", "1.5", "2.0", "3.0", "4.0")
  report = {
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
  if check_roundtrip:
    failed = [r["source"] for r in kept if not r["roundtrip"]]
    report["roundtrip"] = {
      "checked": len(kept),
      "identical": len(kept) - len(failed),
      "failed": failed,
    }
  return report


def _write_export(path: str, records: Sequence[dict]) -> None:
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    for record in records:
      if "drop" in record:
        continue
      for shift, (pitch, duration) in record["copies"]:
        line = {
          "source": record["source"],
          "split": record["split"],
          "pitch": pitch,
          "duration": duration,
        }
        if shift:
          line["transposition"] = shift
        f.write(json.dumps(line) + "\n")
  os.replace(tmp, path)


def _cache_is_fresh(out_dir: str, manifest: dict) -> bool:
  try:
    with open(os.path.join(out_dir, "manifest.json")) as f:
      cached = json.load(f)
  except (OSError, ValueError):
    return False
  return all(
    cached.get(k) == manifest[k]
    for k in ("format_version", "config", "midi_dir", "digest")
  ) and (cached.get("roundtrip_checked") or not manifest["roundtrip_checked"])


def build_dataset(
  midi_dir: str | os.PathLike,
  out_dir: str | os.PathLike,
  config: CorpusConfig = CorpusConfig(),
  *,
  workers: int | None = None,
  check_roundtrip: bool = False,
  force: bool = False,
  progress: bool = True,
) -> Dataset:
  """Builds the dataset of a MIDI folder into `out_dir`, or loads its cache.

  Args:
    midi_dir: folder searched recursively for .mid/.midi files.
    out_dir: where the dataset is written (created if needed).
    config: how files become tokens.
    workers: processes (default: all CPU cores).
    check_roundtrip: also check that every kept song is unchanged by
      events -> MIDI -> events; the result goes into the report.
    force: rebuild even when the cache is fresh.
    progress: show a progress bar on stderr.

  Returns:
    The dataset.

  Raises:
    CorpusError: the folder is missing or holds no MIDI file, or `out_dir`
      cannot be written.
  """
  midi_dir = os.path.abspath(os.fspath(midi_dir))
  out_dir = os.path.abspath(os.fspath(out_dir))
  if not os.path.isdir(midi_dir):
    raise CorpusError(f"MIDI folder not found: {midi_dir}")
  relpaths = list_midi_files(midi_dir)
  if not relpaths:
    raise CorpusError(f"no MIDI files (.mid, .midi) found below {midi_dir}")
  listing = _source_listing(midi_dir, relpaths)
  manifest = {
    "format_version": FORMAT_VERSION,
    "config": config.to_json(),
    "midi_dir": midi_dir,
    "digest": _listing_digest(listing),
    "roundtrip_checked": check_roundtrip,
  }
  if not force and _cache_is_fresh(out_dir, manifest):
    return load_dataset(out_dir)
  try:
    os.makedirs(out_dir, exist_ok=True)
  except OSError as e:
    raise CorpusError(
      f"cannot create the dataset folder {out_dir}: {e.strerror} "
      "(a file in the way?); give another dataset folder"
    ) from None
  if not os.access(out_dir, os.W_OK):
    raise CorpusError(f"cannot write to {out_dir}")

  start = time.perf_counter()
  workers = workers or os.cpu_count() or 1
  records = _map_files(
    midi_dir, relpaths, config, check_roundtrip, workers, progress
  )
  arrays, pitch_vocab, duration_vocab = _assemble(records, config)
  report = _make_report(
    records,
    arrays,
    pitch_vocab,
    duration_vocab,
    midi_dir,
    time.perf_counter() - start,
    check_roundtrip,
  )
  # The manifest goes last: an interrupted build is never taken as fresh.
  manifest_path = os.path.join(out_dir, "manifest.json")
  if os.path.exists(manifest_path):
    os.remove(manifest_path)
  flat = {
    f"{split}/{name}": value
    for split, a in arrays.items()
    for name, value in a.items()
  }
  tmp = os.path.join(out_dir, f"arrays.tmp{os.getpid()}.npz")
  np.savez(tmp, **flat)
  os.replace(tmp, os.path.join(out_dir, "arrays.npz"))
  pitch_vocab.save(os.path.join(out_dir, "vocab_pitch.json"))
  duration_vocab.save(os.path.join(out_dir, "vocab_duration.json"))
  _write_json(os.path.join(out_dir, "report.json"), report)
  _write_export(os.path.join(out_dir, "songs.jsonl"), records)
  _write_json(manifest_path, {**manifest, "files": listing}, indent=None)
  return load_dataset(out_dir)


def load_dataset(out_dir: str | os.PathLike) -> Dataset:
  """Loads a dataset written by `build_dataset` (no staleness check).

  Raises:
    CorpusError: `out_dir` holds no complete dataset.
  """
  out_dir = os.path.abspath(os.fspath(out_dir))
  try:
    with open(os.path.join(out_dir, "manifest.json")) as f:
      manifest = json.load(f)
    with open(os.path.join(out_dir, "report.json")) as f:
      report = json.load(f)
    pitch_vocab = tokens.Vocab.load(os.path.join(out_dir, "vocab_pitch.json"))
    duration_vocab = tokens.Vocab.load(
      os.path.join(out_dir, "vocab_duration.json")
    )
    with np.load(os.path.join(out_dir, "arrays.npz")) as npz:
      splits = {
        split: Split(
          **{
            name: npz[f"{split}/{name}"]
            for name in (
              "pitch",
              "duration",
              "offsets",
              "sources",
              "transpositions",
            )
          }
        )
        for split in SPLITS
      }
  except (OSError, KeyError, ValueError) as e:
    raise CorpusError(f"no complete dataset in {out_dir} ({e})") from None
  if manifest.get("format_version") != FORMAT_VERSION:
    raise CorpusError(
      f"{out_dir} was built by another melodyjax version; rebuild it"
    )
  config = CorpusConfig(**{**manifest["config"]})
  return Dataset(out_dir, config, splits, pitch_vocab, duration_vocab, report)


def check_trainable(dataset: Dataset, seq_len: int) -> None:
  """Refuses a dataset that training cannot use with windows of `seq_len`.

  Raises:
    CorpusError: no training song, or `seq_len` longer than every one.
  """
  report = dataset.report
  if len(dataset.train) == 0:
    reasons = ", ".join(
      f"{k} {v}" for k, v in report.get("dropped_by_reason", {}).items()
    )
    raise CorpusError(
      f"no training songs in {report.get('midi_dir', dataset.path)}: "
      f"{report.get('dropped', 0)} of {report.get('files', 0)} files dropped"
      + (f" ({reasons})" if reasons else "")
      + f"; see {os.path.join(dataset.path, 'report.json')}"
    )
  longest = int(np.max(np.diff(dataset.train.offsets)))
  # A window holds bos and the events; eos is the last target.
  if seq_len > longest + 1:
    raise CorpusError(
      f"config.train.seq_len={seq_len} is longer than every training song "
      f"(the longest has {longest} events): lower it to at most "
      f"{longest + 1}"
    )


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
    )
  distinct = report["distinct_tokens_all_splits"]
  lines.append(
    f"distinct tokens: {distinct['pitch']} pitch, {distinct['duration']} "
    f"duration; vocab (with 4 reserved): {report['vocab']['pitch']} pitch, "
    f"{report['vocab']['duration']} duration"
  )
  lines.append(
    "durations 0.25..4 (8 common values) cover "
    f"{100 * report['common_durations_share']:.2f}% of events"
  )
  lines.append(
    f"duplicate songs: {report['duplicate_groups']} groups, "
    f"{len(report['duplicates_across_splits'])} across splits"
  )
  if "roundtrip" in report:
    rt = report["roundtrip"]
    lines.append(
      f"round trip events->MIDI->events: {rt['identical']}/"
      f"{rt['checked']} identical"
    )
  lines.append(f"built in {report['build_seconds']:.2f} s")
  return "\n".join(lines)


def iter_export(path: str | os.PathLike) -> Iterable[dict]:
  """Yields the song objects of a JSONL export."""
  with open(path) as f:
    for line in f:
      yield json.loads(line)


def export_jsonl(dataset: Dataset, path: str | os.PathLike) -> None:
  """Copies the dataset's token export (songs.jsonl) to `path`."""
  source = os.path.join(dataset.path, "songs.jsonl")
  if os.path.abspath(os.fspath(path)) != source:
    shutil.copyfile(source, path)


class _ArgumentParser(argparse.ArgumentParser):
  """argparse that reports a user mistake in one line, without usage."""

  def error(self, message):
    self.exit(2, f"{self.prog}: error: {message}\n")


def _bool(text: str) -> bool:
  if text.lower() in ("1", "true", "yes"):
    return True
  if text.lower() in ("0", "false", "no"):
    return False
  raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _ints(text: str) -> tuple[int, ...]:
  try:
    return tuple(int(x) for x in text.replace(",", " ").split())
  except ValueError:
    raise argparse.ArgumentTypeError(
      f"expected semitones such as -2,-1,1,2, got {text!r}"
    ) from None


def run(argv: Sequence[str] | None = None) -> None:
  """Entry point of `python -m melodyjax.corpus`: build or load, report."""
  defaults = CorpusConfig()
  parser = _ArgumentParser(
    prog="python -m melodyjax.corpus",
    description="Build (or reload) the tokenized dataset of a MIDI folder.",
  )
  parser.add_argument(
    "--midi_dir",
    required=True,
    help="folder of MIDI files (searched recursively)",
  )
  parser.add_argument("--out", required=True, help="dataset folder")
  parser.add_argument("--export_jsonl", help="also write the tokens here")
  parser.add_argument(
    "--workers", type=int, default=None, help="processes (default: all cores)"
  )
  parser.add_argument(
    "--check_roundtrip",
    action="store_true",
    help="check events -> MIDI -> events for every song",
  )
  parser.add_argument(
    "--force", action="store_true", help="rebuild even if the cache is fresh"
  )
  parser.add_argument("--no_progress", action="store_true")
  group = parser.add_argument_group("data options (as config.data)")
  group.add_argument(
    "--grid",
    type=int,
    default=defaults.grid,
    help="quantization steps per quarter note",
  )
  group.add_argument(
    "--polyphony",
    choices=midi_io.POLYPHONY_POLICIES,
    default=defaults.polyphony,
  )
  group.add_argument(
    "--tracks", choices=midi_io.TRACK_POLICIES, default=defaults.tracks
  )
  group.add_argument(
    "--normalize_key", type=_bool, default=defaults.normalize_key
  )
  group.add_argument(
    "--transpositions",
    type=_ints,
    default=defaults.transpositions,
    help="augmentation shifts in semitones, e.g. -2,-1,1,2",
  )
  group.add_argument("--min_notes", type=int, default=defaults.min_notes)
  group.add_argument("--max_notes", type=int, default=defaults.max_notes)
  group.add_argument("--min_count", type=int, default=defaults.min_count)
  group.add_argument(
    "--valid_fraction", type=float, default=defaults.valid_fraction
  )
  group.add_argument(
    "--test_fraction", type=float, default=defaults.test_fraction
  )
  args = parser.parse_args(argv)
  names = [f.name for f in dataclasses.fields(CorpusConfig)]
  try:
    config = CorpusConfig(**{name: getattr(args, name) for name in names})
    start = time.perf_counter()
    dataset = build_dataset(
      args.midi_dir,
      args.out,
      config,
      workers=args.workers,
      check_roundtrip=args.check_roundtrip,
      force=args.force,
      progress=not args.no_progress,
    )
    seconds = time.perf_counter() - start
    if args.export_jsonl:
      export_jsonl(dataset, args.export_jsonl)
  except CorpusError as e:
    parser.exit(2, f"{parser.prog}: error: {e}\n")
  except OSError as e:
    parser.exit(2, f"{parser.prog}: error: {e.filename}: {e.strerror}\n")
  print(format_report(dataset.report))
  print(f"dataset: {dataset.path} (ready in {seconds:.2f} s)")
  if args.export_jsonl:
    print(f"export: {args.export_jsonl}")


if __name__ == "__main__":
  run()
