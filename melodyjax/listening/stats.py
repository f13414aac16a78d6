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
- bar_repeats (per song): share of the song's bars, after the first, whose
  events (pitches, duration and onset within the bar, rests included)
  equal those of an earlier bar of the same song.
- bar_repeats_transposed (per song): the same, equal up to a transposition:
  each bar's pitches taken relative to its first note's lowest pitch (so
  the interval sequence and durations match; rests stay rests, and an
  exact repeat counts too).
- pattern_repeats (per song): share of the song's 4-event patterns
  (consecutive events, pitches and duration; rests are events), after the
  first, heard earlier in the same song (overlaps allowed).

Bars: a bar holds the events with an onset in it; a bar that a held note
spans without an onset is no bar here, and a note held over a bar line
belongs to the bar it starts in (the next bar's first onset is then after
its downbeat). A melody carries no bar lines (`Event` has no onset), so
onsets are the cumulative durations and each event's onset within its bar
comes with the melody: a corpus song's from its dataset (`bar_position`:
the song's time signatures and pickup, `corpus_bar_positions`), a
generated melody's from the time signature it was sampled in, starting on
a downbeat (`bar_positions`; 4/4 by default, as a MIDI file without one).
A corpus song with unknown bar positions is counted in 4/4 from its first
event.

Per-song values are NaN where undefined (no notes, or fewer than two note
events for `repeated`, fewer than two bars for the bar repeats, fewer than
five events for `pattern_repeats`) and left out of comparisons and means.
To compare per-song features, both sets are histogrammed on shared bins:
integer features on bins of integer width covering both sets' range (at
most `MAX_BINS` bins), shares on `SHARE_BINS` equal bins of [0, 1]. OA is
the sum of the bin-wise minimum of the two normalised histograms (1 for
identical distributions, 0 for disjoint ones). KL is KL(generated ||
corpus) in nats, both histograms smoothed by adding `EPSILON` to every
normalised bin and renormalising, so it stays finite when the corpus has
no mass where the generated set has some. `compare_repetition` sets the
three repetition means of generated melodies beside the corpus's (in the
report, its test songs'), with their ratio and whether they are within
25%.

