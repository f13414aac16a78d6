"""Folder of MIDI files to a cached, split dataset."""

import json
import os
from fractions import Fraction as F

import numpy as np
import pytest

from configs import default
from melodyjax import errors
from melodyjax.data import build
from melodyjax.data import config as data_config_lib
from melodyjax.data import dataset as dataset_lib
from melodyjax.music import midi_io, tokens
from melodyjax.music.events import Event, Song
from tests.helpers import run_python, tune


@pytest.fixture
def midi_dir(tmp_path):
  root = tmp_path / "midi"
  (root / "a" / "b").mkdir(parents=True)
  for i in range(40):
    folder = root / "a" if i % 2 else root / "a" / "b"
    midi_io.write_midi(tune(i), folder / f"tune{i:02d}.mid")
  (root / "not_midi.mid").write_bytes(b"this is not a MIDI file")
  good = midi_io.song_to_bytes(tune(0))
  (root / "truncated.mid").write_bytes(good[:-9])
  midi_io.write_midi(tune(1, length=2), root / "short.mid")
  chord = [Event((60, 64), F(1))] * 6
  midi_io.write_midi(chord, root / "chords.mid")
  (root / "readme.txt").write_text("not a MIDI file name")
  return root


def test_build_report_drops_and_splits(midi_dir, tmp_path):
  config = data_config_lib.CorpusConfig(
    polyphony="reject", valid_fraction=0.2, test_fraction=0.2
  )
  dataset = build.build_dataset(
    midi_dir, tmp_path / "out", config, workers=2, progress=False
  )
  report = dataset.report
  assert report["files"] == 44
  assert report["songs"] == 40
  assert report["dropped_by_reason"] == {
    "not_midi": 1,
    "polyphonic": 1,
    "too_short": 1,
    "truncated": 1,
  }
  dropped = {d["source"]: d["reason"] for d in report["dropped_files"]}
  assert dropped["chords.mid"] == "polyphonic"
  sizes = {split: len(dataset.splits[split]) for split in dataset_lib.SPLITS}
  assert sum(sizes.values()) == 40 and min(sizes.values()) > 0
  # Every song's tokens decode back to its events.
  train = dataset.train
  sources = set(train.sources)
  for i in range(len(train)):
    pitch, duration = train.song(i)
    events = tokens.tokens_to_events(
      dataset.pitch_vocab.decode(pitch), dataset.duration_vocab.decode(duration)
    )
    assert events == midi_io.read_midi(midi_dir / train.sources[i]).events
  assert not sources & set(dataset.valid.sources)
  assert report["splits"]["train"]["rests"] == len(train)
  longest = max(len(train.song(i)[0]) for i in range(len(train)))
  assert report["splits"]["train"]["longest_song_events"] == longest


def test_split_is_a_deterministic_hash_of_the_path():
  config = data_config_lib.CorpusConfig(valid_fraction=0.1, test_fraction=0.1)
  paths = [f"dir/song{i}.mid" for i in range(2000)]
  splits = [dataset_lib.assign_split(p, config) for p in paths]
  assert splits == [dataset_lib.assign_split(p, config) for p in paths]
  shares = {s: splits.count(s) / len(paths) for s in dataset_lib.SPLITS}
  assert shares["valid"] == pytest.approx(0.1, abs=0.025)
  assert shares["test"] == pytest.approx(0.1, abs=0.025)
  # Growing the validation share only moves songs out of train.
  bigger = data_config_lib.CorpusConfig(valid_fraction=0.2, test_fraction=0.1)
  for path, split in zip(paths, splits, strict=True):
    if split != "train":
      assert dataset_lib.assign_split(path, bigger) == split


def test_cache_reloads_and_rebuilds_on_change(midi_dir, tmp_path):
  out = tmp_path / "out"
  first = build.build_dataset(midi_dir, out, workers=1, progress=False)
  built_at = os.path.getmtime(out / "manifest.json")
  again = build.build_dataset(midi_dir, out, workers=1, progress=False)
  assert os.path.getmtime(out / "manifest.json") == built_at
  np.testing.assert_array_equal(first.train.pitch, again.train.pitch)
  # A changed data config rebuilds.
  coarse = build.build_dataset(
    midi_dir,
    out,
    data_config_lib.CorpusConfig(grid=4),
    workers=1,
    progress=False,
  )
  assert coarse.config.grid == 4
  # A changed folder rebuilds.
  midi_io.write_midi(tune(99), midi_dir / "new.mid")
  grown = build.build_dataset(
    midi_dir,
    out,
    data_config_lib.CorpusConfig(grid=4),
    workers=1,
    progress=False,
  )
  assert grown.report["files"] == coarse.report["files"] + 1


