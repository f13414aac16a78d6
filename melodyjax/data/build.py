"""A folder of MIDI files to a tokenized, split dataset cached on disk. No JAX.

`build_dataset` tokenizes every MIDI file below a folder in worker
processes (`data.tokenize`), splits the songs into train / validation /
test by groups of settings and near-duplicates (`data.groups`; or by a
hash of each relative path), builds one vocabulary per stream on
the training split, and writes the dataset folder that `data.dataset`
describes and loads. A second call with the same folder and data config
loads the cache (well under a second); a changed folder or config rebuilds
it. `prepare_dataset` does the same from a config's `data` group, and
converts ESAC on first use.

Command line: `melodyjax-corpus --midi_dir DIR --out DIR`.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from absl import logging

from melodyjax import errors, files
from melodyjax.data import config as data_config_lib
from melodyjax.data import dataset as dataset_lib
from melodyjax.data import exclude, groups, tokenize
from melodyjax.data import labels as labels_lib
from melodyjax.data import report as build_report
from melodyjax.data.corpora import abc_source, builtin
from melodyjax.data.corpora import summary as convert_summary
from melodyjax.music import tokens

# ---------------------------------------------------------------- file level


# ------------------------------------------------------------- dataset level


def _source_listing(midi_dir: str, relpaths: Sequence[str]) -> dict:
  """{relpath: [size, mtime]}; None for a file gone since it was listed
  (or a dangling link), which the build then drops as unreadable."""
  listing = {}
  for relpath in relpaths:
    try:
      stat = os.stat(os.path.join(midi_dir, relpath))
    except OSError:
      listing[relpath] = None
      continue
    listing[relpath] = [stat.st_size, stat.st_mtime_ns]
  return listing


def _vocab_digest(vocabs) -> str | None:
  """Which fixed vocabularies a dataset was tokenized with (None: its own)."""
  if vocabs is None:
    return None
  text = json.dumps([list(vocab.tokens) for vocab in vocabs])
  return hashlib.sha1(text.encode()).hexdigest()


def _labels_digest(label_vocabs) -> str | None:
  """Which fixed label vocabularies a dataset was built with (None: its own)."""
  if label_vocabs is None:
    return None
  text = json.dumps([list(label_vocabs[k].labels) for k in labels_lib.KINDS])
  return hashlib.sha1(text.encode()).hexdigest()


def _listing_digest(listing: Mapping[str, Sequence[int]]) -> str:
  return hashlib.sha1(json.dumps(listing, sort_keys=True).encode()).hexdigest()


def _assemble(
  records: Sequence[dict],
  config: data_config_lib.CorpusConfig,
  vocabs: tuple[tokens.Vocab, tokens.Vocab] | None = None,
) -> tuple[dict[str, dict], tokens.Vocab, tokens.Vocab]:
  """Song records to per-split id arrays and the two vocabularies (built on
  the training split, or the given ones)."""
  if vocabs is not None:
    pitch_vocab, duration_vocab = vocabs
  else:
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


def _build_labels(
  records: Sequence[dict], config: data_config_lib.CorpusConfig
) -> labels_lib.Labels:
  """The label vocabularies of the training songs."""
  train = [r for r in records if r.get("split") == "train"]
  signatures = [s for r in train for s in set(r["metre"]["signatures"])]
  least = config.min_label_songs
  return labels_lib.Labels(
    labels_lib.build("time_signature", signatures, least),
    labels_lib.build("mode", [r["mode"] for r in train], least),
    labels_lib.build("style", [r["style"] for r in train], least),
  )


def _assemble_conditions(
  records: Sequence[dict], label_vocabs: labels_lib.Labels
) -> dict[str, dict]:
  """Per split, the arrays of `dataset.CONDITIONS_FILE` (see `Split`), in
  the order of `_assemble`'s songs (each copy shares its song's)."""
  out = {}
  signature_id = label_vocabs.time_signature.id
  for split in dataset_lib.SPLITS:
    columns = collections.defaultdict(list)
    for record in records:
      if record.get("split") != split:
        continue
      found = record["metre"]
      for _ in record["copies"]:
        columns["bar_position"].append(found["positions"])
        columns["time_signature"].append(
          [signature_id(s) for s in found["signatures"]]
        )
        columns["end_position"].append([found["end_position"]])
        columns["end_time_signature"].append(
          [signature_id(found["end_signature"])]
        )
        columns["mode"].append([label_vocabs.mode.id(record["mode"])])
        columns["style"].append([label_vocabs.style.id(record["style"])])
    out[split] = {
      name: np.array(
        [v for values in columns[name] for v in values], dtype=np.int32
      )
      for name in dataset_lib.EVENT_CONDITIONS + dataset_lib.SONG_CONDITIONS
    }
  return out


def _write_export(path: str, records: Sequence[dict]) -> None:
  with files.atomic_write(path) as f:
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
        if "tune" in record:
          line["tune"] = record["tune"]
        f.write(files.to_json(line) + "\n")


def _cache_is_fresh(out_dir: str, manifest: dict) -> bool:
  try:
    with open(os.path.join(out_dir, "manifest.json")) as f:
      cached = json.load(f)
  except (OSError, ValueError):
    return False
  return all(
    cached.get(k) == manifest[k]
    for k in (
      "format_version",
      "config",
      "midi_dir",
      "digest",
      "vocab_digest",
      "labels_digest",
      "split_rule",
      "exclude_digest",
    )
  ) and (cached.get("roundtrip_checked") or not manifest["roundtrip_checked"])


def build_dataset(
  midi_dir: str | os.PathLike,
  out_dir: str | os.PathLike,
  config: data_config_lib.CorpusConfig | None = None,
  *,
  workers: int | None = None,
  check_roundtrip: bool = False,
  force: bool = False,
  progress: bool = True,
  vocabs: tuple[tokens.Vocab, tokens.Vocab] | None = None,
  label_vocabs: labels_lib.Labels | None = None,
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
    vocabs: (pitch, duration) vocabularies to tokenize with instead of
      building them (fine-tuning: the base run's); tokens outside them
      become unk, counted in the report.
    label_vocabs: label vocabularies to use instead of building them (the
      base run's, with `vocabs`); unseen labels become unknown.

  Returns:
    The dataset.

  Raises:
    CorpusError: the folder is missing or holds no MIDI file, or `out_dir`
      cannot be written.
  """
  config = config or data_config_lib.CorpusConfig()
  midi_dir = os.path.abspath(os.fspath(midi_dir))
  out_dir = os.path.abspath(os.fspath(out_dir))
  relpaths, listing, manifest = _source_manifest(
    midi_dir, config, check_roundtrip, vocabs, label_vocabs
  )
  if not force and _cache_is_fresh(out_dir, manifest):
    return dataset_lib.load_dataset(out_dir)
  _make_writable(out_dir)
  start = time.perf_counter()
  workers = workers or os.cpu_count() or 1
  records = tokenize.tokenize_files(
    midi_dir, relpaths, config, check_roundtrip, workers, progress
  )
  records += builtin.conversion_drops(midi_dir)
  read = time.perf_counter()
  excluded, grouping = _split_records(records, config)
  grouped = time.perf_counter()
  arrays, pitch_vocab, duration_vocab = _assemble(records, config, vocabs)
  kept = [r for r in records if "drop" not in r]
  label_vocabs = label_vocabs or _build_labels(kept, config)
  conditions = _assemble_conditions(kept, label_vocabs)
  phases = _phase_seconds(start, read, grouped, time.perf_counter())
  report = build_report.make_report(
    records,
    arrays,
    pitch_vocab,
    duration_vocab,
    midi_dir,
    time.perf_counter() - start,
    check_roundtrip,
    builtin.read_summary(midi_dir),
    {"split_groups": grouping, "excluded": excluded, "phase_seconds": phases},
  )
  _write_dataset(
    out_dir,
    (arrays, conditions),
    (pitch_vocab, duration_vocab, label_vocabs),
    report,
    records,
    {**manifest, "files": listing},
  )
  return dataset_lib.load_dataset(out_dir)


