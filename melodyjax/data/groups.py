"""Groups of songs that must share a split: settings of one tune and
near-duplicates, transposed or not. No JAX.

A song's melody, read as its sequence of (interval from the previous
note's top pitch, duration) symbols, is independent of its key: a
transposed copy reads the same. Two songs are near-duplicates when the
Jaccard similarity of their sets of `SHINGLE`-symbol shingles is at least
`THRESHOLD` (one note changed in a 40-note tune changes `SHINGLE` + 1
shingles: 0.76). On ESAC and O'Neill's, 99.9% of random pairs of songs
are below 0.05, and the pairs found between 0.4 and 0.6 are variants of
one tune (a changed bar, a rhythm, a cadence). Identical sequences are
found by their digest; similar ones by MinHash signatures (`NUM_HASHES`
per song, made in the tokenizing workers) and locality-sensitive hashing
(`BANDS` bands of `ROWS` rows: a pair with similarity 0.5 shares a band
with probability 0.87, one with 0.6 with 0.99, one with 0.05 with 2e-4),
each candidate pair checked on its shingles. Settings with one Session
tune id are one group whatever their notes. Groups are the connected
components of these links.

A group's split is `dataset.assign_split` of its first member's key (the
smallest: `session:<tune id>` for a Session setting, else the relative
path), so a song added to the corpus moves no other group unless it links
groups that were apart.
"""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Iterable, Sequence

import numpy as np

from melodyjax.data import dataset as dataset_lib
from melodyjax.data.config import CorpusConfig
from melodyjax.music.events import Event

SHINGLE = 4  # symbols per shingle
THRESHOLD = 0.5  # Jaccard similarity of near-duplicates
NUM_HASHES = 128  # MinHash signature length
BANDS, ROWS = 32, 4  # LSH: BANDS * ROWS == NUM_HASHES
# Checks of one song in one LSH bucket, at most (see `_link_near`).
MAX_CHECKS = 16
# Goes into the dataset manifest: a changed rule rebuilds the cache.
RULE = (
  f"Session tune id, identical (interval, duration) sequence, or Jaccard "
  f">= {THRESHOLD} of {SHINGLE}-symbol shingles (MinHash {BANDS}x{ROWS}, "
  f"{MAX_CHECKS} checks a bucket)"
)
_REST = 1 << 12  # the interval field of a rest
_FIRST = (1 << 12) + 1  # the interval field of a song's first note
_MASK64 = (1 << 64) - 1
_rng = np.random.default_rng(20261206)
_A = _rng.integers(1, 1 << 63, NUM_HASHES, dtype=np.uint64) * np.uint64(2) + (
  np.uint64(1)
)
_B = _rng.integers(0, 1 << 63, NUM_HASHES, dtype=np.uint64)


def melody_symbols(events: Iterable[Event]) -> np.ndarray:
  """uint64 [num_events] (interval, duration) codes, the same for every
  transposition (a chord reads as its top note)."""
  codes = []
  previous = None
  for event in events:
    if event.pitches:
      top = max(event.pitches)
      interval = _FIRST if previous is None else top - previous + 2048
      previous = top
    else:
      interval = _REST
    quarters = event.quarters
    numerator = min(quarters.numerator, (1 << 20) - 1)
    denominator = min(quarters.denominator, (1 << 20) - 1)
    codes.append((interval << 40) | (numerator << 20) | denominator)
  return np.array(codes, dtype=np.uint64)


def _mix(x: np.ndarray) -> np.ndarray:
  """splitmix64's finalizer, element-wise (uint64 wraps)."""
  x = x ^ (x >> np.uint64(30))
  x = x * np.uint64(0xBF58476D1CE4E5B9)
  x = x ^ (x >> np.uint64(27))
  x = x * np.uint64(0x94D049BB133111EB)
  return x ^ (x >> np.uint64(31))


def shingles(symbols: np.ndarray) -> np.ndarray:
  """uint64 [num_shingles] sorted distinct hashes of the `SHINGLE`-grams
  (one shingle of the whole song when it is shorter)."""
  n = min(SHINGLE, len(symbols))
  if n == 0:
    return np.zeros(0, np.uint64)
  count = len(symbols) - n + 1
  h = np.zeros(count, np.uint64)
  with np.errstate(over="ignore"):
    for j in range(n):
      h = _mix(h ^ symbols[j : j + count])
  return np.unique(h)


def signature(song_shingles: np.ndarray) -> np.ndarray:
  """uint32 [NUM_HASHES] MinHash signature of a shingle set."""
  if len(song_shingles) == 0:
    return np.full(NUM_HASHES, 0xFFFFFFFF, np.uint32)
  with np.errstate(over="ignore"):
    hashed = song_shingles[:, None] * _A[None, :] + _B[None, :]
  return (hashed.min(axis=0) >> np.uint64(32)).astype(np.uint32)


