"""O'Neill's 1850, the second built-in corpus: ABC in music21 -> MIDI.

What O'Neill's has and ESAC has not (repeats and endings, grace notes,
double stops, dynamics read as chord symbols, second transcriptions) is
tested on small tunes and on the corpus's first tunes; the slow test
converts the whole corpus and builds its dataset.
"""

import json
import os
import sys

import pytest

from melodyjax import errors
from melodyjax.cli import convert as convert_cli
from melodyjax.data import build, tokenize
from melodyjax.data import config as data_config_lib
from melodyjax.data.corpora import (
  abc_text,
  builtin,
  convert,
  music21_abc,
  oneills,
)
from melodyjax.music import midi_io

pytest.importorskip("music21")

ONEILLS_FILES = 39
ONEILLS_TUNES = 2009  # transcriptions, of 1,838 tune numbers
ONEILLS_SECOND = 169  # second transcriptions skipped


def _events(text: str) -> tuple[music21_abc.TuneResult, list[tuple]]:
  result = builtin.convert_tune(text, "oneills")
  events = midi_io.read_midi(result.midi).events
  return result, [(e.pitches, float(e.quarters)) for e in events]


def _tune(body: str, key: str = "G", meter: str = "2/4") -> str:
  return f"X:1\nT:Test reel\nM:{meter}\nL:1/8\nK:{key}\n{body}\n"


def test_repeats_are_played_once_into_the_last_ending():
  result, events = _events(
    _tune("G |: AB cd |1 ef g2 :|2 fe d2 || gg ga |[1 b2 a2 :|[2 c'2 b2 |]")
  )
  # G | AB cd | fe d2 || gg ga | c'2 b2: first endings dropped.
  assert [p[0] for p, _ in events] == [
    67, 69, 71, 72, 74, 78, 76, 74, 79, 79, 79, 81, 84, 83,
  ]  # fmt: skip
  assert result.flattened.ending_bars_dropped == 2
  assert result.flattened.repeats_removed >= 1
  assert result.pickup == 0.5


def test_a_real_jig_is_played_once():
  # X:564 'Biddy is my Darling': d | 6 bars |1 FGA ABc | BcB A2 :|2 FGA ABA |
  # G3 G2 || d | 7 bars | G3 G2 ||  (6/8; the first ending is two bars).
  (path,) = [
    p for p in builtin.find_abc_files("oneills") if p.stem == "0550-0625"
  ]
  tune = abc_text.read_abc_tunes(path)[14]
  assert tune.number == 564
  result, events = _events(tune.text)
  assert result.flattened.ending_bars_dropped == 2
  assert result.flattened.repeats_removed == 1
  assert result.flattened.grace_notes_removed == 1  # {a}
  assert result.pickup == 0.5
  # 0.5 + 6 x 3 + 3 + 2.5 (first section) + 0.5 + 7 x 3 + 2.5 (second)
  assert sum(q for _, q in events) == 48
  # The end of the first section: FGA ABA | G3 G2 || d | g ...
  g, f, a, b = 67, 66, 69, 71
  assert [p[0] for p, _ in events[36:46]] == [f, g, a, a, b, a, g, g, 74, 79]


def test_repeat_without_endings_is_played_once():
  result, events = _events(_tune("|: GA Bc | d2 B2 | A4 :|"))
  assert [p[0] for p, _ in events] == [67, 69, 71, 72, 74, 71, 69]
  assert result.flattened.repeats_removed == 2


def test_grace_notes_chords_and_chord_symbols():
  result, events = _events(
    _tune('{g}A2 {ag}f2 | [Ad]2 [FA]e | "f"(3fed "Am"c2 |]', key="D")
  )
  assert events == [
    ((69,), 1.0),
    ((78,), 1.0),
    ((74,), 1.0),  # [Ad]: its top note
    ((69,), 0.5),
    ((76,), 0.5),
    ((78,), 1 / 3),
    ((76,), 1 / 3),
    ((74,), 1 / 3),
    ((73,), 1.0),
  ]
  assert result.flattened.grace_notes_removed == 3
  assert result.flattened.chords_flattened == 2
  assert result.flattened.chord_symbols_removed == 2


def test_second_voice_is_dropped():
  result, events = _events(_tune("V:1\ncd ef | g4 |]\nV:2\nCD EF | G4 |]"))
  assert [p[0] for p, _ in events] == [72, 74, 76, 78, 79]  # F sharp
  assert result.flattened.voices_dropped == 1


def test_german_key_names_are_left_alone_outside_esac():
  # O'Neill's has no German keys; 'K:H' is not renamed (music21 reads C).
  esac_result = builtin.convert_tune(_tune("B2 c2 |]", key="H"))
  oneills, _ = _events(_tune("B2 c2 |]", key="H"))
  assert esac_result.midi != oneills.midi


def _made(stem, index, number, title):
  return abc_text.AbcTune(
    stem, index, number, title, f"X:{number}\nT:{title}\n"
  )


