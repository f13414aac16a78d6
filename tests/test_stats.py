"""Sample statistics and the copying check, on hand-made melodies."""

import math
import os
import time
from fractions import Fraction as F

import numpy as np
import pytest

from melodyjax import files
from melodyjax.data import dataset as dataset_lib
from melodyjax.listening import hook, stats
from melodyjax.music import midi_io, tokens, tonality
from melodyjax.music.events import Event, Song
from tests.helpers import small_dataset


def melody(*notes):
  """Events from (pitches, quarters): an int, a tuple (chord) or None."""
  events = []
  for pitches, quarters in notes:
    if pitches is None:
      pitches = ()
    elif isinstance(pitches, int):
      pitches = (pitches,)
    events.append(Event(tuple(pitches), F(quarters)))
  return events


C_MAJOR = [60, 62, 64, 65, 67, 69, 71, 72]
SCALE = melody(*[(p, 1) for p in C_MAJOR])


def test_c_major_scale():
  s = stats.compute_statistics([SCALE])
  # C twice (C4, C5), every other white key once, no black keys.
  want_pc = np.zeros(12)
  want_pc[[0, 2, 4, 5, 7, 9, 11]] = 1
  want_pc[0] = 2
  np.testing.assert_array_equal(s["pitch_class"], want_pc)
  # Steps +2 +2 +1 +2 +2 +2 +1: five whole tones, two semitones.
  want_interval = np.zeros(25)
  want_interval[12 + 2] = 5
  want_interval[12 + 1] = 2
  np.testing.assert_array_equal(s["interval"], want_interval)
  assert s["duration"] == {"1.0": 8}
  np.testing.assert_array_equal(s["pitch_range"], [12])
  np.testing.assert_array_equal(s["notes_per_song"], [8])
  np.testing.assert_array_equal(s["in_key"], [1.0])
  np.testing.assert_array_equal(s["repeated"], [0.0])
  assert s["in_key_share"] == 1.0 and s["repeated_share"] == 0.0
  assert s["num_songs"] == 1


def test_repeated_note_rest_and_out_of_key():
  # C4 D4 D4 (rest) D4 F#4: estimated as D major, which lacks C.
  song = melody((60, 1), (62, 1), (62, 0.5), (None, 0.5), (62, 1), (66, 1))
  s = stats.compute_statistics([song])
  # Note pairs: C-D +2, D-D 0, D-D 0 (across the rest), D-F# +4.
  want = np.zeros(25)
  want[12 + 2] += 1
  want[12 + 0] += 2
  want[12 + 4] += 1
  np.testing.assert_array_equal(s["interval"], want)
  np.testing.assert_array_equal(s["repeated"], [2 / 4])
  np.testing.assert_array_equal(s["notes_per_song"], [5])  # the rest is out
  np.testing.assert_array_equal(s["pitch_range"], [6])
  assert s["duration"] == {"0.5": 2, "1.0": 4}
  assert tonality.estimate_key(song) == (2, tonality.MAJOR)
  np.testing.assert_array_equal(s["in_key"], [4 / 5])
  # The C major scale plus an F#4: C major, 8 of 9 notes in key.
  s = stats.compute_statistics([SCALE + melody((66, 0.5))])
  np.testing.assert_array_equal(s["in_key"], [8 / 9])
  assert s["in_key_share"] == 8 / 9


def test_chord_and_scales():
  # C major chord, then G4, then a C major chord an octave up.
  song = melody(((60, 64, 67), 1), (67, 1), ((72, 76, 79), 2))
  s = stats.compute_statistics([song])
  want_pc = np.zeros(12)
  want_pc[[0, 4, 7]] = [2, 2, 3]  # every chord note counts
  np.testing.assert_array_equal(s["pitch_class"], want_pc)
  # Top notes: G4 -> G4 (0), G4 -> G5 (+12).
  want = np.zeros(25)
  want[12] = 1
  want[24] = 1
  np.testing.assert_array_equal(s["interval"], want)
  np.testing.assert_array_equal(s["pitch_range"], [79 - 60])
  np.testing.assert_array_equal(s["notes_per_song"], [3])
  # The G4 repeats the chord's top note but not its pitches.
  np.testing.assert_array_equal(s["repeated"], [0.0])
  np.testing.assert_array_equal(s["in_key"], [1.0])
  assert stats.scale_pitch_classes(0, tonality.MAJOR) == {0, 2, 4, 5, 7, 9, 11}
  # A natural minor: A B C D E F G.
  assert stats.scale_pitch_classes(9, tonality.MINOR) == {9, 11, 0, 2, 4, 5, 7}