def fingerprint(events: Sequence[Event]) -> dict:
  """What grouping needs of one song (made in the tokenizing workers):
  the digest of its symbols, its shingles and signature."""
  symbols = melody_symbols(events)
  found = shingles(symbols)
  return {
    "digest": hashlib.sha1(symbols.tobytes()).hexdigest(),
    "shingles": found,
    "signature": signature(found),
  }


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
  """Jaccard similarity of two sorted distinct shingle arrays."""
  shared = len(np.intersect1d(a, b, assume_unique=True))
  union = len(a) + len(b) - shared
  return shared / union if union else 1.0


class _Components:
  """Union-find over song indices."""

  def __init__(self, n: int):
    self.parent = list(range(n))

  def find(self, i: int) -> int:
    root = i
    while self.parent[root] != root:
      root = self.parent[root]
    while self.parent[i] != root:
      self.parent[i], i = root, self.parent[i]
    return root

  def union(self, i: int, j: int) -> bool:
    ri, rj = self.find(i), self.find(j)
    if ri == rj:
      return False
    self.parent[max(ri, rj)] = min(ri, rj)
    return True


def _buckets(signatures: np.ndarray):
  """Yields, band by band, the sorted row indices of `signatures`
  [n, NUM_HASHES] that share the band's values (two or more)."""
  for band in range(BANDS):
    rows = np.ascontiguousarray(signatures[:, band * ROWS : (band + 1) * ROWS])
    keys = rows.view(np.dtype((np.void, rows.itemsize * ROWS))).ravel()
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    edges = np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1
    for bucket in np.split(order, edges):
      if len(bucket) > 1:
        yield np.sort(bucket).tolist()


def _link_near(fingerprints, distinct, components, links) -> None:
  """Links near-duplicates among the songs `distinct` (one per digest).

  In each bucket a song is checked against one member of each component
  met earlier in the bucket, at most `MAX_CHECKS` of them, and joins the
  first it matches: a bucket of k copies of one tune costs k - 1 checks,
  not k (k - 1) / 2, so the work stays linear in the corpus.
  """
  signatures = np.stack([fingerprints[i]["signature"] for i in distinct])
  for bucket in _buckets(signatures):
    heads = []  # one song per component met in this bucket
    for i in (distinct[a] for a in bucket):
      root = components.find(i)
      if any(components.find(h) == root for h in heads):
        continue
      for head in heads[:MAX_CHECKS]:
        links["checked_pairs"] += 1
        shared = jaccard(
          fingerprints[i]["shingles"], fingerprints[head]["shingles"]
        )
        if shared >= THRESHOLD:
          links["near"] += components.union(head, i)
          break
      else:
        heads.append(i)


def group_songs(
  fingerprints: Sequence[dict], tune_ids: Sequence[str | None]
) -> tuple[list[int], dict]:
  """Each song's group (the index of its first member) and link counts.

  Args:
    fingerprints: `fingerprint` of each song.
    tune_ids: each song's Session tune id, or None.
  """
  n = len(fingerprints)
  components = _Components(n)
  links = collections.Counter()
  first_of = {}
  for i, (found, tune) in enumerate(zip(fingerprints, tune_ids, strict=True)):
    for kind, key in (("tune_id", tune), ("identical", found["digest"])):
      if key is None:
        continue
      if (kind, key) in first_of:
        links[kind] += components.union(first_of[kind, key], i)
      else:
        first_of[kind, key] = i
  distinct = sorted({first_of["identical", f["digest"]] for f in fingerprints})
  if distinct:
    _link_near(fingerprints, distinct, components, links)
  return [components.find(i) for i in range(n)], dict(links)


def _tune_id(record: dict) -> str | None:
  found = (record.get("tune") or {}).get("tune_id")
  return None if found is None else str(found)


def song_key(relpath: str, tune_id: str | None) -> str:
  """What a group's split is hashed from: its smallest member key."""
  return f"session:{tune_id}" if tune_id is not None else relpath


def assign_group_splits(records: Sequence[dict], config: CorpusConfig) -> dict:
  """Sets each kept record's 'split' and 'group' from its group and
  returns the report's 'groups' entry (see `report.group_report`).

  Each record needs 'source', 'fingerprint' and, for a Session setting,
  'tune' (its entry of the conversion's tunes.json) with a 'tune_id'.
  """
  tune_ids = [_tune_id(r) for r in records]
  groups, links = group_songs([r["fingerprint"] for r in records], tune_ids)
  members = collections.defaultdict(list)
  for i, group in enumerate(groups):
    members[group].append(i)
  moved = 0
  sizes = collections.Counter()
  for group, indices in members.items():
    first = min(song_key(records[i]["source"], tune_ids[i]) for i in indices)
    split = dataset_lib.assign_split(first, config)
    sizes[len(indices)] += 1
    for i in indices:
      record = records[i]
      moved += split != dataset_lib.assign_split(record["source"], config)
      record["split"] = split
      record["group"] = group
  largest = max(sizes) if sizes else 0
  return {
    "groups": len(members),
    "groups_of_several": sum(c for s, c in sizes.items() if s > 1),
    "songs_in_groups_of_several": sum(s * c for s, c in sizes.items() if s > 1),
    "largest_group": largest,
    "links": links,
    "moved_from_path_hash": moved,
    "rule": RULE,
  }
