"""Tests of data.corpora (ESAC): ABC in music21 to MIDI files."""

import io
import json
import sys

import pytest

from melodyjax import errors
from melodyjax.cli import convert as convert_cli
from melodyjax.data.corpora import (
  abc_text,
  builtin,
  convert,
)

pytest.importorskip("music21")
mido = pytest.importorskip("mido")


def _notes(data: bytes) -> list[tuple[int, float, float]]:
  """(pitch, onset, quarters) of every note of a MIDI file, by onset."""
  midi = mido.MidiFile(file=io.BytesIO(data))
  notes = []
  for track in midi.tracks:
    now = 0
    sounding = {}
    for message in track:
      now += message.time
      if message.type == "note_on" and message.velocity > 0:
        sounding[message.note] = now
      elif message.type in ("note_on", "note_off"):
        start = sounding.pop(message.note, None)
        if start is not None:
          notes.append(
            (
              message.note,
              start / midi.ticks_per_beat,
              (now - start) / midi.ticks_per_beat,
            )
          )
  return sorted(notes, key=lambda n: n[1])


def _metas(data: bytes, kind: str) -> list:
  midi = mido.MidiFile(file=io.BytesIO(data))
  return [m for track in midi.tracks for m in track if m.type == kind]


def _tune(body: str, key: str = "C", meter: str = "2/4") -> str:
  return f"X:1\nT:Test tune\nM:{meter}\nL:1/8\nK:{key}\n{body}\n"


def test_accidental_carries_to_end_of_bar():
  # ABC 2.1: the sharp applies to the second F of the bar, not the next bar.
  data = builtin.convert_tune(_tune("^F G F G | F G F G |]")).midi
  pitches = [p for p, _, _ in _notes(data)]
  assert pitches == [66, 67, 66, 67, 65, 67, 65, 67]


def test_accidental_carry_in_a_real_tune():
  # ballad50.abc X:18 "Entfuehrung unterm Tanz": G2_B2c2B2G2 | _B2BAG2B2 | G4
  # Each B after a _B in the same bar is B flat (70), not B natural (71).
  (path,) = [p for p in builtin.find_abc_files() if p.stem == "ballad50"]
  tune = abc_text.read_abc_tunes(path)[17]
  assert (tune.number, tune.title) == (18, "Entfuehrung unterm Tanz")
  data = builtin.convert_tune(tune.text).midi
  assert [p for p, _, _ in _notes(data)] == [
    67,
    70,
    72,
    70,
    67,
    70,
    70,
    69,
    67,
    70,
    67,
  ]


def test_tie_between_different_pitches_keeps_both_notes():
  data = builtin.convert_tune(_tune("c2- d2 | e2-e2 | f4 |]")).midi
  # c-d is a slur written as a tie: both notes stay; e-e is a real tie.
  assert [(p, q) for p, _, q in _notes(data)] == [
    (72, 1.0),
    (74, 1.0),
    (76, 2.0),
    (77, 2.0),
  ]
  assert builtin.convert_tune(_tune("c2- d2 | e4 |]")).ties_removed == 1


def test_tie_to_a_rest_is_removed():
  data = builtin.convert_tune(_tune("c2- z2 | c4 |]")).midi
  assert [(p, o, q) for p, o, q in _notes(data)] == [
    (72, 0.0, 1.0),
    (72, 2.0, 2.0),
  ]


def test_time_signature_shared_between_bars_exports():
  # The 3/8 bar is re-barred by music21 as 2/4 + 1/4, then back to 2/4 with
  # the same TimeSignature object as the first bar.
  data = builtin.convert_tune(_tune("G2 A2 | B2 c2 d2 | e4 |]", "G")).midi
  assert [p for p, _, _ in _notes(data)] == [67, 69, 71, 72, 74, 76]
  meters = [
    (m.numerator, m.denominator) for m in _metas(data, "time_signature")
  ]
  assert meters == [(2, 4), (1, 4), (2, 4)]


