"""Leak-free splits: settings of one tune and near-duplicates share one."""

import json
from fractions import Fraction as F

import numpy as np
import pytest

from melodyjax import errors
from melodyjax.data import build, groups, windows
from melodyjax.data import config as data_config_lib
from melodyjax.data import dataset as dataset_lib
from melodyjax.music import midi_io
from melodyjax.music.events import Event, Song

CONFIG = data_config_lib.CorpusConfig(valid_fraction=0.3, test_fraction=0.3)


def random_tune(seed, length=40):
  """A tune of `length` notes and a rest that differs per seed."""
  rng = np.random.default_rng(seed)
  events = [
    Event((int(p),), F(int(d), 2))
    for p, d in zip(
      rng.integers(55, 80, length), rng.integers(1, 4, length), strict=True
    )
  ]
  events.insert(7, Event((), F(1, 2)))
  return events


def transposed(events, semitones):
  return [
    Event(tuple(p + semitones for p in e.pitches), e.quarters) for e in events
  ]


def one_note_changed(events, index=20):
  changed = list(events)
  pitch = changed[index].pitches[0]
  changed[index] = Event((pitch + 3,), changed[index].quarters)
  return changed


def name_in_other_split(stem, than):
  """A file name whose path hash puts it in another split than `than`'s."""
  split = dataset_lib.assign_split(than, CONFIG)
  for i in range(100):
    name = f"{stem}{i}.mid"
    if dataset_lib.assign_split(name, CONFIG) != split:
      return name
  raise AssertionError("no such name")


def test_fingerprints_see_through_transposition_and_one_note():
  tune = random_tune(0)
  same = groups.fingerprint(tune)
  up = groups.fingerprint(transposed(tune, 5))
  assert up["digest"] == same["digest"]
  np.testing.assert_array_equal(up["signature"], same["signature"])
  near = groups.fingerprint(one_note_changed(tune))
  assert near["digest"] != same["digest"]
  # 41 events, 38 shingles of 4, 5 of them changed: 33 / 43.
  similarity = groups.jaccard(near["shingles"], same["shingles"])
  assert similarity == pytest.approx(33 / 43)
  other = groups.fingerprint(random_tune(1))
  assert groups.jaccard(other["shingles"], same["shingles"]) < 0.05


@pytest.fixture
def corpus(tmp_path):
  """20 distinct tunes, plus a transposed copy of tune00, a renamed copy of
  tune01 in another folder and a near-copy of tune02 (one note), each
  named so that its path's hash alone would split it from its original,
  and so that it sorts after it (the original is its group's first)."""
  root = tmp_path / "midi"
  (root / "x_other").mkdir(parents=True)
  for i in range(20):
    midi_io.write_midi(random_tune(i), root / f"tune{i:02d}.mid")
  copies = {
    name_in_other_split("x_up", "tune00.mid"): transposed(random_tune(0), 7),
    name_in_other_split("x_other/renamed", "tune01.mid"): random_tune(1),
    name_in_other_split("x_near", "tune02.mid"): one_note_changed(
      random_tune(2)
    ),
  }
  for name, events in copies.items():
    midi_io.write_midi(events, root / name)
  return root, sorted(copies)


def splits_of(dataset):
  return {
    str(source): split
    for split in dataset_lib.SPLITS
    for source in dataset.splits[split].sources
  }


def test_copies_share_their_originals_split(corpus, tmp_path):
  root, copies = corpus
  dataset = build.build_dataset(
    root, tmp_path / "out", CONFIG, workers=1, progress=False
  )
  split = splits_of(dataset)
  near, renamed, up = copies  # sorted: x_near*, x_other/*, x_up*
  assert split[up] == split["tune00.mid"]
  assert split[renamed] == split["tune01.mid"]
  assert split[near] == split["tune02.mid"]
  grouping = dataset.report["split_groups"]
  assert grouping["groups"] == 20
  assert grouping["groups_of_several"] == 3
  assert grouping["songs_in_groups_of_several"] == 6
  assert grouping["links"]["identical"] == 2
  assert grouping["links"]["near"] == 1
  # Each group takes its first member's split: the originals keep theirs,
  # every copy moved.
  assert grouping["moved_from_path_hash"] == 3
  for source, s in split.items():
    if source.startswith("tune"):
      assert s == dataset_lib.assign_split(source, CONFIG)
  # By the path's hash alone, each copy is in another split.
  by_path = build.build_dataset(
    root,
    tmp_path / "by_path",
    data_config_lib.CorpusConfig(
      valid_fraction=0.3, test_fraction=0.3, group_splits=False
    ),
    workers=1,
    progress=False,
  )
  assert "split_groups" not in by_path.report
  assert sum(splits_of(by_path)[c] != split[c] for c in copies) == 3


def test_adding_songs_moves_no_other_group(corpus, tmp_path):
  root, _ = corpus
  before = splits_of(
    build.build_dataset(root, tmp_path / "a", CONFIG, workers=1, progress=False)
  )
  for i in range(20, 30):
    midi_io.write_midi(random_tune(i), root / f"new{i}.mid")
  after = splits_of(
    build.build_dataset(root, tmp_path / "b", CONFIG, workers=1, progress=False)
  )
  assert {k: after[k] for k in before} == before


