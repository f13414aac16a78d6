"""Another corpus, seen through a run's vocabularies: cross-corpus scoring.

  melodyjax-evaluate --workdir=RUN --dataset_dir=D   # a built one
  melodyjax-evaluate --workdir=RUN --midi_dir=M      # a folder

The other corpus is tokenized as fine-tuning tokenizes a new one
(`config.data.vocab_from`): `build.build_dataset` with the run's pitch,
duration and label vocabularies, so its ids are the run's and every token
the run never saw is unk, counted per stream rather than refused. It keeps
the run's key setting and grid: a `--dataset_dir` built with another
`normalize_key` or `grid` is refused (one line naming it); a `--midi_dir`
is tokenized with the run's data settings. The result is cached below the
dataset cache (`cross/`), keyed by the folder, the settings and the
vocabularies, as any dataset is; the baselines are fitted on its training
split, so they are the other corpus's own classical models, scored on the
same test songs and unk targets as the model.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
from typing import Any

from melodyjax import errors, files
from melodyjax.data import build
from melodyjax.data import config as data_config_lib
from melodyjax.data import dataset as dataset_lib
from melodyjax.music import tokens
from melodyjax.music.events import Event
from melodyjax.training import runs

CROSS_FOLDER = "cross"  # below the dataset cache
CHECKED = ("normalize_key", "grid")  # settings a corpus must share with a run
MOST_COMMON = 8


def datasets_root() -> str:
  """The dataset cache: `$MELODYJAX_CACHE/datasets` (`~/.cache/melodyjax`)."""
  return files.cache_dir("datasets")


def _setting(name: str, value: Any) -> str:
  if name == "normalize_key":
    return (
      f"normalize_key={value} ({'key-normalised' if value else 'as written'})"
    )
  return f"{name}={value}"


def _built_corpus(dataset_dir: str) -> tuple[str, data_config_lib.CorpusConfig]:
  """(MIDI folder, corpus settings) of a built dataset folder."""
  if not os.path.isdir(dataset_dir):
    raise errors.UsageError(
      f"--dataset_dir: dataset folder not found: {dataset_dir}"
    )
  try:
    with open(os.path.join(dataset_dir, "manifest.json")) as f:
      manifest = json.load(f)
    midi_dir = manifest["midi_dir"]
    config = data_config_lib.CorpusConfig(**manifest["config"])
  except (OSError, ValueError, KeyError, TypeError, errors.CorpusError):
    raise errors.UsageError(
      f"--dataset_dir: {dataset_dir} holds no built dataset (no readable "
      "manifest.json): give a folder written by train_main.py or "
      "melodyjax-corpus, or the MIDI folder as --midi_dir"
    ) from None
  return midi_dir, config


def _check_settings(
  run: runs.Run, config: data_config_lib.CorpusConfig, dataset_dir: str
) -> None:
  """Refuses a corpus built with another key setting or grid than the run."""
  for name in CHECKED:
    ours, theirs = run.config.data[name], getattr(config, name)
    if ours != theirs:
      raise errors.UsageError(
        f"--dataset_dir {dataset_dir} was built with {_setting(name, theirs)} "
        f"and {run.workdir} trained with {_setting(name, ours)}: give a "
        f"dataset built with config.data.{name}={ours}, or its MIDI folder "
        "as --midi_dir (tokenized with the run's settings)"
      )


def _cache_dir(midi_dir: str, config, run: runs.Run) -> str:
  """Where the corpus, tokenized with the run's vocabularies, is cached."""
  key = json.dumps(
    [
      midi_dir,
      config.to_json(),
      list(run.pitch_vocab.tokens),
      list(run.duration_vocab.tokens),
    ]
  )
  digest = hashlib.sha1(key.encode()).hexdigest()[:12]
  name = os.path.basename(midi_dir.rstrip(os.sep)) or "corpus"
  return os.path.join(datasets_root(), CROSS_FOLDER, f"{name}-{digest}")


@dataclasses.dataclass(frozen=True)
class Corpus:
  """The other corpus of a cross-corpus evaluation.

  Attributes:
    dataset: tokenized with the run's vocabularies and labels.
    midi_dir: its MIDI folder.
    name: a short name (the MIDI folder's), for output folders.
    given: the --dataset_dir or --midi_dir asked for.
    unknown: `unknown_tokens` of its test split.
  """

  dataset: dataset_lib.Dataset
  midi_dir: str
  name: str
  given: str
  unknown: dict[str, dict[str, Any]]