def _phase_seconds(start, read, grouped, assembled) -> dict[str, float]:
  """The build's phases in seconds, from the times each ended."""
  return {
    "read": round(read - start, 3),
    "exclude_and_group": round(grouped - read, 3),
    "assemble": round(assembled - grouped, 3),
  }


def _split_records(records: list[dict], config) -> tuple[dict | None, ...]:
  """Drops the songs matching `exclude_test_of`'s held-out songs, splits
  the rest by groups (or keeps each path's split), and keeps transposed
  copies of training songs only; (the exclusion's, the grouping's report
  entry), each None when off."""
  excluded = grouping = None
  if config.exclude_test_of:
    excluded = exclude.exclude_matches(
      records, _reference_dir(config), config.exclude_valid
    )
  if config.group_splits:
    grouping = groups.assign_group_splits(
      [r for r in records if "drop" not in r], config
    )
  tokenize.drop_held_out_copies(records)
  return excluded, grouping


def _source_manifest(midi_dir, config, check_roundtrip, vocabs, label_vocabs):
  """(MIDI files, their listing, the manifest a fresh cache must match).

  Raises:
    CorpusError: the folder is missing or holds no MIDI file.
  """
  if not os.path.isdir(midi_dir):
    raise errors.CorpusError(f"MIDI folder not found: {midi_dir}")
  relpaths = tokenize.list_midi_files(midi_dir)
  if not relpaths:
    raise errors.CorpusError(
      f"no MIDI files (.mid, .midi) found below {midi_dir}"
    )
  listing = _source_listing(midi_dir, relpaths)
  manifest = {
    "format_version": dataset_lib.FORMAT_VERSION,
    "config": config.to_json(),
    "midi_dir": midi_dir,
    "digest": _listing_digest(listing),
    "roundtrip_checked": check_roundtrip,
    "vocab_digest": _vocab_digest(vocabs),
    "labels_digest": _labels_digest(label_vocabs),
    "split_rule": groups.RULE if config.group_splits else "path hash",
    "exclude_digest": (
      exclude.reference_digest(_reference_dir(config))
      if config.exclude_test_of
      else None
    ),
  }
  return relpaths, listing, manifest