def test_interval_clip_and_pooled_shares():
  leap = melody((48, 1), (84, 1), (60, 1))  # +36 -> +12, -24 -> -12
  s = stats.compute_statistics([leap, SCALE])
  assert s["interval"][0] == 1 and s["interval"][24] == 1
  assert s["repeated_share"] == 0.0
  assert s["num_songs"] == 2
  # A song of rests only: no notes, so undefined per-song values.
  rests = stats.compute_statistics([melody((None, 1))])
  assert math.isnan(rests["pitch_range"][0]) and math.isnan(rests["in_key"][0])
  assert rests["notes_per_song"][0] == 0
  assert math.isnan(rests["in_key_share"])


def test_overlap_and_kl():
  p = np.array([1.0, 2.0, 3.0, 0.0])
  assert stats.overlap(p, 2 * p) == pytest.approx(1.0)
  assert stats.kl_divergence(p, 2 * p) == pytest.approx(0.0, abs=1e-15)
  assert stats.overlap([1, 1, 0, 0], [0, 0, 2, 5]) == 0.0
  # Overlap of [.5 .5 0] and [0 .5 .5] is .5.
  assert stats.overlap([1, 1, 0], [0, 3, 3]) == pytest.approx(0.5)
  # KL of [.5 .5] from [.25 .75], nearly unsmoothed.
  want = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
  assert stats.kl_divergence([1, 1], [1, 3]) == pytest.approx(want, rel=1e-5)
  assert stats.kl_divergence([1, 0], [0, 1]) > 10  # finite but large
  assert math.isnan(stats.overlap([0, 0], [1, 1]))


def test_compare_identical_and_disjoint_sets():
  songs = [SCALE, melody((62, 0.5), (62, 0.5), (None, 1), (65, 2))]
  same = stats.compare(
    stats.compute_statistics(songs), stats.compute_statistics(list(songs))
  )
  assert set(same) == set(stats.HISTOGRAMS + stats.PER_SONG)
  for name, values in same.items():
    assert values["overlap"] == pytest.approx(1.0), name
    assert values["kl"] == pytest.approx(0.0, abs=1e-12), name
  # Black keys, other durations, big range against white keys.
  other = [melody((61, 3), (73, 3), (66, 3), (85, 3), (54, 3))]
  apart = stats.compare(
    stats.compute_statistics(other), stats.compute_statistics([SCALE])
  )
  for name in ("pitch_class", "interval", "duration", "pitch_range"):
    assert apart[name]["overlap"] == 0.0, name
    assert apart[name]["kl"] > 5, name


def test_shared_histograms():
  a, b, edges = stats.shared_histograms(
    "pitch_range", np.array([3.0, 5.0, np.nan]), np.array([5.0, 7.0])
  )
  np.testing.assert_array_equal(edges, [3, 4, 5, 6, 7, 8])
  np.testing.assert_array_equal(a, [1, 0, 1, 0, 0])
  np.testing.assert_array_equal(b, [0, 0, 1, 0, 1])
  # Wide ranges get integer-width bins, at most MAX_BINS of them.
  a, b, edges = stats.shared_histograms(
    "notes_per_song", np.array([10.0]), np.array([409.0])
  )
  assert len(edges) - 1 <= stats.MAX_BINS
  assert np.all(np.diff(edges) == 10) and a.sum() == b.sum() == 1
  a, b, edges = stats.shared_histograms(
    "in_key", np.array([1.0, 0.5]), np.array([0.0])
  )
  assert len(edges) == stats.SHARE_BINS + 1
  assert a[-1] == 1 and b[0] == 1  # 1.0 falls in the last, closed bin