def test_key_normalisation_and_augmentation(tmp_path):
  root = tmp_path / "midi"
  root.mkdir()
  # The same tune in G major (signature G) and D minor (signature D).
  g_major = [Event((p,), F(1)) for p in (67, 71, 74, 72, 71, 69, 67)]
  d_minor = [
    Event((p,), F(1)) for p in (62, 65, 69, 67, 65, 64, 62, 61, 62, 65, 62)
  ]
  midi_io.write_midi(Song(g_major, key_signature="G"), root / "g.mid")
  midi_io.write_midi(Song(d_minor, key_signature="D"), root / "d.mid")
  config = data_config_lib.CorpusConfig(
    valid_fraction=0, test_fraction=0, transpositions=(-1, 0, 2)
  )
  dataset = build.build_dataset(
    root, tmp_path / "out", config, workers=1, progress=False
  )
  assert dataset.report["keys"] == {"Dm": 1, "G": 1}
  train = dataset.train
  assert len(train) == 6  # two songs, each with two transposed copies
  songs = {
    (s, int(t)): dataset.pitch_vocab.decode(train.song(i)[0])
    for i, (s, t) in enumerate(
      zip(train.sources, train.transpositions, strict=True)
    )
  }
  assert songs[("g.mid", 0)][:3] == ["C5", "E5", "G5"]  # G4 up to C5
  assert songs[("d.mid", 0)][:3] == ["A3", "C4", "E4"]  # D4 minor down to A3
  assert songs[("g.mid", 2)][:3] == ["D5", "F#5", "A5"]


def test_export_jsonl_and_duplicates(midi_dir, tmp_path):
  # The same tune under 30 names: split by the path's hash, some copies
  # land in different splits; split by groups (the default), none.
  for i in range(30):
    midi_io.write_midi(tune(3), midi_dir / f"copy{i}.mid")
  by_path = build.build_dataset(
    midi_dir,
    tmp_path / "by_path",
    data_config_lib.CorpusConfig(group_splits=False),
    workers=2,
    progress=False,
  )
  assert by_path.report["duplicates_across_splits"]
  dataset = build.build_dataset(
    midi_dir, tmp_path / "out", workers=2, progress=False
  )
  assert dataset.report["duplicate_groups"]
  assert not dataset.report["duplicates_across_splits"]
  export = tmp_path / "songs.jsonl"
  build.export_jsonl(dataset, export)
  lines = list(dataset_lib.iter_export(export))
  assert len(lines) == dataset.report["songs"]
  first = next(line for line in lines if line["source"] == "copy0.mid")
  assert set(first) == {"source", "split", "pitch", "duration"}
  assert tokens.tokens_to_events(first["pitch"], first["duration"]) == (
    tune(3).events
  )


def test_config_defaults_match_configs_default():
  data = default.get_config().data
  assert (
    data_config_lib.CorpusConfig.from_config(data)
    == data_config_lib.CorpusConfig()
  )


def test_bad_options_name_the_field():
  with pytest.raises(errors.CorpusError, match="polyphony"):
    data_config_lib.CorpusConfig(polyphony="mono")
  with pytest.raises(errors.CorpusError, match="valid_fraction"):
    data_config_lib.CorpusConfig(valid_fraction=0.6, test_fraction=0.5)


def run_cli(*args):
  return run_python("-m", "melodyjax.cli.corpus", *args, timeout=120)


def test_cli_builds_reports_and_exports(midi_dir, tmp_path):
  export = tmp_path / "export.jsonl"
  result = run_cli(
    "--midi_dir",
    str(midi_dir),
    "--out",
    str(tmp_path / "o"),
    "--export_jsonl",
    str(export),
    "--check_roundtrip",
    "--no_progress",
    "--workers",
    "2",
  )
  assert result.returncode == 0, result.stderr
  assert "songs: 41" in result.stdout
  assert "round trip events->MIDI->events: 41/41 identical" in result.stdout
  assert export.exists()
  report = json.loads((tmp_path / "o" / "report.json").read_text())
  assert report["roundtrip"]["identical"] == 41


@pytest.mark.parametrize(
  "args, message",
  [
    (["--midi_dir", "/no/such/dir", "--out", "/tmp/x"], "/no/such/dir"),
    (
      ["--midi_dir", ".", "--out", "/tmp/x", "--polyphony", "mono"],
      "--polyphony",
    ),
    (
      ["--midi_dir", ".", "--out", "/tmp/x", "--valid_fraction", "0.99"],
      "valid_fraction",
    ),
  ],
)
def test_cli_user_errors_are_one_line(args, message, tmp_path):
  if args[1] == ".":
    args[1] = str(tmp_path)
    midi_io.write_midi(tune(0), tmp_path / "t.mid")
  result = run_cli(*args)
  assert result.returncode != 0
  assert message in result.stderr
  assert len(result.stderr.strip().splitlines()) == 1, result.stderr
  assert "Traceback" not in result.stderr