def _reference_dir(config: data_config_lib.CorpusConfig) -> str:
  return os.path.abspath(os.path.expanduser(config.exclude_test_of))


def _make_writable(out_dir: str) -> None:
  try:
    os.makedirs(out_dir, exist_ok=True)
  except OSError as e:
    raise errors.CorpusError(
      f"cannot create the dataset folder {out_dir}: {e.strerror} "
      "(a file in the way?); give another dataset folder"
    ) from None
  if not os.access(out_dir, os.W_OK):
    raise errors.CorpusError(f"cannot write to {out_dir}")


def _write_dataset(out_dir, arrays, vocabs, report, records, manifest) -> None:
  """Every file of the dataset folder, each written atomically."""
  # The manifest goes last: an interrupted build is never taken as fresh.
  manifest_path = os.path.join(out_dir, "manifest.json")
  if os.path.exists(manifest_path):
    os.remove(manifest_path)
  for name, per_split in zip(
    ("arrays.npz", dataset_lib.CONDITIONS_FILE), arrays, strict=True
  ):
    flat = {
      f"{split}/{key}": value
      for split, a in per_split.items()
      for key, value in a.items()
    }
    with files.atomic_write(os.path.join(out_dir, name), "wb") as f:
      np.savez(f, **flat)
  pitch_vocab, duration_vocab, label_vocabs = vocabs
  pitch_vocab.save(os.path.join(out_dir, "vocab_pitch.json"))
  duration_vocab.save(os.path.join(out_dir, "vocab_duration.json"))
  label_vocabs.save(os.path.join(out_dir, labels_lib.FILE))
  files.write_json(os.path.join(out_dir, "report.json"), report)
  _write_export(os.path.join(out_dir, "songs.jsonl"), records)
  files.write_json(manifest_path, manifest, indent=None)


def export_jsonl(dataset: dataset_lib.Dataset, path: str | os.PathLike) -> None:
  """Copies the dataset's token export (songs.jsonl) to `path`."""
  source = os.path.join(dataset.path, "songs.jsonl")
  if os.path.abspath(os.fspath(path)) != source:
    shutil.copyfile(source, path)