def brute_force_run(melody_events, training):
  best = 0
  for i in range(len(melody_events)):
    for j in range(i + 1, len(melody_events) + 1):
      run = melody_events[i:j]
      if any(
        song[k : k + len(run)] == run
        for song in training
        for k in range(len(song) - len(run) + 1)
      ):
        best = max(best, len(run))
  return best


def test_copying_check_by_hand():
  training = [
    melody((60, 1), (62, 1), (64, 0.5), (65, 0.5), (67, 2), (69, 1)),
    melody((72, 1), (71, 1), (69, 1)),
  ]
  # Copies 5 events of song 0 (C D E F G), then deviates (A4 with 0.5).
  copied = melody((60, 1), (62, 1), (64, 0.5), (65, 0.5), (67, 2), (69, 0.5))
  # The same pitches, D4 as an eighth: runs C (1 event) and E F G (3).
  retimed = melody((60, 1), (62, 0.5), (64, 0.5), (65, 0.5), (67, 2))
  # The end of song 0 then the start of song 1 (adjacent in the training
  # list): no run spans two training songs.
  joined = melody((67, 2), (69, 1), (72, 1), (71, 1))
  unseen = melody((30, 1), (31, 1))
  runs = stats.longest_copied_run(
    [copied, retimed, joined, unseen, []], training
  )
  assert runs == [5, 3, 2, 0, 0]


def test_copying_check_matches_brute_force():
  rng = np.random.default_rng(0)

  def random_song(length):
    return melody(
      *[
        (int(rng.choice([60, 62, 64])), float(rng.choice([0.5, 1])))
        for _ in range(length)
      ]
    )

  training = [random_song(int(rng.integers(0, 12))) for _ in range(15)]
  melodies = [random_song(int(rng.integers(0, 15))) for _ in range(20)]
  want = [brute_force_run(m, training) for m in melodies]
  assert stats.longest_copied_run(melodies, training) == want


def test_copying_check_is_fast():
  rng = np.random.default_rng(1)
  pitches = rng.integers(55, 80, size=(8000, 52))
  durations = rng.choice([F(1, 2), F(1), F(3, 2)], size=(8000, 52))
  training = [
    [Event((int(p),), d) for p, d in zip(ps, ds, strict=True)]
    for ps, ds in zip(pitches, durations, strict=True)
  ]
  melodies = [song[10:40] + song[:5] for song in training[:100]]
  start = time.perf_counter()
  runs = stats.longest_copied_run(melodies, training)
  assert time.perf_counter() - start < 5
  assert all(r >= 30 for r in runs)


# ------------------------------------------------------------- repetition

BAR = melody((60, 1), (64, 1), (None, 0.5), (67, 0.5), (64, 1))  # 4/4


def transposed(events, semitones):
  return [
    Event(tuple(p + semitones for p in e.pitches), e.quarters) for e in events
  ]


def test_four_identical_bars_repeat():
  got = stats.repetition(BAR * 4)
  assert got["bar_repeats"] == 1.0
  assert got["bar_repeats_transposed"] == 1.0
  # 20 events, 17 patterns; from the 6th on each is the one 5 before.
  assert got["pattern_repeats"] == pytest.approx(12 / 16)


def test_a_bar_transposed_up_a_tone():
  got = stats.repetition(BAR + transposed(BAR, 2))
  assert got["bar_repeats"] == 0.0
  assert got["bar_repeats_transposed"] == 1.0
  assert got["pattern_repeats"] == 0.0
  # A chord moves as a whole, and a rest where the first bar has a note is
  # no transposition of it.
  chord = melody(((60, 64), 2), (None, 1), (62, 1))
  filled = melody(((60, 64), 2), (62, 1), (62, 1))
  got = stats.repetition(chord + transposed(chord, 5) + filled)
  assert got["bar_repeats"] == 0.0
  assert got["bar_repeats_transposed"] == 0.5
  # Durations and onsets within the bar count, not only the pitches.
  retimed = melody((60, 1.5), (64, 0.5), (None, 0.5), (67, 0.5), (64, 1))
  got = stats.repetition(BAR + retimed)
  assert got["bar_repeats"] == got["bar_repeats_transposed"] == 0.0


