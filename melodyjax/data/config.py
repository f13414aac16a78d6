"""The data settings: how MIDI becomes tokens, where the corpus lives. No JAX.

`CorpusConfig` holds the fields that decide the tokens (a dataset cache is
rebuilt when one changes); `defaults()` is the `data` group of a training
config (`configs/default.py` builds from it): those fields plus the corpus
and cache folders and the fine-tuning options. `check` names the first bad
field of such a group.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import ml_collections

from melodyjax import checks, errors, files
from melodyjax.music import abc_reader, midi_io

DEFAULT_CORPUS = "esac"
REPEATS = abc_reader.REPEAT_POLICIES  # how a built-in corpus plays repeats
DEFAULT_REPEATS = "once"


@dataclasses.dataclass(frozen=True)
class CorpusConfig:
  """How MIDI files become token sequences (the tokenizing fields of the
  `data` group).

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
    min_label_songs: training songs below which a label (time signature,
      mode, style) is unknown.
    valid_fraction: share of songs in the validation split.
    test_fraction: share of songs in the test split.
    group_splits: split groups, not files: the settings of one Session
      tune and near-duplicates (the same notes, maybe transposed) share
      the split of their group's first member (`data.groups`); False: each
      file by the hash of its path.
    exclude_test_of: a dataset folder (empty: none): every song identical
      or near-identical to one of its test songs is left out
      (`data.exclude`; pretraining for a corpus tested there).
    exclude_valid: with `exclude_test_of`, its validation songs' matches
      too.
  """

  grid: int = 12
  polyphony: str = "chord"
  tracks: str = "merge"
  normalize_key: bool = True
  transpositions: tuple[int, ...] = ()
  min_notes: int = 4
  max_notes: int = 0
  min_count: int = 1
  min_label_songs: int = 5
  valid_fraction: float = 0.05
  test_fraction: float = 0.05
  group_splits: bool = True
  exclude_test_of: str = ""
  exclude_valid: bool = False

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
    if self.min_label_songs < 1:
      problems.append(
        f"min_label_songs must be >= 1, got {self.min_label_songs}"
      )
    fractions = (self.valid_fraction, self.test_fraction)
    if min(fractions) < 0 or sum(fractions) >= 1:
      problems.append(
        "valid_fraction and test_fraction must be >= 0 and sum to < 1, got "
        f"{self.valid_fraction} and {self.test_fraction}"
      )
    if problems:
      raise errors.CorpusError("; ".join(problems))

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


def corpus_folders(
  corpus: str = DEFAULT_CORPUS, repeats: str = DEFAULT_REPEATS
) -> tuple[str, str]:
  """(MIDI folder, dataset folder) of a built-in corpus in the cache
  (`files.cache_dir`): `CACHE/<corpus>_midi`, `CACHE/datasets/<corpus>`;
  with repeats played `CACHE/<corpus>_play_midi`,
  `CACHE/datasets/<corpus>_play`."""
  name = corpus if repeats == DEFAULT_REPEATS else f"{corpus}_{repeats}"
  return (
    files.cache_dir(f"{name}_midi"),
    files.cache_dir("datasets", name),
  )


def defaults(corpus: str = DEFAULT_CORPUS) -> ml_collections.ConfigDict:
  """The `data` group of a training config, for a built-in corpus.

  Fields: midi_dir (folder of MIDI files), abc (instead of midi_dir: an
  ABC tunebook, a folder of them or The Session's tunes.csv / tunes.json,
  converted into dataset_dir/midi; '' for none), dataset_dir (the cached
  dataset), repeats (how the built-in corpus in midi_dir plays its repeats:
  'once' or 'play'; checked against its conversion.json, and the
  conversion made on first use), `CorpusConfig`'s fields (see there),
  vocab_from (fine-tuning:
  tokenize with another run's vocabularies, a workdir or .mjx; set by
  init_from) and max_unk_share (more unknown events per stream than this
  share is an error).
  """
  midi_dir, dataset_dir = corpus_folders(corpus)
  data = ml_collections.ConfigDict()
  data.midi_dir = midi_dir
  data.abc = ""  # an .abc file, a folder of them, or a Session CSV/JSON
  data.dataset_dir = dataset_dir
  data.repeats = DEFAULT_REPEATS  # 'once' or 'play' (a built-in corpus)
  for name, value in CorpusConfig().to_json().items():
    data[name] = tuple(value) if isinstance(value, list) else value
  data.vocab_from = ""
  data.max_unk_share = 0.02
  return data


def check(data: Mapping[str, Any], prefix: str = "config.data.") -> None:
  """The data group of a config.

  Raises:
    ConfigError: a bad folder, repeats, fine-tuning option or
      transposition list.
    CorpusError: a bad tokenization option (`CorpusConfig`'s rules).
  """
  for field in ("midi_dir", "dataset_dir"):
    value = data[field]
    if not isinstance(value, str) or not value.strip():
      raise errors.ConfigError(f"{prefix}{field} must be a folder path")
  _check_abc(data, prefix)
  repeats = data.get("repeats", DEFAULT_REPEATS)
  if repeats not in REPEATS:
    raise errors.ConfigError(
      f"{prefix}repeats must be one of {REPEATS}, got {repeats!r}"
    )
  shifts = data["transpositions"]
  if not isinstance(shifts, tuple | list) or not all(
    map(checks.is_int, shifts)
  ):
    raise errors.ConfigError(
      f"{prefix}transpositions must be a tuple of semitones such as "
      f"(-2, -1, 1, 2), got {shifts!r}"
    )
  CorpusConfig.from_config(data)
  checks.text(
    data["vocab_from"],
    prefix + "vocab_from",
    "a workdir or .mjx path (or empty)",
  )
  checks.number(data["max_unk_share"], prefix + "max_unk_share", 0.0, 1.0)
  checks.text(
    data.get("exclude_test_of", ""),
    prefix + "exclude_test_of",
    "a dataset folder (or empty)",
  )


def _check_abc(data: Mapping[str, Any], prefix: str) -> None:
  """data.abc: a path or ''; with one, a dataset folder of its own (not
  the default corpus's, which it would replace)."""
  abc = data.get("abc", "")
  checks.text(abc, prefix + "abc", "an ABC file, folder or Session CSV")
  if not abc:
    return
  dataset_dir = os.path.abspath(os.path.expanduser(data["dataset_dir"]))
  if dataset_dir in (corpus_folders(DEFAULT_CORPUS, r)[1] for r in REPEATS):
    raise errors.ConfigError(
      f"{prefix}abc is set but {prefix}dataset_dir is {dataset_dir}, the "
      f"built-in {DEFAULT_CORPUS} dataset: set {prefix}dataset_dir to a "
      "folder of its own for the ABC's dataset"
    )