def load_corpus(
  run: runs.Run,
  *,
  dataset_dir: str | None = None,
  midi_dir: str | None = None,
  progress: bool = False,
) -> Corpus:
  """The corpus of `dataset_dir` (a built dataset) or `midi_dir` (a MIDI
  folder), tokenized with the run's vocabularies; built once, then cached.

  Raises:
    UsageError: both or neither given, a missing or foreign dataset folder,
      another key setting or grid than the run's.
    CorpusError: a missing or empty MIDI folder (`build.build_dataset`).
  """
  if (dataset_dir is None) == (midi_dir is None):
    raise errors.UsageError("give --dataset_dir or --midi_dir, not both")
  if dataset_dir is not None:
    given = os.path.abspath(os.path.expanduser(dataset_dir))
    source, config = _built_corpus(given)
    _check_settings(run, config, given)
    own = _same_tokens(given, run)
    if own is None and not os.path.isdir(source):
      raise errors.UsageError(
        f"--dataset_dir {given}: its MIDI folder {source} is gone (the "
        "corpus is tokenized again with the run's vocabularies)"
      )
  else:
    given = source = os.path.abspath(os.path.expanduser(midi_dir))
    config = data_config_lib.CorpusConfig.from_config(run.config.data)
    own = None
  flag = "--dataset_dir" if dataset_dir is not None else "--midi_dir"
  try:
    dataset = own or build.build_dataset(
      source,
      _cache_dir(source, config, run),
      config,
      progress=progress,
      vocabs=(run.pitch_vocab, run.duration_vocab),
      label_vocabs=run.labels,
    )
  except errors.CorpusError as e:
    raise errors.CorpusError(f"{flag}: {e}") from None
  _check_splits(dataset, flag, given)
  name = os.path.basename(source.rstrip(os.sep)) or "corpus"
  return Corpus(dataset, source, name, given, unknown_tokens(dataset, run))


def _check_splits(dataset: dataset_lib.Dataset, flag: str, given: str) -> None:
  """Refuses a corpus with no song in a split (baselines and scores need
  training, validation and test songs)."""
  counts = {s: len(dataset.splits[s].originals()) for s in dataset_lib.SPLITS}
  if min(counts.values()) == 0:
    listed = ", ".join(f"{n} {s}" for s, n in counts.items())
    raise errors.CorpusError(
      f"{flag} {given}: too few songs to score ({listed}; "
      f"{dataset.report.get('dropped', 0)} of "
      f"{dataset.report.get('files', 0)} files dropped): every split needs "
      "one; give a larger corpus"
    )


def _same_tokens(dataset_dir: str, run: runs.Run):
  """The dataset of `dataset_dir` when its vocabularies and labels are
  already the run's (its own corpus), else None."""
  dataset = dataset_lib.load_dataset(dataset_dir)
  same = (dataset.pitch_vocab.tokens, dataset.duration_vocab.tokens) == (
    run.pitch_vocab.tokens,
    run.duration_vocab.tokens,
  )
  return dataset if same and dataset.labels == run.labels else None


def _export(dataset: dataset_lib.Dataset, split: str):
  """The token strings of a split's original songs (`songs.jsonl`)."""
  for song in dataset_lib.iter_export(
    os.path.join(dataset.path, "songs.jsonl")
  ):
    if song["split"] == split and not song.get("transposition"):
      yield song


def corpus_songs(dataset: dataset_lib.Dataset, split: str) -> list[list[Event]]:
  """A split's original songs as events, from their tokens as read (those
  the run never saw included: the corpus as it is, for its statistics)."""
  return [
    tokens.tokens_to_events(song["pitch"], song["duration"])
    for song in _export(dataset, split)
  ]


def unknown_tokens(
  dataset: dataset_lib.Dataset, run: runs.Run, split: str = "test"
) -> dict[str, dict[str, Any]]:
  """Per stream, the events of a split's original songs whose token the
  run never saw (scored as unk): {"share", "count", "events",
  "most_common": {token: count}}."""
  seen = {stream: collections.Counter() for stream in tokens.STREAMS}
  for song in _export(dataset, split):
    for stream in tokens.STREAMS:
      seen[stream].update(song[stream])
  out = {}
  for stream, vocab in (
    ("pitch", run.pitch_vocab),
    ("duration", run.duration_vocab),
  ):
    unseen = collections.Counter(
      {t: c for t, c in seen[stream].items() if t not in vocab}
    )
    events = sum(seen[stream].values())
    count = sum(unseen.values())
    out[stream] = {
      "share": count / events if events else 0.0,
      "count": count,
      "events": events,
      "most_common": dict(unseen.most_common(MOST_COMMON)),
    }
  return out


def format_unknown(unknown: dict[str, dict[str, Any]]) -> str:
  """One line: per stream, the unk share and its most common tokens."""
  parts = []
  for stream, u in unknown.items():
    common = ", ".join(f"{t} ({c})" for t, c in u["most_common"].items())
    parts.append(
      f"{stream} {100 * u['share']:.2f}% ({u['count']} of {u['events']})"
      + (f": {common}" if common else "")
    )
  return "tokens the run never saw (unk), test split: " + "; ".join(parts)