def test_second_transcriptions_are_skipped():
  files_tunes = [
    [_made("a", 0, 740, "The Kilkenny Jig"), _made("a", 1, 800, "Farewell")],
    [
      _made("b", 0, 740, "Kilkenny Jig, The"),  # the same tune
      _made("b", 1, 800, "The Merry Old Woman"),  # a typo in a number
      _made("b", 2, 801, "Farewell"),
    ],
  ]
  kept, skipped = oneills.skip_duplicates(files_tunes)
  assert [[t.relpath for t in tunes] for tunes in kept] == [
    ["a/0000_740.mid", "a/0001_800.mid"],
    ["b/0001_800.mid", "b/0002_801.mid"],
  ]
  assert skipped == [
    {
      "path": "b/0000_740.mid",
      "title": "Kilkenny Jig, The",
      "duplicate_of": "a/0000_740.mid",
    }
  ]


def test_corpus_files_and_folders(monkeypatch, tmp_path):
  found = builtin.find_abc_files("oneills")
  assert len(found) == ONEILLS_FILES and found[0].name == "0001-0050.abc"
  monkeypatch.setenv("MELODYJAX_CACHE", str(tmp_path))
  assert builtin.default_midi_dir("oneills") == tmp_path / "oneills_midi"
  assert builtin.default_midi_dir() == tmp_path / "esac_midi"
  with pytest.raises(errors.ConversionError, match="no built-in corpus 'bach'"):
    builtin.default_midi_dir("bach")


def test_first_tunes_convert(tmp_path):
  summary = convert.convert_corpus(
    tmp_path,
    corpus="oneills",
    limit_files=2,
    limit_tunes=6,
    workers=1,
    progress=False,
  )
  assert summary["corpus"] == "oneills" and summary["label"] == "O'Neill's 1850"
  assert summary["written"] == summary["tunes"] == 12
  assert summary["failed"] == 0 and summary["duplicates"] == 0
  assert summary["grace_notes_removed"] > 0  # tune 1 has grace notes
  paths = sorted(
    p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("*/*.mid")
  )
  assert paths[0] == "0001-0050/0000_1.mid" and len(paths) == 12
  notes = 0
  for path in tmp_path.glob("*/*.mid"):
    song = midi_io.read_midi(path)
    assert all(len(e.pitches) <= 1 for e in song.events), path
    notes += sum(1 for e in song.events if e.pitches)
  assert notes == summary["notes"]
  # The same folder asked for ESAC is refused: it would mix two corpora.
  with pytest.raises(errors.ConversionError, match="corpus oneills, reader"):
    convert.convert_corpus(
      tmp_path, limit_files=1, limit_tunes=2, workers=1, progress=False
    )
  # With force it is replaced: O'Neill's files are gone.
  again = convert.convert_corpus(
    tmp_path,
    limit_files=1,
    limit_tunes=2,
    workers=1,
    progress=False,
    force=True,
  )
  assert not again["reused"] and again["corpus"] == "esac"
  assert len(list(tmp_path.glob("*/*.mid"))) == 2


def test_cli_converts_oneills(tmp_path, capsys):
  status = convert_cli.main(
    [
      "--corpus",
      "oneills",
      "--out",
      str(tmp_path),
      "--limit_files",
      "1",
      "--limit_tunes",
      "2",
      "--workers",
      "1",
      "--no_progress",
    ]
  )
  assert status == 0
  out = capsys.readouterr().out
  assert out.count("\n") == 1 and out.startswith("O'Neill's 1850: 2/2 tunes")


def test_cli_unknown_corpus_is_one_line(tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_info:
    convert_cli.main(["--corpus", "bach", "--out", str(tmp_path)])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert "Traceback" not in err and "corpus" in err


def test_oneills_config_points_at_its_cache(tmp_path, monkeypatch):
  from configs import default, oneills

  monkeypatch.setenv("MELODYJAX_CACHE", str(tmp_path))
  config = oneills.get_config()
  assert set(config) == set(default.get_config())
  assert config.data.midi_dir == str(tmp_path / "oneills_midi")
  assert config.data.dataset_dir == str(tmp_path / "datasets" / "oneills")
  monkeypatch.delenv("MELODYJAX_CACHE")
  home = os.path.expanduser("~/.cache/melodyjax")
  assert oneills.get_config().data.midi_dir == f"{home}/oneills_midi"
  assert data_config_lib.CorpusConfig.from_config(config.data).grid == 24


@pytest.mark.slow
def test_whole_corpus(tmp_path):
  """Every tune converts; the dataset keeps them all, identical round trip."""
  summary = convert.convert_corpus(
    tmp_path / "midi", corpus="oneills", progress=False
  )
  assert summary["files"] == ONEILLS_FILES
  assert summary["tunes"] == ONEILLS_TUNES
  assert summary["duplicates"] == ONEILLS_SECOND
  assert summary["failed"] == 0, summary["failures"][:3]
  written = ONEILLS_TUNES - ONEILLS_SECOND
  assert summary["written"] == written
  assert len(tokenize.list_midi_files(tmp_path / "midi")) == written
  dataset = build.build_dataset(
    tmp_path / "midi",
    tmp_path / "data",
    data_config_lib.CorpusConfig(grid=24),
    check_roundtrip=True,
    progress=False,
  )
  report = dataset.report
  assert report["songs"] == written and report["dropped"] == 0
  assert report["roundtrip"]["identical"] == written
  assert all(s["chords"] == 0 for s in report["splits"].values())
  assert json.loads((tmp_path / "midi" / "conversion.json").read_text())[
    "complete"
  ]
  print(convert.format_summary(summary), file=sys.stderr)
