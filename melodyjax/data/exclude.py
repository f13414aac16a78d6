"""Leaving out of a corpus every song that matches a held-out song of
another dataset, so that pretraining on it never sees that dataset's test
tunes. No JAX.

A song matches when it is identical to a held-out song of the reference
dataset or a near-duplicate of one (the rule of `data.groups`, so a
transposed copy matches too), read from the reference's token export
(`songs.jsonl`, each held-out song's original tokens). The build drops each
match with the reason `MATCH_REASON`; the report counts them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

from melodyjax import errors
from melodyjax.data import dataset as dataset_lib
from melodyjax.data import groups
from melodyjax.music import tokens

MATCH_REASON = "matches_excluded"
EXPORT = "songs.jsonl"


def reference_splits(exclude_valid: bool) -> tuple[str, ...]:
  return ("test", "valid") if exclude_valid else ("test",)


def reference_digest(dataset_dir: str) -> str:
  """Which build of the reference a dataset excluded (its manifest's hash).

  Raises:
    CorpusError: `dataset_dir` holds no complete dataset.
  """
  try:
    with open(os.path.join(dataset_dir, "manifest.json"), "rb") as f:
      manifest = f.read()
    os.stat(os.path.join(dataset_dir, EXPORT))
  except OSError as e:
    raise errors.CorpusError(
      f"config.data.exclude_test_of (--exclude_test_of): no complete "
      f"dataset in {dataset_dir} ({e.strerror}): give a folder written by "
      "melodyjax-corpus or train_main.py"
    ) from None
  return hashlib.sha1(manifest).hexdigest()


class Reference:
  """The held-out songs of a dataset, indexed for matching."""

  def __init__(self, dataset_dir: str, splits: Sequence[str]):
    self.dataset_dir = dataset_dir
    self.splits = tuple(splits)
    self.sources: list[str] = []
    self.shingles = []
    self.by_digest: dict[str, int] = {}
    self.by_band: dict[tuple[int, bytes], list[int]] = {}
    export = os.path.join(dataset_dir, EXPORT)
    for song in dataset_lib.iter_export(export):
      if song["split"] not in self.splits or song.get("transposition"):
        continue
      events = tokens.tokens_to_events(song["pitch"], song["duration"])
      self._add(f"{song['split']} song {song['source']}", events)

  def _add(self, name: str, events) -> None:
    found = groups.fingerprint(events)
    index = len(self.sources)
    self.sources.append(name)
    self.shingles.append(found["shingles"])
    self.by_digest.setdefault(found["digest"], index)
    for key in groups.band_keys(found["signature"]):
      self.by_band.setdefault(key, []).append(index)

  def match(self, found: dict) -> tuple[str, int] | None:
    """('identical' or 'near', reference index) of a song's first match."""
    if found["digest"] in self.by_digest:
      return "identical", self.by_digest[found["digest"]]
    seen = set()
    for key in groups.band_keys(found["signature"]):
      for index in self.by_band.get(key, ()):
        if index in seen:
          continue
        seen.add(index)
        similarity = groups.jaccard(found["shingles"], self.shingles[index])
        if similarity >= groups.THRESHOLD:
          return "near", index
    return None


def exclude_matches(
  records: list[dict], dataset_dir: str, exclude_valid: bool
) -> dict:
  """Replaces each kept record that matches a held-out song of the
  dataset in `dataset_dir` by a drop record; returns the report's
  'excluded' entry.

  Each kept record needs its 'fingerprint' (`groups.fingerprint`).
  """
  reference = Reference(dataset_dir, reference_splits(exclude_valid))
  counts = {"identical": 0, "near": 0}
  for i, record in enumerate(records):
    if "drop" in record:
      continue
    found = reference.match(record["fingerprint"])
    if found is None:
      continue
    kind, index = found
    counts[kind] += 1
    records[i] = {
      "source": record["source"],
      "drop": MATCH_REASON,
      "message": (
        f"{record['source']}: {kind} to {reference.sources[index]} of "
        f"{dataset_dir}"
      ),
    }
  return {
    "dataset": dataset_dir,
    "splits": list(reference.splits),
    "reference_songs": len(reference.sources),
    "excluded": counts["identical"] + counts["near"],
    **counts,
  }