def test_meta_messages_and_pickup():
  text = "X:9\nT:Auftakt\nM:3/4\nL:1/8\nK:Es\nB | e2 e2 f2 | g6 |]\n"
  result = builtin.convert_tune(text)
  assert result.pickup == 0.5
  # German 'Es' is E flat; the pickup starts at time 0 (no leading gap).
  assert [(p, o) for p, o, _ in _notes(result.midi)] == [
    (70, 0.0),
    (75, 0.5),
    (75, 1.5),
    (77, 2.5),
    (79, 3.5),
  ]
  assert [m.key for m in _metas(result.midi, "key_signature")] == ["Eb"]
  assert [m.name for m in _metas(result.midi, "track_name")] == ["Auftakt"]
  assert len(_metas(result.midi, "set_tempo")) == 1
  midi = mido.MidiFile(file=io.BytesIO(result.midi))
  assert midi.ticks_per_beat % 12 == 0
  channels = {m.channel for t in midi.tracks for m in t if m.type == "note_on"}
  assert channels and 9 not in channels


def test_split_abc_tunes_keeps_order_numbers_and_header():
  text = "%abc\nX:5\nT:One\nK:C\nC\n\nX:7\nT:Two\nK:G\nG\n"
  tunes = abc_text.split_abc_tunes(text, "demo")
  assert [(t.index, t.number, t.title) for t in tunes] == [
    (0, 5, "One"),
    (1, 7, "Two"),
  ]
  assert tunes[1].relpath == "demo/0001_7.mid"
  assert all(t.text.startswith("%abc\nX:") for t in tunes)


def test_find_abc_files():
  files = builtin.find_abc_files()
  assert len(files) == 27
  assert files == sorted(files)
  assert not any(f.name.startswith("test") for f in files)


def test_missing_music21_names_the_fix(monkeypatch):
  monkeypatch.setitem(sys.modules, "music21", None)
  with pytest.raises(errors.ConversionError, match=r"melodyjax\[corpus\]"):
    builtin.find_abc_files()


def test_default_midi_dir(monkeypatch, tmp_path):
  monkeypatch.setenv("MELODYJAX_CACHE", str(tmp_path))
  assert builtin.default_midi_dir() == tmp_path / "esac_midi"
  monkeypatch.delenv("MELODYJAX_CACHE")
  assert builtin.default_midi_dir().parts[-3:] == (
    ".cache",
    "melodyjax",
    "esac_midi",
  )


def test_convert_corpus_writes_readable_files(tmp_path):
  out = tmp_path / "midi"
  summary = convert.convert_corpus(
    out, workers=2, limit_files=2, limit_tunes=12, progress=False
  )
  assert summary["complete"] and not summary["reused"]
  assert summary["files"] == 2
  assert summary["tunes"] == summary["written"] == 24
  assert summary["failed"] == 0 and summary["failures"] == []
  paths = sorted(out.glob("*/*.mid"))
  assert len(paths) == 24
  assert paths[0].relative_to(out).as_posix() == "altdeu10/0000_1.mid"
  assert not list(out.rglob("*.tmp"))
  notes = 0
  for path in paths:
    data = path.read_bytes()
    found = _notes(data)
    assert found
    notes += len(found)
    assert len(_metas(data, "key_signature")) == 1
    assert _metas(data, "time_signature")
  assert notes == summary["notes"]
  on_disk = json.loads((out / builtin.SUMMARY_NAME).read_text())
  assert on_disk == summary

  # A second call with the same request returns the summary, writes nothing.
  mtime = paths[0].stat().st_mtime_ns
  again = convert.convert_corpus(
    out, workers=2, limit_files=2, limit_tunes=12, progress=False
  )
  assert again == {**summary, "reused": True}
  assert paths[0].stat().st_mtime_ns == mtime


def test_cli_unwritable_dir_is_one_line(tmp_path, capsys):
  blocker = tmp_path / "file"
  blocker.write_text("not a folder")
  with pytest.raises(SystemExit) as exit_info:
    convert_cli.main(["--out", str(blocker / "sub"), "--limit_files", "1"])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "cannot write" in err
  assert "Traceback" not in err


def test_cli_converts(tmp_path, capsys):
  status = convert_cli.main(
    [
      "--out",
      str(tmp_path),
      "--limit_files",
      "1",
      "--limit_tunes",
      "3",
      "--workers",
      "1",
      "--no_progress",
    ]
  )
  assert status == 0
  out = capsys.readouterr().out
  assert out.count("\n") == 1 and "3/3 tunes" in out
