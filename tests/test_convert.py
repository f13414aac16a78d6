"""melodyjax-convert's readers and repeats: --reader=abc|music21,
--repeats=once|play, the settings in conversion.json, data.repeats."""

import json
from fractions import Fraction

import pytest

from melodyjax import errors
from melodyjax.cli import convert as convert_cli
from melodyjax.data import build
from melodyjax.data import config as data_config_lib
from melodyjax.data.corpora import (
  abc_midi,
  abc_text,
  builtin,
  convert,
  music21_abc,
)
from melodyjax.music import abc_reader, midi_io

TUNEBOOK = """\
%abc-2.1
X:1
T:Repeat
M:4/4
L:1/4
K:C
|: C D E F :| G A B c |]

X:2
T:Endings
M:3/4
L:1/4
K:G
|: G A B | [1 c d e :| [2 d c B |]

X:3
T:Pickup, chord and a long bar
M:2/4
L:1/8
K:D
A | d2 f2 | [df]2 e2 a2 | d4 |]
"""
# (notes once, notes played) per tune of TUNEBOOK
NOTES = [(8, 12), (6, 12), (7, 7)]


def _tunes():
  return abc_text.split_abc_tunes(TUNEBOOK, "book")


@pytest.mark.parametrize("repeats", ["once", "play"])
def test_tunebook_repeats_give_the_expected_notes(repeats):
  for tune, counts in zip(_tunes(), NOTES, strict=True):
    result, _ = abc_midi.convert_abc_tune(tune.text, "oneills", repeats)
    song = midi_io.read_midi(result.midi, grid=12)
    notes = [e for e in song.events if e.pitches]
    assert len(notes) == result.notes == counts[repeats == "play"], tune.title
    # Read back: the reader's events, quantized, each chord its top note.
    read = abc_reader.read_tune(tune.text, repeats=repeats)
    expected = [
      (e.pitches[-1:], e.quarters)
      for e in abc_reader.quantize_events(read.events, 12)
    ]
    assert song.events == expected


def test_endings_played_in_order():
  endings = _tunes()[1]
  result, counts = abc_midi.convert_abc_tune(endings.text, "oneills", "play")
  pitches = [e.pitches[0] for e in midi_io.read_midi(result.midi).events]
  g, a, b, c, d, e = 67, 69, 71, 72, 74, 76
  assert pitches == [g, a, b, c, d, e, g, a, b, d, c, b]
  assert counts["repeats_played"] == 1
  once, _ = abc_midi.convert_abc_tune(endings.text, "oneills", "once")
  pitches = [e.pitches[0] for e in midi_io.read_midi(once.midi).events]
  assert pitches == [g, a, b, d, c, b]


def test_pickup_and_long_bar_as_music21_writes_them():
  """A pickup from time 0, the chord's top note, the long bar re-barred
  with a 1/4 bar and back to 2/4: the same file content as music21's."""
  tune = _tunes()[2]
  ours, _ = abc_midi.convert_abc_tune(tune.text, "oneills")
  theirs = music21_abc.convert_abc_tune(tune.text)
  a = midi_io.read_midi(ours.midi, grid=12)
  b = midi_io.read_midi(theirs.midi, grid=12)
  assert a.meter_changes == ((4.5, 1, 4), (5.5, 2, 4))
  assert a == b
  assert ours.pickup == theirs.pickup == 0.5
  assert ours.notes == theirs.notes == 7


def _songs(folder):
  return {
    path.relative_to(folder).as_posix(): midi_io.read_midi(path, grid=12)
    for path in sorted(folder.glob("*/*.mid"))
  }