def test_pattern_repeats_on_a_known_sequence():
  a, b, c, d, e = ((p, 1) for p in (60, 62, 64, 65, 67))
  # Patterns ABCD BCDA CDAB DABC ABCD BCDE: one of five after the first.
  got = stats.repetition(melody(a, b, c, d, a, b, c, d, e))
  assert got["pattern_repeats"] == pytest.approx(1 / 5)
  # A rest is an event, and a pattern's durations must match too.
  got = stats.repetition(melody(a, b, c, (None, 1), a, b, c, (None, 1)))
  assert got["pattern_repeats"] == pytest.approx(1 / 4)
  got = stats.repetition(melody(a, b, c, d, a, b, c, (65, 2)))
  assert got["pattern_repeats"] == 0.0


def test_repetition_undefined_for_short_melodies():
  one_bar = stats.repetition(BAR)  # one bar, five events
  assert math.isnan(one_bar["bar_repeats"])
  assert math.isnan(one_bar["bar_repeats_transposed"])
  assert one_bar["pattern_repeats"] == 0.0
  four = stats.repetition(melody((60, 4), (60, 4), (60, 4), (60, 4)))
  assert four["bar_repeats"] == 1.0 and math.isnan(four["pattern_repeats"])
  empty = stats.repetition([])
  assert all(math.isnan(v) for v in empty.values())
  s = stats.compute_statistics([BAR, BAR * 2, []])
  np.testing.assert_array_equal(s["bar_repeats"], [np.nan, 1.0, np.nan])
  assert stats.repetition_means(s)["bar_repeats"] == 1.0


def test_bars_follow_the_time_signature_and_positions():
  waltz = melody((60, 2), (64, 1)) * 4  # four bars of 3/4
  assert stats.repetition(waltz, time_signature=(3, 4))["bar_repeats"] == 1
  assert stats.repetition(waltz)["bar_repeats"] < 1  # read as 4/4
  assert stats.bar_positions(waltz, (3, 4))[:3] == [0, 2, 0]
  # A quarter-note pickup, then the same bar twice: bars from the start
  # repeat nothing; the pickup's positions line the bars up.
  pickup = melody((55, 1)) + BAR * 2
  assert stats.repetition(pickup)["bar_repeats"] == 0.0
  positions = [F(3)] + stats.bar_positions(BAR * 2)
  got = stats.repetition(pickup, positions)
  assert got["bar_repeats"] == pytest.approx(1 / 2)
  s = stats.compute_statistics([pickup, pickup], [positions, None])
  np.testing.assert_array_equal(s["bar_repeats"], [0.5, 0.0])
  # A note held over a bar line starts the next bar's events late, and a
  # bar with no onset (inside a long note) is no bar.
  held = melody((60, 3), (62, 2), (64, 3), (60, 8), (60, 3), (62, 2), (64, 3))
  bars = stats._bars(held, stats.bar_positions(held))
  onsets = [[onset for onset, _, _ in bar] for bar in bars]  # in quarters
  assert onsets == [[0, 3], [1], [0], [0, 3], [1]]
  assert stats.repetition(held)["bar_repeats"] == pytest.approx(2 / 4)


def test_triplets_and_bad_positions():
  triplets = melody(*[(60, F(1, 3))] * 3, (62, 1), (64, 2)) * 2
  got = stats.repetition(triplets)
  assert got["bar_repeats"] == 1.0
  assert stats.bar_positions(triplets)[:5] == [0, F(1, 3), F(2, 3), 1, 2]
  with pytest.raises(ValueError, match="2 positions for 5 events"):
    stats.repetition(BAR, [0, 1])


