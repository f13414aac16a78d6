"""Sample statistics of melody sets and a copying check. No JAX.

Objective evaluation after Yang & Lerch (2018, "On the evaluation of
generative models in music"): the same musical features are computed on
generated melodies and on the training corpus, and each feature's two
distributions are compared by their overlapping area (OA) and KL divergence.

Features (a melody is a list of `Event`; a chord is one event):
- pitch_class: histogram [12] of pitch classes, one count per sounding note
  (each note of a chord counts; durations are not weighted).
- interval: histogram [25] of semitone steps between successive note events
  within a song, from the top note of one to the top note of the next, rests
  skipped, clipped to [-12, 12]; bin i is the step i - 12.
- duration: histogram of duration tokens ('0.5', '1/3'), rests included.
- pitch_range (per song): highest minus lowest MIDI pitch, in semitones.
- notes_per_song (per song): note and chord events (rests not counted).
- in_key (per song): share of the song's notes (chord notes each) whose pitch
  class lies in the diatonic scale of the song's key from
  `tonality.estimate_key`: major, or natural minor for a minor key.
- repeated (per song): share of note events, after the first, whose pitches
  equal those of the previous note event (rests skipped).

Per-song values are NaN where undefined (no notes, or fewer than two note
events for `repeated`) and left out of comparisons. To compare per-song
features, both sets are histogrammed on shared bins: integer features on
bins of integer width covering both sets' range (at most `MAX_BINS` bins),
shares on `SHARE_BINS` equal bins of [0, 1]. OA is the sum of the bin-wise
minimum of the two normalised histograms (1 for identical distributions, 0
for disjoint ones). KL is KL(generated || corpus) in nats, both histograms
smoothed by adding `EPSILON` to every normalised bin and renormalising, so
it stays finite when the corpus has no mass where the generated set has some.

The copying check finds, for each generated melody, the longest run of
consecutive events (pitches and duration both equal) that also occurs in a
training song. It grows all matches one event at a time, renaming each
matched run to a dense id with numpy, so it is exact (no hashing) and takes
well under a second for 8k training songs.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from melodyjax.data import dataset as dataset_lib
from melodyjax.music import tokens, tonality
from melodyjax.music.events import Event

INTERVAL_CLIP = 12
MAX_BINS = 40
SHARE_BINS = 20
EPSILON = 1e-6
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)  # natural minor
HISTOGRAMS = ("pitch_class", "interval", "duration")
PER_SONG = ("pitch_range", "notes_per_song", "in_key", "repeated")
INTEGER_FEATURES = ("pitch_range", "notes_per_song")

Melody = Sequence[Event]


def scale_pitch_classes(tonic: int, mode: str) -> frozenset[int]:
  """The 7 pitch classes of a key: major, or natural minor."""
  steps = MINOR_SCALE if mode == tonality.MINOR else MAJOR_SCALE
  return frozenset((tonic + s) % 12 for s in steps)


def _song_counts(events: Melody) -> dict[str, int]:
  """Counts behind the per-song features of one melody."""
  notes = [e for e in events if e.pitches]
  pitches = [p for e in notes for p in e.pitches]
  counts = {
    "notes": len(notes),
    "pitches": len(pitches),
    "range": max(pitches) - min(pitches) if pitches else 0,
    "in_key": 0,
    "pairs": max(len(notes) - 1, 0),
    "repeats": sum(
      a.pitches == b.pitches for a, b in itertools.pairwise(notes)
    ),
  }
  if pitches:
    scale = scale_pitch_classes(*tonality.estimate_key(events))
    counts["in_key"] = sum(p % 12 in scale for p in pitches)
  return counts


def _ratio(a: int, b: int) -> float:
  return a / b if b else math.nan


def compute_statistics(melodies: Sequence[Melody]) -> dict[str, Any]:
  """The features of a set of melodies.

  Args:
    melodies: songs, each a sequence of `Event`.

  Returns:
    {"pitch_class": float64 [12] note counts, "interval": float64 [25] step
    counts (bin i is i - 12 semitones), "duration": {duration token: count}
    sorted by length, "pitch_range", "notes_per_song", "in_key", "repeated":
    float64 [num_songs] per-song values (NaN where undefined), "in_key_share"
    and "repeated_share": the pooled shares over all notes / note pairs,
    "num_songs"}.
  """
  pitch_class = np.zeros(12)
  interval = np.zeros(2 * INTERVAL_CLIP + 1)
  durations: dict[str, int] = {}
  per_song = {name: [] for name in PER_SONG}
  totals = {"in_key": 0, "pitches": 0, "repeats": 0, "pairs": 0}
  for events in melodies:
    notes = [e for e in events if e.pitches]
    for event in events:
      token = tokens.duration_token(event.quarters)
      durations[token] = durations.get(token, 0) + 1
      for p in event.pitches:
        pitch_class[p % 12] += 1
    for a, b in itertools.pairwise(notes):
      step = b.pitches[-1] - a.pitches[-1]
      step = min(max(step, -INTERVAL_CLIP), INTERVAL_CLIP)
      interval[step + INTERVAL_CLIP] += 1
    c = _song_counts(events)
    for name in totals:
      totals[name] += c[name]
    per_song["pitch_range"].append(c["range"] if c["pitches"] else math.nan)
    per_song["notes_per_song"].append(c["notes"])
    per_song["in_key"].append(
      c["in_key"] / c["pitches"] if c["pitches"] else math.nan
    )
    per_song["repeated"].append(
      c["repeats"] / c["pairs"] if c["pairs"] else math.nan
    )
  order = sorted(durations, key=tokens.parse_duration_token)
  return {
    "pitch_class": pitch_class,
    "interval": interval,
    "duration": {token: durations[token] for token in order},
    **{name: np.array(values, np.float64) for name, values in per_song.items()},
    "in_key_share": _ratio(totals["in_key"], totals["pitches"]),
    "repeated_share": _ratio(totals["repeats"], totals["pairs"]),
    "num_songs": len(melodies),
  }


def overlap(p: np.ndarray, q: np.ndarray) -> float:
  """Overlapping area of two histograms on the same bins, in [0, 1].

  Args:
    p, q: non-negative counts [bins]; each is normalised to sum to 1.

  Returns:
    sum(min(p, q)) of the normalised histograms; NaN if either is empty.
  """
  p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
  if p.sum() <= 0 or q.sum() <= 0:
    return math.nan
  return float(np.minimum(p / p.sum(), q / q.sum()).sum())


def kl_divergence(p: np.ndarray, q: np.ndarray, eps: float = EPSILON) -> float:
  """KL(p || q) in nats of two histograms on the same bins, smoothed.

  Args:
    p, q: non-negative counts [bins].
    eps: added to every bin of the normalised histograms before both are
      normalised again.

  Returns:
    The divergence, >= 0 and 0 for identical histograms; NaN if either is
    empty.
  """
  p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
  if p.sum() <= 0 or q.sum() <= 0:
    return math.nan
  p = p / p.sum() + eps
  q = q / q.sum() + eps
  p, q = p / p.sum(), q / q.sum()
  return float(np.sum(p * np.log(p / q)))


def shared_histograms(
  name: str, a: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Two sets of per-song values histogrammed on the same bins.

  Args:
    name: the feature ('pitch_range', 'notes_per_song', 'in_key',
      'repeated'); integer features get integer-width bins.
    a, b: float [songs] values; NaNs are left out.

  Returns:
    (counts of a [bins], counts of b [bins], bin edges [bins + 1]).
  """
  a = np.asarray(a, np.float64)
  b = np.asarray(b, np.float64)
  a, b = a[~np.isnan(a)], b[~np.isnan(b)]
  if name in INTEGER_FEATURES:
    both = np.concatenate([a, b])
    lo = float(np.floor(both.min())) if both.size else 0.0
    hi = float(np.floor(both.max())) if both.size else 0.0
    width = max(1, math.ceil((hi - lo + 1) / MAX_BINS))
    bins = math.ceil((hi - lo + 1) / width)
    edges = lo + width * np.arange(bins + 1, dtype=np.float64)
  else:
    edges = np.linspace(0.0, 1.0, SHARE_BINS + 1)
  return np.histogram(a, edges)[0], np.histogram(b, edges)[0], edges