The copying check finds, for each generated melody, the longest run of
consecutive events (pitches and duration both equal) that also occurs in a
training song. It grows all matches one event at a time, renaming each
matched run to a dense id with numpy, so it is exact (no hashing) and takes
well under a second for 8k training songs.
"""

from __future__ import annotations

import fractions
import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from melodyjax.data import dataset as dataset_lib
from melodyjax.music import metre, tokens, tonality
from melodyjax.music.events import Event

INTERVAL_CLIP = 12
MAX_BINS = 40
SHARE_BINS = 20
EPSILON = 1e-6
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)  # natural minor
HISTOGRAMS = ("pitch_class", "interval", "duration")
REPETITION = ("bar_repeats", "bar_repeats_transposed", "pattern_repeats")
PER_SONG = ("pitch_range", "notes_per_song", "in_key", "repeated") + REPETITION
INTEGER_FEATURES = ("pitch_range", "notes_per_song")
PATTERN_EVENTS = 4  # the length of a pattern of `pattern_repeats`
REPETITION_TOLERANCE = 0.25  # a relative gap to the corpus that passes
DEFAULT_SIGNATURE = (4, 4)

Melody = Sequence[Event]
# Each event's onset within its bar, in quarter notes [num_events].
Positions = Sequence[fractions.Fraction]


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


def _fraction(x) -> fractions.Fraction:
  return x if isinstance(x, fractions.Fraction) else fractions.Fraction(x)


def bar_positions(
  events: Melody, time_signature: tuple[int, int] = DEFAULT_SIGNATURE
) -> list[fractions.Fraction]:
  """Each event's onset within its bar, in quarter notes [num_events], for
  a melody in one time signature that starts on a downbeat."""
  bar = metre.bar_quarters(time_signature)
  positions, onset = [], fractions.Fraction(0)
  for event in events:
    positions.append(onset % bar)
    onset += _fraction(event.quarters)
  return positions


def _steps(values: Sequence[fractions.Fraction], unit: int) -> list[int]:
  return [v.numerator * (unit // v.denominator) for v in values]


def _bars(
  events: Melody,
  positions: Positions | None,
  time_signature: tuple[int, int] = DEFAULT_SIGNATURE,
) -> list[list[tuple[int, tuple[int, ...], int]]]:
  """Per bar with an onset, its events as (onset in the bar, pitches,
  duration), times in steps of the song's own unit (exact integers: the
  common denominator of its durations and positions, in quarters)."""
  if positions is None:
    positions = bar_positions(events, time_signature)
  quarters = [_fraction(e.quarters) for e in events]
  known = [_fraction(p) for p in positions]
  if len(known) != len(events):
    raise ValueError(f"{len(known)} positions for {len(events)} events")
  unit = math.lcm(*(q.denominator for q in quarters + known))
  durations = _steps(quarters, unit)
  onsets = [0, *itertools.accumulate(durations)][:-1]
  offsets = _steps(known, unit)
  bars: dict[int, list[tuple]] = {}
  for event, onset, offset, duration in zip(
    events, onsets, offsets, durations, strict=True
  ):
    bars.setdefault(onset - offset, []).append(
      (offset, tuple(event.pitches), duration)
    )
  return list(bars.values())  # in time order: dicts keep insertion order


def _bar_key(bar: list[tuple], transposed: bool) -> tuple:
  """What two bars must share to be equal (module docstring)."""
  if not transposed:
    return tuple(bar)
  base = next((pitches[0] for _, pitches, _ in bar if pitches), 0)
  return tuple(
    (offset, tuple(p - base for p in pitches), duration)
    for offset, pitches, duration in bar
  )


def _share_seen(keys: Sequence[Any]) -> float:
  """The share of keys, after the first, equal to an earlier one."""
  if len(keys) < 2:
    return math.nan
  return (len(keys) - len(set(keys))) / (len(keys) - 1)


def repetition(
  events: Melody,
  positions: Positions | None = None,
  time_signature: tuple[int, int] = DEFAULT_SIGNATURE,
) -> dict[str, float]:
  """The within-song repetition of one melody (module docstring).

  Args:
    events: the melody.
    positions: each event's onset within its bar, in quarter notes
      [num_events]; None: `bar_positions(events, time_signature)`.
    time_signature: the bars of a melody without `positions`.

  Returns:
    {"bar_repeats", "bar_repeats_transposed", "pattern_repeats"}: shares in
    [0, 1], NaN where undefined.
  """
  bars = _bars(events, positions, time_signature)
  # The bars in turn hold the events in order. Patterns ignore where the
  # bar lines fall: one id per (pitches, duration).
  ids: dict[tuple, int] = {}
  notes = [
    ids.setdefault((pitches, duration), len(ids))
    for bar in bars
    for _, pitches, duration in bar
  ]
  patterns = [
    tuple(notes[i : i + PATTERN_EVENTS])
    for i in range(len(notes) - PATTERN_EVENTS + 1)
  ]
  return {
    "bar_repeats": _share_seen([_bar_key(b, False) for b in bars]),
    "bar_repeats_transposed": _share_seen([_bar_key(b, True) for b in bars]),
    "pattern_repeats": _share_seen(patterns),
  }


def compute_statistics(
  melodies: Sequence[Melody],
  positions: Sequence[Positions | None] | None = None,
  time_signature: tuple[int, int] = DEFAULT_SIGNATURE,
) -> dict[str, Any]:
  """The features of a set of melodies.

  Args:
    melodies: songs, each a sequence of `Event`.
    positions: per song, each event's onset within its bar in quarter notes
      (`corpus_bar_positions`), or None for a song in `time_signature` from
      a downbeat; None: every song so.
    time_signature: the bars of songs without positions.

  Returns:
    {"pitch_class": float64 [12] note counts, "interval": float64 [25] step
    counts (bin i is i - 12 semitones), "duration": {duration token: count}
    sorted by length, "pitch_range", "notes_per_song", "in_key",
    "repeated", "bar_repeats", "bar_repeats_transposed", "pattern_repeats":
    float64 [num_songs] per-song values (NaN where undefined),
    "in_key_share" and "repeated_share": the pooled shares over all notes /
    note pairs, "num_songs"}.
  """
  if positions is None:
    positions = [None] * len(melodies)
  if len(positions) != len(melodies):
    raise ValueError(
      f"{len(positions)} position lists for {len(melodies)} melodies"
    )
  pitch_class = np.zeros(12)
  interval = np.zeros(2 * INTERVAL_CLIP + 1)
  durations: dict[str, int] = {}
  per_song = {name: [] for name in PER_SONG}
  totals = {"in_key": 0, "pitches": 0, "repeats": 0, "pairs": 0}
  for events, song_positions in zip(melodies, positions, strict=True):
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
    for name, value in repetition(
      events, song_positions, time_signature
    ).items():
      per_song[name].append(value)
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
    name: the feature (one of PER_SONG); integer features get
      integer-width bins, shares `SHARE_BINS` bins of [0, 1].
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


def repetition_means(statistics: Mapping[str, Any]) -> dict[str, float]:
  """{repetition feature: mean over the songs where it is defined (NaN if
  none)} of a `compute_statistics` result."""
  means = {}
  for name in REPETITION:
    values = np.asarray(statistics[name], np.float64)
    values = values[~np.isnan(values)]
    means[name] = float(values.mean()) if values.size else math.nan
  return means


def compare_repetition(
  generated_stats: Mapping[str, Any],
  corpus_stats: Mapping[str, Any],
  tolerance: float = REPETITION_TOLERANCE,
) -> dict[str, dict[str, Any]]:
  """The repetition of generated melodies beside the corpus's.

  Args:
    generated_stats: `compute_statistics` of the generated melodies.
    corpus_stats: `compute_statistics` of the corpus songs (the test
      songs, for the report).
    tolerance: the relative gap that passes.

  Returns:
    {feature: {"generated", "corpus": mean shares, "ratio": generated /
    corpus (NaN when the corpus's is 0 or either is NaN), "within":
    whether |generated - corpus| <= tolerance * corpus}} for each of
    REPETITION.
  """
  generated = repetition_means(generated_stats)
  corpus = repetition_means(corpus_stats)
  result = {}
  for name in REPETITION:
    g, c = generated[name], corpus[name]
    result[name] = {
      "generated": g,
      "corpus": c,
      "ratio": g / c if c else math.nan,
      "within": bool(abs(g - c) <= tolerance * c),  # False for a NaN
    }
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


def _kept_songs(
  dataset: dataset_lib.Dataset,
  split: str,
  originals_only: bool,
  skip_unk: bool,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
  """(index, pitch ids, duration ids) of a split's songs, originals only
  and without those holding an unk token if asked."""
  data = dataset.splits[split]
  for i in data.originals() if originals_only else range(len(data)):
    pitch, duration = data.song(i)
    if skip_unk and (
      np.any(pitch == tokens.UNK_ID) or np.any(duration == tokens.UNK_ID)
    ):
      continue
    yield int(i), pitch, duration


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
  songs = [
    tokens.tokens_to_events(
      dataset.pitch_vocab.decode(pitch),
      dataset.duration_vocab.decode(duration),
    )
    for _, pitch, duration in _kept_songs(dataset, split, originals_only, True)
  ]
  considered = len(data.originals()) if originals_only else len(data)
  return songs, considered - len(songs)


def corpus_bar_positions(
  dataset: dataset_lib.Dataset,
  split: str = "train",
  originals_only: bool = True,
  skip_unk: bool = True,
) -> list[list[fractions.Fraction] | None]:
  """Each song's event onsets within their bars, from the dataset.

  Args:
    dataset: the dataset (its `bar_position`, in grid steps).
    split: 'train', 'valid' or 'test'.
    originals_only: leave out transposed (augmented) copies.
    skip_unk: leave out songs with an unk token, as `corpus_melodies` does
      (False: every song, as the token export `cross.corpus_songs` has).

  Returns:
    Per song, in the order of `corpus_melodies`, the onsets in quarter
    notes [num_events], or None where any is unknown (or the dataset has
    none): `compute_statistics` then counts 4/4 bars from the first event.
  """
  data = dataset.splits[split]
  grid = dataset.config.grid
  out = []
  for i, _, _ in _kept_songs(dataset, split, originals_only, skip_unk):
    if data.bar_position is None:
      out.append(None)
      continue
    steps = data.bar_position[data.offsets[i] : data.offsets[i + 1]]
    known = bool(np.all(steps >= 0))
    out.append(
      [fractions.Fraction(int(s), grid) for s in steps] if known else None
    )
  return out


def corpus_statistics(
  dataset: dataset_lib.Dataset, split: str = "test"
) -> dict[str, Any]:
  """`compute_statistics` of a split's original songs (those with an unk
  token left out), bars from the dataset's bar positions: the corpus side
  of `compare` and `compare_repetition`."""
  songs, _ = corpus_melodies(dataset, split)
  return compute_statistics(songs, corpus_bar_positions(dataset, split))