def test_compare_repetition():
  loop = stats.compute_statistics([BAR * 4, BAR * 2])
  fresh = stats.compute_statistics([BAR + transposed(BAR, 2)] * 2)
  same = stats.compare_repetition(loop, loop)
  for name in stats.REPETITION:
    assert same[name]["ratio"] == 1.0 and same[name]["within"]
  got = stats.compare_repetition(fresh, loop)
  assert got["bar_repeats"] == {
    "generated": 0.0,
    "corpus": 1.0,
    "ratio": 0.0,
    "within": False,
  }
  assert got["bar_repeats_transposed"]["within"]
  # Within 25% either way, nothing against a corpus of none.
  half = stats.compute_statistics([BAR * 2, BAR + transposed(BAR, 2)])
  near = stats.compute_statistics([BAR * 2] * 3 + [BAR + transposed(BAR, 2)])
  assert stats.compare_repetition(near, half)["bar_repeats"]["ratio"] == 1.5
  assert not stats.compare_repetition(near, half)["bar_repeats"]["within"]
  assert stats.compare_repetition(half, near)["bar_repeats"]["within"] is False
  assert stats.compare_repetition(near, near)["bar_repeats"]["within"]
  assert math.isnan(
    stats.compare_repetition(fresh, fresh)["bar_repeats"]["ratio"]
  )
  compared = stats.compare(loop, fresh)
  assert compared["bar_repeats"]["overlap"] == 0.0
  assert compared["bar_repeats_transposed"]["overlap"] == 1.0


def test_sample_metrics_log_repetition():
  reference = stats.compute_statistics([BAR * 4])
  waltz = melody((60, 2), (64, 1)) * 4
  metrics = hook.sample_metrics([waltz], reference, (3, 4))
  assert metrics["sample/bar_repeats"] == 1.0
  assert metrics["sample/overlap_bar_repeats"] == 1.0
  assert hook.sample_metrics([waltz], reference)["sample/bar_repeats"] < 1


def test_corpus_bar_positions_from_the_dataset(tmp_path):
  """3/4 songs of bars A A B A A B ...: their dataset's bar positions give
  (n - 2) / (n - 1) exact bar repeats for n bars; 4/4 bars would not."""
  a = melody((60, 2), (62, 1))
  b = melody((64, 2), (65, 1))
  midi_dir = tmp_path / "midi"
  midi_dir.mkdir()
  for n in range(6, 16):
    events = [e for i in range(n) for e in (b if i % 3 == 2 else a)]
    song = Song(events, time_signature=(3, 4), key_signature="C")
    midi_io.write_midi(song, midi_dir / f"waltz{n}.mid")
  dataset = small_dataset(midi_dir, tmp_path / "data")
  seen = set()
  for split in dataset_lib.SPLITS:
    songs, skipped = stats.corpus_melodies(dataset, split)
    positions = stats.corpus_bar_positions(dataset, split)
    assert skipped == 0 and len(positions) == len(songs)
    got = stats.corpus_statistics(dataset, split)
    for song, song_positions, value in zip(
      songs, positions, got["bar_repeats"], strict=True
    ):
      n = len(song) // 2
      seen.add(n)
      assert song_positions == stats.bar_positions(song, (3, 4))
      assert value == pytest.approx((n - 2) / (n - 1))
      assert stats.repetition(song)["bar_repeats"] != pytest.approx(value)
  assert seen == set(range(6, 16))


ESAC = files.cache_dir("datasets", "esac")


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(ESAC), reason="no ESAC dataset cached")
def test_esac_test_split_against_train():
  dataset = dataset_lib.load_dataset(ESAC)
  train, skipped = stats.corpus_melodies(dataset, "train")
  test, _ = stats.corpus_melodies(dataset, "test")
  assert len(train) + skipped == int(np.sum(dataset.train.transpositions == 0))
  test_stats = stats.corpus_statistics(dataset, "test")
  train_stats = stats.corpus_statistics(dataset, "train")
  comparison = stats.compare(test_stats, train_stats)
  for values in comparison.values():
    assert values["overlap"] > 0.8
  # Held-out songs repeat themselves as much as the training songs do.
  for name, row in stats.compare_repetition(test_stats, train_stats).items():
    assert row["within"] and 0.05 < row["corpus"] < 0.5, name
  runs = stats.longest_copied_run(test, train)
  assert len(runs) == len(test) and min(runs) >= 1
  assert tokens.UNK_ID == 3
