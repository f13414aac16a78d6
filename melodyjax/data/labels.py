"""The song-level labels a model can be conditioned on, and their
vocabularies: time signature, mode and style. No JAX.

Each kind has a vocabulary built on the training split, saved as
`vocab_labels.json` in the dataset folder and in a run's workdir, like the
token vocabularies. Id 0 is reserved for "unknown": a song without a
usable time signature, a style missing from the training split, a file
directly in the corpus folder (no style). Labels:
- time_signature: '3/4', '6/8', ... (the one in force at each event);
- mode: 'major' or 'minor', from the key finding (`music.tonality`);
- style: the song's top-level subfolder in the corpus (ESAC: its
  collection, 'altdeu10', 'han1', ...).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from collections.abc import Iterable, Mapping

from melodyjax import files

UNKNOWN = "<unknown>"
UNKNOWN_ID = 0
KINDS = ("time_signature", "mode", "style")
FILE = "vocab_labels.json"


@dataclasses.dataclass(frozen=True)
class LabelVocab:
  """One kind's labels by id (id 0: unknown) and their training counts.

  Attributes:
    kind: one of KINDS.
    labels: every label by id, UNKNOWN first.
    counts: training songs per label.
  """

  kind: str
  labels: tuple[str, ...]
  counts: Mapping[str, int] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
    if not self.labels or self.labels[0] != UNKNOWN:
      raise ValueError(f"{self.kind} labels must start with {UNKNOWN}")

  def __len__(self) -> int:
    return len(self.labels)

  def id(self, label: str | None) -> int:
    """The id of `label`, or UNKNOWN_ID (None included)."""
    try:
      return self.labels.index(label) if label is not None else UNKNOWN_ID
    except ValueError:
      return UNKNOWN_ID

  @property
  def known(self) -> tuple[str, ...]:
    """The labels a request may ask for (all but unknown)."""
    return self.labels[1:]

  def most_common(self) -> str | None:
    """The label of most training songs (None: only unknown ones)."""
    known = {k: v for k, v in self.counts.items() if k in self.known}
    return max(known, key=lambda k: (known[k], k)) if known else None


def build(
  kind: str, values: Iterable[str | None], min_count: int = 1
) -> LabelVocab:
  """The vocabulary of the training songs' labels (None: unknown); labels
  of fewer than `min_count` songs are unknown (ESAC: the odd time
  signatures music21 gives an over-full bar, '93/16')."""
  counts = collections.Counter(v for v in values if v is not None)
  kept = sorted(k for k, v in counts.items() if v >= min_count)
  return LabelVocab(kind, (UNKNOWN, *kept), {k: counts[k] for k in kept})


@dataclasses.dataclass(frozen=True)
class Labels:
  """The three label vocabularies of a dataset or a run."""

  time_signature: LabelVocab
  mode: LabelVocab
  style: LabelVocab

  def __getitem__(self, kind: str) -> LabelVocab:
    return getattr(self, kind)

  def to_json(self) -> dict:
    return {
      kind: {
        "labels": list(self[kind].labels),
        "counts": dict(self[kind].counts),
      }
      for kind in KINDS
    }

  @classmethod
  def from_json(cls, data: Mapping) -> Labels:
    return cls(
      **{
        kind: LabelVocab(
          kind, tuple(data[kind]["labels"]), dict(data[kind]["counts"])
        )
        for kind in KINDS
      }
    )

  def save(self, path: str | os.PathLike) -> None:
    files.write_json(path, self.to_json(), indent=1)

  @classmethod
  def load(cls, path: str | os.PathLike) -> Labels:
    with open(path) as f:
      return cls.from_json(json.load(f))


def empty() -> Labels:
  """Labels with nothing known (a run from before conditioning existed)."""
  return Labels(*(LabelVocab(kind, (UNKNOWN,)) for kind in KINDS))


def style_of(relpath: str) -> str | None:
  """A song's style: its top-level subfolder (None: in the corpus root)."""
  parts = relpath.replace(os.sep, "/").split("/")
  return parts[0] if len(parts) > 1 else None