def test_abc_and_music21_readers_agree_on_esac(tmp_path):
  """A few dozen ESAC tunes: the same events, pickups (from time 0),
  time signatures, meter changes and keys from either reader."""
  common = dict(limit_files=3, limit_tunes=12, workers=1, progress=False)
  ours = convert.convert_corpus(tmp_path / "abc", reader="abc", **common)
  theirs = convert.convert_corpus(tmp_path / "m21", reader="music21", **common)
  assert ours["written"] == theirs["written"] == 36
  assert ours["notes"] == theirs["notes"] and ours["rests"] == theirs["rests"]
  assert ours["pickup_tunes"] == theirs["pickup_tunes"] > 0
  a, b = _songs(tmp_path / "abc"), _songs(tmp_path / "m21")
  assert sorted(a) == sorted(b) and len(a) == 36
  differ = [path for path in a if a[path] != b[path]]
  assert not differ, differ[:3]
  for folder, reader in (
    (tmp_path / "abc", "abc"),
    (tmp_path / "m21", "music21"),
  ):
    assert builtin.conversion_settings(folder) == {
      "corpus": "esac",
      "reader": reader,
      "repeats": "once",
    }
    assert builtin.metre_hints(str(folder))  # ESAC's pickups for either
  assert "abc reader, repeats once" in convert.format_summary(ours)


def _convert_oneills(out, **options):
  return convert.convert_corpus(
    out,
    corpus="oneills",
    limit_files=1,
    limit_tunes=15,
    workers=1,
    progress=False,
    **options,
  )


def test_other_settings_refused_and_replaced_with_force(tmp_path):
  once = _convert_oneills(tmp_path)
  assert once["repeats"] == "once" and once["reader"] == "abc"
  before = {p: p.read_bytes() for p in tmp_path.glob("*/*.mid")}
  summary = (tmp_path / "conversion.json").read_text()
  with pytest.raises(errors.ConversionError) as raised:
    _convert_oneills(tmp_path, repeats="play")
  message = str(raised.value)
  assert "\n" not in message
  assert message == (
    f"{tmp_path} holds a conversion with corpus oneills, reader abc, "
    "repeats once (conversion.json), not corpus oneills, reader abc, "
    "repeats play: give another output folder, or --force to replace it"
  )
  assert {p: p.read_bytes() for p in tmp_path.glob("*/*.mid")} == before
  assert (tmp_path / "conversion.json").read_text() == summary
  with pytest.raises(errors.ConversionError, match="reader music21"):
    _convert_oneills(tmp_path, reader="music21")
  played = _convert_oneills(tmp_path, repeats="play", force=True)
  assert played["repeats"] == "play" and not played["reused"]
  assert played["repeats_played"] > 0 and played["notes"] > once["notes"]
  on_disk = json.loads((tmp_path / "conversion.json").read_text())
  assert builtin.summary_settings(on_disk)["repeats"] == "play"
  again = _convert_oneills(tmp_path, repeats="play")
  assert again["reused"]


def test_cli_refuses_other_settings_in_one_line(tmp_path, capsys):
  argv = [
    "--corpus=oneills",
    f"--out={tmp_path}",
    "--limit_files=1",
    "--limit_tunes=2",
    "--workers=1",
    "--no_progress",
  ]
  assert convert_cli.main(argv) == 0
  capsys.readouterr()
  with pytest.raises(SystemExit) as exit_info:
    convert_cli.main([*argv, "--repeats=play"])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("melodyjax-convert: error: ")
  assert "--force" in err[0]
  with pytest.raises(SystemExit) as exit_info:
    convert_cli.main([*argv, "--reader=music21", "--repeats=play"])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err == [
    "melodyjax-convert: error: repeats 'play' needs the abc reader "
    "(--reader=abc): the music21 path plays each section once"
  ]