def prepare_dataset(
  data_config: Mapping[str, Any],
  *,
  progress: bool = True,
  vocabs: tuple[tokens.Vocab, tokens.Vocab] | None = None,
  label_vocabs: labels_lib.Labels | None = None,
) -> dataset_lib.Dataset:
  """The dataset of a config's `data` group, built or loaded from its cache.

  With `data.abc` set, its tunes are converted into `dataset_dir/midi`
  first (`corpora.abc_source`; once) and `data.midi_dir` is not read.
  The built-in corpora are made on first use: when `data.midi_dir` is the
  default folder of a built-in corpus (`corpora.builtin.default_midi_dir`)
  and does not exist yet, that corpus is converted into it (with the abc
  reader and `data.repeats`; seconds, once). A folder that holds a
  conversion must have played its repeats as `data.repeats` says.

  Raises:
    CorpusError: the corpus cannot be read or the dataset not written, or
      its repeats are not `data.repeats`.
  """
  midi_dir = os.path.expanduser(data_config["midi_dir"])
  dataset_dir = os.path.expanduser(data_config["dataset_dir"])
  repeats = data_config.get("repeats", data_config_lib.DEFAULT_REPEATS)
  if data_config.get("abc"):
    midi_dir, summary = abc_source.convert_for_dataset(
      data_config["abc"], dataset_dir, repeats=repeats, progress=progress
    )
    logging.info("%s", convert_summary.format_summary(summary))
  _convert_builtin_if_missing(midi_dir, repeats)
  _check_repeats(midi_dir, repeats)
  return build_dataset(
    midi_dir,
    dataset_dir,
    data_config_lib.CorpusConfig.from_config(data_config),
    progress=progress,
    vocabs=vocabs,
    label_vocabs=label_vocabs,
  )


def _convert_builtin_if_missing(midi_dir: str, repeats: str) -> None:
  from melodyjax.data.corpora import convert

  if os.path.isdir(midi_dir):
    return
  for name, corpus in builtin.CORPORA.items():
    for played in builtin.REPEATS:
      default = builtin.default_midi_dir(name, played)
      if os.path.abspath(midi_dir) != str(default):
        continue
      if played != repeats:
        raise errors.CorpusError(
          f"config.data.repeats={repeats!r} but config.data.midi_dir "
          f"{midi_dir} is the folder of {corpus.label} with repeats "
          f"{played!r}: set config.data.midi_dir to "
          f"{builtin.default_midi_dir(name, repeats)} (and dataset_dir)"
        )
      logging.warning(
        "Converting %s to MIDI once into %s (repeats %s)",
        corpus.label,
        default,
        repeats,
      )
      try:
        convert.convert_corpus(default, corpus=name, repeats=repeats)
      except errors.ConversionError as e:
        raise errors.CorpusError(f"{midi_dir} does not exist and {e}") from None


def _check_repeats(midi_dir: str, repeats: str) -> None:
  """Refuses a conversion whose repeats are not `data.repeats` (a folder
  without a conversion.json holds the user's own MIDI: 'once' only)."""

  settings = builtin.conversion_settings(midi_dir)
  if settings is None:
    if repeats != data_config_lib.DEFAULT_REPEATS:
      raise errors.CorpusError(
        f"config.data.repeats={repeats!r} needs a built-in corpus "
        f"converted with repeats {repeats!r}, and {midi_dir} holds no "
        f"{builtin.SUMMARY_NAME}: convert one with melodyjax-convert "
        f"--repeats={repeats}, or set config.data.repeats='once'"
      )
    return
  if settings["repeats"] != repeats:
    raise errors.CorpusError(
      f"config.data.repeats={repeats!r} but {midi_dir} holds "
      f"{settings['corpus']} converted with repeats "
      f"{settings['repeats']!r} ({builtin.SUMMARY_NAME}): set "
      f"config.data.midi_dir to a conversion with repeats {repeats!r} "
      f"(melodyjax-convert --corpus {settings['corpus']} "
      f"--repeats={repeats} writes "
      f"{builtin.default_midi_dir(settings['corpus'], repeats)}), or "
      f"config.data.repeats={settings['repeats']!r}"
    )
