"""Leaving out of a corpus every song that matches a held-out song of
another dataset, so that pretraining on it never sees that dataset's test
tunes. No JAX.

A song matches when it is identical to a held-out song of the reference
dataset or a near-duplicate of one (`data.groups`' shingles of intervals
and durations, so a transposed copy matches too, at `THRESHOLD`), read
from the reference's token export (`songs.jsonl`, each held-out song's
original tokens). The build drops each
match with the reason `MATCH_REASON`; the report counts them.
"""

from __future__ import annotations

import collections
import hashlib
import os
from collections.abc import Sequence

from melodyjax import errors
from melodyjax.data import dataset as dataset_lib
from melodyjax.data import groups
from melodyjax.music import tokens

MATCH_REASON = "matches_excluded"
# Jaccard similarity of shingles (`data.groups`) that makes a match: lower
# than the grouping's, since leaving out a pretraining song costs little and
# a leak spoils the test. Measured on O'Neill's held-out 189 against Ryan's
# 1,059: pairs at 0.25-0.5 are settings of one tune (Garryowen, Blackwater,
# The Girl I Left Behind Me); 99.9% of random pairs are below 0.05.
THRESHOLD = 0.25
EXPORT = "songs.jsonl"


def reference_splits(exclude_valid: bool) -> tuple[str, ...]:
  return ("test", "valid") if exclude_valid else ("test",)


def reference_digest(dataset_dir: str) -> str:
  """Which build of the reference a dataset excluded, by which rule.

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
  # The rule too: a changed threshold rebuilds the cache.
  return hashlib.sha1(manifest + f" {THRESHOLD}".encode()).hexdigest()


class Reference:
  """The held-out songs of a dataset, indexed by shingle for matching."""

  def __init__(self, dataset_dir: str, splits: Sequence[str]):
    self.dataset_dir = dataset_dir
    self.splits = tuple(splits)
    self.sources: list[str] = []
    self.sizes: list[int] = []
    self.by_digest: dict[str, int] = {}
    self.by_shingle: dict[int, list[int]] = collections.defaultdict(list)
    export = os.path.join(dataset_dir, EXPORT)
    for song in dataset_lib.iter_export(export):
      if song["split"] not in self.splits or song.get("transposition"):
        continue
      events = tokens.tokens_to_events(song["pitch"], song["duration"])
      found = groups.fingerprint(events)
      index = len(self.sources)
      self.sources.append(f"{song['split']} song {song['source']}")
      self.sizes.append(len(found["shingles"]))
      self.by_digest.setdefault(found["digest"], index)
      for shingle in found["shingles"].tolist():
        self.by_shingle[shingle].append(index)

  def match(self, found: dict) -> tuple[str, int] | None:
    """('identical' or 'near', reference index) of a song's best match.

    Exact shingle counts through the index (no sampling): its work is the
    song's shingles times the few held-out songs that share each.
    """
    if found["digest"] in self.by_digest:
      return "identical", self.by_digest[found["digest"]]
    shared = collections.Counter()
    for shingle in found["shingles"].tolist():
      shared.update(self.by_shingle.get(shingle, ()))
    size = len(found["shingles"])
    best, best_index = 0.0, None
    for index, count in shared.items():
      similarity = count / (size + self.sizes[index] - count)
      if similarity > best:
        best, best_index = similarity, index
    return ("near", best_index) if best >= THRESHOLD else None


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