def test_settings_of_one_session_tune_share_a_split(tmp_path):
  root = tmp_path / "session"
  root.mkdir()
  # Two different settings (other notes) of tune 7, named to split apart.
  first = "setting0.mid"
  second = name_in_other_split("setting", first)
  midi_io.write_midi(Song(random_tune(0)), root / first)
  midi_io.write_midi(Song(random_tune(1)), root / second)
  for i in range(2, 8):
    midi_io.write_midi(random_tune(i), root / f"tune{i}.mid")
  tunes = {first: {"tune_id": 7}, second: {"tune_id": 7}}
  (root / "tunes.json").write_text(json.dumps(tunes))
  dataset = build.build_dataset(
    root, tmp_path / "out", CONFIG, workers=1, progress=False
  )
  split = splits_of(dataset)
  assert split[first] == split[second]
  assert split[first] == dataset_lib.assign_split("session:7", CONFIG)
  assert dataset.report["split_groups"]["links"]["tune_id"] == 1


def test_held_out_songs_get_no_transposed_copies(corpus, tmp_path):
  root, _ = corpus
  config = data_config_lib.CorpusConfig(
    valid_fraction=0.3, test_fraction=0.3, transpositions=(-1, 1)
  )
  dataset = build.build_dataset(
    root, tmp_path / "out", config, workers=1, progress=False
  )
  for split in ("valid", "test"):
    assert not np.any(dataset.splits[split].transpositions)
  train = dataset.train
  assert len(train) == 3 * len(train.originals())


def test_an_empty_split_has_no_windows():
  empty = dataset_lib.Split(
    pitch=np.zeros(0, np.int32),
    duration=np.zeros(0, np.int32),
    offsets=np.zeros(1, np.int64),
    sources=np.zeros(0, str),
    transpositions=np.zeros(0, np.int32),
    bar_position=np.zeros(0, np.int32),
    time_signature=np.zeros(0, np.int32),
    end_position=np.zeros(0, np.int32),
    end_time_signature=np.zeros(0, np.int32),
    mode=np.zeros(0, np.int32),
    style=np.zeros(0, np.int32),
  )
  assert len(windows.make_windows(empty, 8)) == 0


def test_exclude_test_of_drops_matches_of_the_reference_test(corpus, tmp_path):
  root, _ = corpus
  reference = build.build_dataset(
    root, tmp_path / "reference", CONFIG, workers=1, progress=False
  )
  test = [str(s) for s in reference.test.sources]
  valid = [str(s) for s in reference.valid.sources]
  assert test and valid
  # Another collection: a transposed copy and a near-copy of each reference
  # song, and 10 tunes of its own.
  other = tmp_path / "other"
  other.mkdir()
  originals = {f"tune{i:02d}.mid": random_tune(i) for i in range(20)}
  for name, events in originals.items():
    midi_io.write_midi(transposed(events, -2), other / f"up_{name}")
    midi_io.write_midi(one_note_changed(events, 30), other / f"near_{name}")
    # A setting with four notes changed: Jaccard 18/58, below the
    # grouping's 0.5, above the exclusion's 0.25.
    variant = events
    for index in (5, 15, 25, 35):
      variant = one_note_changed(variant, index)
    midi_io.write_midi(variant, other / f"var_{name}")
  for i in range(100, 110):
    midi_io.write_midi(random_tune(i), other / f"own{i}.mid")
  held_out = [n for n in originals if n in test]
  config = data_config_lib.CorpusConfig(
    exclude_test_of=str(tmp_path / "reference")
  )
  dataset = build.build_dataset(
    other, tmp_path / "pretrain", config, workers=1, progress=False
  )
  excluded = dataset.report["excluded"]
  assert excluded["reference_songs"] == len(test)
  assert excluded["identical"] == len(held_out)
  assert excluded["near"] == 2 * len(held_out)
  assert dataset.report["dropped_by_reason"] == {
    "matches_excluded": 3 * len(held_out)
  }
  kept = set(splits_of(dataset))
  for name in held_out:
    assert not {f"up_{name}", f"near_{name}", f"var_{name}"} & kept
  assert len(kept) == 70 - 3 * len(held_out)
  # Its validation songs too, when asked.
  config = data_config_lib.CorpusConfig(
    exclude_test_of=str(tmp_path / "reference"), exclude_valid=True
  )
  both = build.build_dataset(
    other, tmp_path / "pretrain", config, workers=1, progress=False
  )
  held_out += [n for n in originals if n in valid]
  assert both.report["excluded"]["excluded"] == 3 * len(held_out)


def test_exclude_test_of_a_folder_without_a_dataset(tmp_path):
  root = tmp_path / "midi"
  root.mkdir()
  midi_io.write_midi(random_tune(0), root / "a.mid")
  config = data_config_lib.CorpusConfig(exclude_test_of=str(tmp_path))
  with pytest.raises(errors.CorpusError, match="exclude_test_of.*no complete"):
    build.build_dataset(root, tmp_path / "out", config, progress=False)


def test_each_process_gathers_only_its_shard_of_each_batch(corpus, tmp_path):
  root, _ = corpus
  dataset = build.build_dataset(
    root, tmp_path / "out", CONFIG, workers=1, progress=False
  )
  train = windows.make_windows(dataset.train, 8)
  whole = windows.BatchIterator(train, 8, seed=1, step=3)
  shards = [
    windows.BatchIterator(
      train, 8, seed=1, step=3, process_index=p, process_count=4
    )
    for p in range(4)
  ]
  for _ in range(5):
    batch = next(whole)
    parts = [next(shard) for shard in shards]
    assert all(len(part.rows) == 2 for part in parts)
    np.testing.assert_array_equal(
      np.concatenate([part.rows for part in parts]), batch.rows
    )
    np.testing.assert_array_equal(
      np.concatenate([part.pitch for part in parts]), batch.pitch
    )
    assert len({int(r) for part in parts for r in part.rows}) == 8
