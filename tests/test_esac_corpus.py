"""Real ESAC tunes through the whole corpus pipeline: ABC -> MIDI -> tokens.

The default tests convert a few dozen tunes with music21 and build datasets
from them; the slow test builds the full converted corpus in the cache
(`melodyjax-convert` or `make run` writes it).
"""

import collections
import json
import os
from fractions import Fraction

import pytest

from melodyjax.data import build, tokenize
from melodyjax.data import config as data_config_lib
from melodyjax.data.corpora import builtin, convert
from melodyjax.music import midi_io, tokens, tonality

pytest.importorskip("music21")


ESAC_TUNES = 8462
WHITE_KEYS = frozenset({0, 2, 4, 5, 7, 9, 11})  # C major / A minor


@pytest.fixture(scope="module")
def esac_midi(tmp_path_factory):
  """The first 20 tunes of the first two ESAC files as MIDI files."""
  out = tmp_path_factory.mktemp("esac_midi")
  summary = convert.convert_corpus(
    out, limit_files=2, limit_tunes=20, workers=1, progress=False
  )
  assert summary["failed"] == 0, summary["failures"]
  assert summary["written"] == summary["tunes"] == 40
  return out


@pytest.fixture(scope="module")
def dataset(esac_midi, tmp_path_factory):
  """The default data config (keys normalised, three splits)."""
  return build.build_dataset(
    esac_midi,
    tmp_path_factory.mktemp("dataset"),
    workers=1,
    check_roundtrip=True,
    progress=False,
  )


@pytest.fixture(scope="module")
def raw_dataset(esac_midi, tmp_path_factory):
  """Keys as written and every song in the training split (no unk token)."""
  config = data_config_lib.CorpusConfig(
    normalize_key=False, valid_fraction=0.0, test_fraction=0.0
  )
  return build.build_dataset(
    esac_midi,
    tmp_path_factory.mktemp("raw_dataset"),
    config,
    workers=1,
    check_roundtrip=True,
    progress=False,
  )


def _songs(dataset):
  """Yields (split, source, decoded events, had unk) for every song."""
  for name, split in dataset.splits.items():
    for i in range(len(split)):
      pitch_ids, duration_ids = split.song(i)
      pitch = dataset.pitch_vocab.decode(pitch_ids)
      duration = dataset.duration_vocab.decode(duration_ids)
      unk = tokens.UNK in pitch or tokens.UNK in duration
      events = None if unk else tokens.tokens_to_events(pitch, duration)
      yield name, str(split.sources[i]), events, unk


def _read(esac_midi, source):
  return midi_io.read_midi(os.path.join(esac_midi, source))


@pytest.mark.parametrize("which", ["dataset", "raw_dataset"])
def test_every_tune_kept_and_round_trips(esac_midi, which, request):
  report = request.getfixturevalue(which).report
  files = tokenize.list_midi_files(esac_midi)
  assert report["files"] == len(files) == 40
  assert report["songs"] == 40
  assert report["dropped"] == 0, report["dropped_files"]
  assert report["roundtrip"] == {"checked": 40, "identical": 40, "failed": []}
  assert report["key_sources"] == {"signature": 40}


def test_no_chords(dataset):
  assert all(s["chords"] == 0 for s in dataset.report["splits"].values())
  assert not any("." in t for t in dataset.pitch_vocab.tokens)
  for _, _, events, _ in _songs(dataset):
    assert events is None or all(len(e.pitches) <= 1 for e in events)


def test_tokens_decode_to_the_events_of_the_midi_files(esac_midi, raw_dataset):
  assert len(raw_dataset.train) == 40
  for _, source, events, unk in _songs(raw_dataset):
    assert not unk
    assert events == _read(esac_midi, source).events, source


def test_normalised_tokens_are_the_midi_events_transposed(esac_midi, dataset):
  checked = 0
  for split, source, events, unk in _songs(dataset):
    if unk:  # a token first seen outside the training split
      assert split != "train", source
      continue
    song = _read(esac_midi, source)
    assert len(events) == len(song.events), source
    assert [e.quarters for e in events] == [e.quarters for e in song.events]
    shifts = {
      ours.pitches[0] - theirs.pitches[0]
      for ours, theirs in zip(events, song.events, strict=True)
      if theirs.pitches
    }
    assert shifts == {tonality.normalizing_shift(*tonality.find_key(song))}, (
      source
    )
    assert [bool(e.pitches) for e in events] == [
      bool(e.pitches) for e in song.events
    ]
    checked += 1
  assert checked >= 36  # at most a few held-out songs with an unk token


def _white_key_share(dataset) -> float:
  mass = collections.Counter()
  for _, _, events, _ in _songs(dataset):
    for event in events or ():
      for pitch in event.pitches:
        mass[pitch % 12 in WHITE_KEYS] += event.quarters
  return mass[True] / (mass[True] + mass[False])


def _final_on_tonic_share(dataset) -> float:
  """Share of songs whose last note is a C or an A."""
  finals = [
    [e for e in events if e.pitches][-1].pitches[0] % 12 in (0, 9)
    for _, _, events, _ in _songs(dataset)
    if events is not None
  ]
  return sum(finals) / len(finals)


def test_key_normalisation_puts_the_notes_on_white_keys(dataset, raw_dataset):
  share = _white_key_share(dataset)
  assert share > 0.9
  assert share > _white_key_share(raw_dataset)
  # Folk tunes end on their tonic: C or A once normalised (32 of 38 here,
  # against 10 of 40 as written; the rest are modal or end on the fifth).
  assert _final_on_tonic_share(dataset) > 0.75
  assert _final_on_tonic_share(raw_dataset) < 0.5


def test_durations_are_plain(dataset):
  durations = {
    tokens.parse_duration_token(t)
    for t in dataset.duration_vocab.tokens[len(tokens.RESERVED) :]
  }
  assert all(d > 0 and (d * 12).denominator == 1 for d in durations)
  assert Fraction(1, 2) in durations and Fraction(1) in durations


@pytest.mark.slow
def test_full_esac_corpus(tmp_path):
  midi_dir = builtin.default_midi_dir()
  if not midi_dir.is_dir():
    pytest.skip(f"no ESAC MIDI folder at {midi_dir}; run `make run`")
  found = len(tokenize.list_midi_files(midi_dir))
  if found != ESAC_TUNES:
    pytest.skip(f"{midi_dir} holds {found} MIDI files, not {ESAC_TUNES}")
  dataset = build.build_dataset(
    midi_dir, tmp_path, check_roundtrip=True, progress=False
  )
  report = dataset.report
  assert report["files"] == report["songs"] == ESAC_TUNES
  assert report["dropped"] == 0, report["dropped_files"][:5]
  assert report["roundtrip"]["checked"] == ESAC_TUNES
  assert report["roundtrip"]["identical"] == ESAC_TUNES, report["roundtrip"]
  splits = report["splits"].values()
  assert all(s["chords"] == 0 for s in splits)
  assert sum(s["songs"] for s in splits) == ESAC_TUNES
  assert sum(len(split) for split in dataset.splits.values()) == sum(
    s["songs"] + s["augmented_copies"] for s in splits
  )
  assert report["common_durations_share"] > 0.99
  with open(tmp_path / "songs.jsonl") as f:
    lines = [json.loads(line) for line in f]
  copies = sum(s["augmented_copies"] for s in splits)
  assert len(lines) == ESAC_TUNES + copies
  assert len({line["source"] for line in lines}) == ESAC_TUNES
  assert (tmp_path / "report.json").is_file()
  with open(tmp_path / "report.json") as f:
    assert json.load(f)["songs"] == ESAC_TUNES
