"""Datasets: how MIDI becomes tokens (`CorpusConfig`), splits, loading. No JAX.

A dataset folder, written by `data.build`, holds:

  OUT/manifest.json        source files (size, mtime), data config, version
  OUT/arrays.npz           token ids per split (flat, with song offsets)
  OUT/conditions.npz       per split: each event's bar position and time
                           signature, each song's end position, mode, style
  OUT/vocab_pitch.json     the pitch vocabulary (human-readable)
  OUT/vocab_duration.json  the duration vocabulary
  OUT/vocab_labels.json    the labels: time signatures, modes, styles
  OUT/report.json          counts, drops per reason, dropped files, duplicates
  OUT/songs.jsonl          every song's tokens, one JSON object per line
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from melodyjax import errors
from melodyjax.data import labels as labels_lib
from melodyjax.data.config import CorpusConfig
from melodyjax.music import tokens

# 2: conditions.npz and vocab_labels.json (bar positions, labels).
FORMAT_VERSION = 2
CONDITIONS_FILE = "conditions.npz"
# Per-event and per-song arrays of conditions.npz (see `Split`).
EVENT_CONDITIONS = ("bar_position", "time_signature")
SONG_CONDITIONS = ("end_position", "end_time_signature", "mode", "style")


SPLITS = ("train", "valid", "test")


@dataclasses.dataclass(frozen=True)
class Split:
  """The songs of one split as flat id arrays.

  Attributes:
    pitch: int32 [total_events] pitch ids of all songs, concatenated.
    duration: int32 [total_events] duration ids.
    offsets: int64 [num_songs + 1]; song i is events offsets[i]:offsets[i+1].
    sources: [num_songs] source file path relative to the MIDI folder.
    transpositions: int32 [num_songs] semitones of augmentation (0: original).
    bar_position: int32 [total_events] each event's onset in its bar, in
      grid steps (-1: unknown); None in a split built without them.
    time_signature: int32 [total_events] label id of the time signature in
      force at each event (0: unknown).
    end_position, end_time_signature: int32 [num_songs] the same where an
      event after the song's last one would start.
    mode, style: int32 [num_songs] label ids (0: unknown).
  """

  pitch: np.ndarray
  duration: np.ndarray
  offsets: np.ndarray
  sources: np.ndarray
  transpositions: np.ndarray
  bar_position: np.ndarray | None = None
  time_signature: np.ndarray | None = None
  end_position: np.ndarray | None = None
  end_time_signature: np.ndarray | None = None
  mode: np.ndarray | None = None
  style: np.ndarray | None = None

  def __len__(self) -> int:
    return len(self.offsets) - 1

  @property
  def num_events(self) -> int:
    return int(self.offsets[-1])

  def originals(self) -> np.ndarray:
    """int64 [num_originals] indices of the songs that are not augmented
    (transposed) copies: what every held-out score and statistic reads."""
    return np.flatnonzero(self.transpositions == 0)

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
  labels: labels_lib.Labels = dataclasses.field(
    default_factory=labels_lib.empty
  )

  @property
  def train(self) -> Split:
    return self.splits["train"]

  @property
  def valid(self) -> Split:
    return self.splits["valid"]

  @property
  def test(self) -> Split:
    return self.splits["test"]


def assign_split(relpath: str, config: CorpusConfig) -> str:
  """Deterministic split of a song from a hash of its relative path.

  The path's bytes as the file system has them (`os.fsencode`: UTF-8 for
  any name that decodes, the raw bytes of one that does not).
  """
  digest = hashlib.sha1(os.fsencode(relpath.replace(os.sep, "/"))).digest()
  u = int.from_bytes(digest[:8], "big") / 2.0**64
  if u < config.test_fraction:
    return "test"
  if u < config.test_fraction + config.valid_fraction:
    return "valid"
  return "train"


def load_dataset(out_dir: str | os.PathLike) -> Dataset:
  """Loads a dataset written by `build_dataset` (no staleness check).

  Raises:
    errors.CorpusError: `out_dir` holds no complete dataset.
  """
  out_dir = os.path.abspath(os.fspath(out_dir))
  try:
    with open(os.path.join(out_dir, "manifest.json")) as f:
      manifest = json.load(f)
    if manifest.get("format_version") != FORMAT_VERSION:
      raise errors.CorpusError(
        f"{out_dir} was built by another melodyjax version; rebuild it"
      )
    with open(os.path.join(out_dir, "report.json")) as f:
      report = json.load(f)
    pitch_vocab = tokens.Vocab.load(os.path.join(out_dir, "vocab_pitch.json"))
    duration_vocab = tokens.Vocab.load(
      os.path.join(out_dir, "vocab_duration.json")
    )
    label_vocabs = labels_lib.Labels.load(
      os.path.join(out_dir, labels_lib.FILE)
    )
    names = ("pitch", "duration", "offsets", "sources", "transpositions")
    with (
      np.load(os.path.join(out_dir, "arrays.npz")) as npz,
      np.load(os.path.join(out_dir, CONDITIONS_FILE)) as conditions,
    ):
      splits = {
        split: Split(
          **{name: npz[f"{split}/{name}"] for name in names},
          **{
            name: conditions[f"{split}/{name}"]
            for name in EVENT_CONDITIONS + SONG_CONDITIONS
          },
        )
        for split in SPLITS
      }
  except (OSError, KeyError, ValueError) as e:
    raise errors.CorpusError(
      f"no complete dataset in {out_dir} ({e})"
    ) from None
  config = CorpusConfig(**{**manifest["config"]})
  return Dataset(
    out_dir, config, splits, pitch_vocab, duration_vocab, report, label_vocabs
  )


def check_trainable(dataset: Dataset, seq_len: int) -> None:
  """Refuses a dataset that training cannot use with windows of `seq_len`.

  Raises:
    errors.CorpusError: no training song, or `seq_len` longer than every one.
  """
  report = dataset.report
  if len(dataset.train) == 0:
    reasons = ", ".join(
      f"{k} {v}" for k, v in report.get("dropped_by_reason", {}).items()
    )
    raise errors.CorpusError(
      f"no training songs in {report.get('midi_dir', dataset.path)}: "
      f"{report.get('dropped', 0)} of {report.get('files', 0)} files dropped"
      + (f" ({reasons})" if reasons else "")
      + f"; see {os.path.join(dataset.path, 'report.json')}"
    )
  longest = int(np.max(np.diff(dataset.train.offsets)))
  # A window holds bos and the events; eos is the last target.
  if seq_len > longest + 1:
    raise errors.CorpusError(
      f"config.train.seq_len={seq_len} is longer than every training song "
      f"(the longest has {longest} events): lower it to at most "
      f"{longest + 1}"
    )


def iter_export(path: str | os.PathLike) -> Iterable[dict]:
  """Yields the song objects of a JSONL export."""
  with open(path) as f:
    for line in f:
      yield json.loads(line)


def check_unknown_share(dataset: Dataset, max_share: float) -> None:
  """Refuses a dataset tokenized with another run's vocabularies when too
  many of its events fall outside them (they would all be unk).

  Raises:
    CorpusError: names the stream, the share, its most common unseen
      tokens and how to proceed.
  """
  for stream, unknown in dataset.report.get("unknown_tokens", {}).items():
    if unknown["share"] > max_share:
      common = ", ".join(
        f"{token} ({count})" for token, count in unknown["most_common"].items()
      )
      raise errors.CorpusError(
        f"{100 * unknown['share']:.1f}% of the corpus's {stream} events are "
        f"tokens the base run never saw (most common: {common}), above "
        f"config.data.max_unk_share={max_share}: raise it to train with "
        "them as unk, or train from scratch"
      )
