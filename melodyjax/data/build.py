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

import collections
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from melodyjax.data import dataset as dataset_lib
from melodyjax.data import report as build_report
from melodyjax.music import midi_io, tokens, tonality

MIDI_SUFFIXES = (".mid", ".midi", ".smf", ".kar")


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


def _process_file(
  midi_dir: str,
  relpath: str,
  config: dataset_lib.CorpusConfig,
  check_roundtrip: bool,
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
  record = {
    "source": relpath,
    "split": dataset_lib.assign_split(relpath, config),
  }
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
    tonic, mode = tonality.find_key(song)
  except ValueError:
    tonic, mode = tonality.estimate_key(events)
  record["key"] = tonality.key_signature_name(tonic, mode)
  record["key_source"] = "signature" if song.key_signature else "estimate"
  if config.normalize_key:
    shifted = tonality.transpose(
      events, tonality.normalizing_shift(tonic, mode)
    )
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
      if (
        shift != 0 and (moved := tonality.transpose(events, shift)) is not None
      ):
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
  config: dataset_lib.CorpusConfig,
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
  records: Sequence[dict], config: dataset_lib.CorpusConfig
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
  for split in dataset_lib.SPLITS:
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
  config: dataset_lib.CorpusConfig | None = None,
  *,
  workers: int | None = None,
  check_roundtrip: bool = False,
  force: bool = False,
  progress: bool = True,
) -> dataset_lib.Dataset:
  """Builds the dataset of a MIDI folder into `out_dir`, or loads its cache.

  Args:
    midi_dir: folder searched recursively for .mid/.midi files.
    out_dir: where the dataset is written (created if needed).
    config: how files become tokens (default: `CorpusConfig()`).
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
  config = config or dataset_lib.CorpusConfig()
  midi_dir = os.path.abspath(os.fspath(midi_dir))
  out_dir = os.path.abspath(os.fspath(out_dir))
  if not os.path.isdir(midi_dir):
    raise dataset_lib.CorpusError(f"MIDI folder not found: {midi_dir}")
  relpaths = list_midi_files(midi_dir)
  if not relpaths:
    raise dataset_lib.CorpusError(
      f"no MIDI files (.mid, .midi) found below {midi_dir}"
    )
  listing = _source_listing(midi_dir, relpaths)
  manifest = {
    "format_version": dataset_lib.FORMAT_VERSION,
    "config": config.to_json(),
    "midi_dir": midi_dir,
    "digest": _listing_digest(listing),
    "roundtrip_checked": check_roundtrip,
  }
  if not force and _cache_is_fresh(out_dir, manifest):
    return dataset_lib.load_dataset(out_dir)
  try:
    os.makedirs(out_dir, exist_ok=True)
  except OSError as e:
    raise dataset_lib.CorpusError(
      f"cannot create the dataset folder {out_dir}: {e.strerror} "
      "(a file in the way?); give another dataset folder"
    ) from None
  if not os.access(out_dir, os.W_OK):
    raise dataset_lib.CorpusError(f"cannot write to {out_dir}")

  start = time.perf_counter()
  workers = workers or os.cpu_count() or 1
  records = _map_files(
    midi_dir, relpaths, config, check_roundtrip, workers, progress
  )
  arrays, pitch_vocab, duration_vocab = _assemble(records, config)
  report = build_report._make_report(
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
  return dataset_lib.load_dataset(out_dir)


def export_jsonl(dataset: dataset_lib.Dataset, path: str | os.PathLike) -> None:
  """Copies the dataset's token export (songs.jsonl) to `path`."""
  source = os.path.join(dataset.path, "songs.jsonl")
  if os.path.abspath(os.fspath(path)) != source:
    shutil.copyfile(source, path)