def _aligned(
  name: str, generated: Mapping[str, Any], reference: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
  """The two sets' histograms of one feature on shared bins."""
  g, r = generated[name], reference[name]
  if name == "duration":
    names = sorted(set(g) | set(r), key=tokens.parse_duration_token)
    return (
      np.array([g.get(t, 0) for t in names], np.float64),
      np.array([r.get(t, 0) for t in names], np.float64),
    )
  if name in PER_SONG:
    g, r, _ = shared_histograms(name, g, r)
  return np.asarray(g, np.float64), np.asarray(r, np.float64)


def compare(
  generated_stats: Mapping[str, Any], corpus_stats: Mapping[str, Any]
) -> dict[str, dict[str, float]]:
  """Overlap and KL of each feature, generated against corpus.

  Args:
    generated_stats: `compute_statistics` of the generated melodies.
    corpus_stats: `compute_statistics` of the corpus songs.

  Returns:
    {feature: {"overlap": OA in [0, 1], "kl": KL(generated || corpus) in
    nats}} for the histograms and per-song features (see module docstring).
  """
  result = {}
  for name in HISTOGRAMS + PER_SONG:
    g, r = _aligned(name, generated_stats, corpus_stats)
    result[name] = {"overlap": overlap(g, r), "kl": kl_divergence(g, r)}
  return result


# ------------------------------------------------------------ copying check


def _event_ids(
  songs: Sequence[Melody], index: dict[Event, int], separator: int
) -> np.ndarray:
  """Songs as one int64 array of event ids, `separator` after each song."""
  out = []
  for song in songs:
    for event in song:
      key = Event(tuple(event.pitches), event.quarters)
      out.append(index.setdefault(key, len(index)))
    out.append(separator)
  return np.array(out, np.int64)


def longest_copied_run(
  melodies: Sequence[Melody], training_songs: Sequence[Melody]
) -> list[int]:
  """For each melody, the longest run of its events found in a training song.

  Runs match when consecutive events have equal pitches and durations; runs
  never span two training songs. Exact: matches grow one event at a time
  and each matched run is renamed to a dense id (rank of its previous id and
  its next event), so no hashing is involved.

  Args:
    melodies: generated melodies, each a sequence of `Event`.
    training_songs: the training songs, the same way.

  Returns:
    [len(melodies)] run lengths in events (0 when no event occurs at all).
  """
  index: dict[Event, int] = {}
  train = _event_ids(training_songs, index, separator=-1)
  query = _event_ids(melodies, index, separator=-2)
  song_of = np.repeat(
    np.arange(len(melodies)), [len(m) + 1 for m in melodies]
  ).astype(np.int64)
  width = max(len(index), 1)
  best = np.zeros(len(query), np.int64)  # longest match starting here
  # n = 1: a run's id is its event id; separators never match.
  t_pos = np.flatnonzero(train >= 0)
  q_pos = np.flatnonzero(np.isin(query, train[t_pos]) & (query >= 0))
  t_id, q_id = train[t_pos], query[q_pos]
  n = 1
  while q_pos.size:
    best[q_pos] = n
    # Extend by the next event; drop runs that reach the array's end.
    t_keep, q_keep = t_pos + n < len(train), q_pos + n < len(query)
    t_pos, t_id = t_pos[t_keep], t_id[t_keep]
    q_pos, q_id = q_pos[q_keep], q_id[q_keep]
    t_next, q_next = train[t_pos + n], query[q_pos + n]
    t_keep, q_keep = t_next >= 0, q_next >= 0
    t_pos, t_id, t_next = t_pos[t_keep], t_id[t_keep], t_next[t_keep]
    q_pos, q_id, q_next = q_pos[q_keep], q_id[q_keep], q_next[q_keep]
    # A run's id and its next event as one int64 (ids < number of runs).
    pairs = np.concatenate([t_id * width + t_next, q_id * width + q_next])
    if not len(pairs):
      break
    _, renamed = np.unique(pairs, return_inverse=True)
    renamed = renamed.reshape(-1)
    t_new, q_new = renamed[: len(t_pos)], renamed[len(t_pos) :]
    q_keep = np.isin(q_new, t_new)
    t_keep = np.isin(t_new, q_new[q_keep])
    q_pos, q_id = q_pos[q_keep], q_new[q_keep]
    t_pos, t_id = t_pos[t_keep], t_new[t_keep]
    n += 1
  runs = np.zeros(len(melodies), np.int64)
  np.maximum.at(runs, song_of, best)
  return runs.tolist()


def corpus_melodies(
  dataset: dataset_lib.Dataset,
  split: str = "train",
  originals_only: bool = True,
) -> tuple[list[list[Event]], int]:
  """A split's songs as events, leaving out songs with an unk token.

  Args:
    dataset: the dataset.
    split: 'train', 'valid' or 'test'.
    originals_only: leave out transposed (augmented) copies.

  Returns:
    (songs as lists of events, number of songs left out for unk).
  """
  data = dataset.splits[split]
  songs, skipped = [], 0
  for i in data.originals() if originals_only else range(len(data)):
    pitch, duration = data.song(i)
    if np.any(pitch == tokens.UNK_ID) or np.any(duration == tokens.UNK_ID):
      skipped += 1
      continue
    songs.append(
      tokens.tokens_to_events(
        dataset.pitch_vocab.decode(pitch),
        dataset.duration_vocab.decode(duration),
      )
    )
  return songs, skipped