def test_an_older_conversion_by_the_other_reader_is_kept(tmp_path, capsys):
  """`make run` on a cache converted by music21 before the abc reader was
  the default: reused when no reader is asked for, refused when one is."""
  argv = [
    f"--out={tmp_path}",
    "--limit_files=1",
    "--limit_tunes=3",
    "--workers=1",
    "--no_progress",
  ]
  assert convert_cli.main([*argv, "--reader=music21"]) == 0
  before = (tmp_path / "conversion.json").read_text()
  capsys.readouterr()
  assert convert_cli.main(argv) == 0
  assert "already done" in capsys.readouterr().out
  assert (tmp_path / "conversion.json").read_text() == before
  with pytest.raises(SystemExit) as exit_info:
    convert_cli.main([*argv, "--reader=abc"])
  assert exit_info.value.code == 2
  assert "reader music21" in capsys.readouterr().err


def test_play_has_its_own_default_folders(tmp_path, monkeypatch):
  monkeypatch.setenv("MELODYJAX_CACHE", str(tmp_path))
  assert builtin.default_midi_dir("esac") == tmp_path / "esac_midi"
  assert builtin.default_midi_dir("oneills", "play") == (
    tmp_path / "oneills_play_midi"
  )
  assert data_config_lib.corpus_folders("esac", "play") == (
    str(tmp_path / "esac_play_midi"),
    str(tmp_path / "datasets" / "esac_play"),
  )


def test_data_repeats_checked():
  data = data_config_lib.defaults()
  assert data.repeats == "once"
  data_config_lib.check(data)
  data.repeats = "twice"
  with pytest.raises(errors.ConfigError) as raised:
    data_config_lib.check(data)
  assert str(raised.value) == (
    "config.data.repeats must be one of ('once', 'play'), got 'twice'"
  )


def test_data_repeats_must_match_the_conversion(tmp_path, monkeypatch):
  monkeypatch.setenv("MELODYJAX_CACHE", str(tmp_path / "cache"))
  midi = tmp_path / "midi"
  _convert_oneills(midi)
  data = data_config_lib.defaults("oneills")
  data.midi_dir, data.dataset_dir = str(midi), str(tmp_path / "data")
  data.repeats = "play"
  with pytest.raises(errors.CorpusError) as raised:
    build.prepare_dataset(data, progress=False)
  message = str(raised.value)
  assert message.startswith(
    f"config.data.repeats='play' but {midi} holds oneills converted with "
    "repeats 'once' (conversion.json)"
  )
  assert "oneills_play_midi" in message and "\n" not in message
  assert not (tmp_path / "data").exists()
  data.repeats = "once"
  assert build.prepare_dataset(data, progress=False).report["songs"] == 15
  # The default folder of played repeats is not converted into for 'once'.
  data.midi_dir = str(builtin.default_midi_dir("oneills", "play"))
  with pytest.raises(errors.CorpusError, match="repeats 'play': set config"):
    build.prepare_dataset(data, progress=False)
  assert not (tmp_path / "cache").exists()
  # A folder of the user's own MIDI files has no repeats to play.
  own = tmp_path / "own"
  own.mkdir()
  (own / "a.mid").write_bytes((midi / "0001-0050" / "0000_1.mid").read_bytes())
  data.midi_dir, data.repeats = str(own), "play"
  with pytest.raises(errors.CorpusError, match="holds no conversion.json"):
    build.prepare_dataset(data, progress=False)


def test_signature_of_a_tuplet_remainder_as_music21_writes_it():
  """O'Neill's 490: a long bar's rest holds a triplet's part; its
  signature (1/6) is written as MIDI can hold it, 1/4, as music21 does."""
  path = [p for p in builtin.find_abc_files("oneills") if p.stem == "0487-0500"]
  tune = abc_text.read_abc_tunes(path[0])[3]
  assert tune.number == 490
  ours, _ = abc_midi.convert_abc_tune(tune.text, "oneills")
  theirs = builtin.convert_tune(tune.text, "oneills", tune.title)
  a = midi_io.read_midi(ours.midi, grid=24)
  b = midi_io.read_midi(theirs.midi, grid=24)
  assert a.meter_changes == b.meter_changes
  assert a.meter_changes[0] == (Fraction(38, 3), 1, 4)
  assert a.events == b.events
