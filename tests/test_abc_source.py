"""`melodyjax-corpus --abc` and `config.data.abc`: a tunebook, a folder of
them, or The Session's CSV or JSON to a dataset, with each ABC construct
counted and unreadable tunes dropped with their reason."""

import csv
import json
import re

import pytest

from melodyjax import errors
from melodyjax.cli import corpus as corpus_cli
from melodyjax.data import build
from melodyjax.data import config as data_config_lib
from melodyjax.data.corpora import abc_source, abc_text, builtin, convert

# One tune per construct the report counts, and one that cannot be read.
TUNEBOOK = """\
% a tunebook: this header belongs to every tune
L:1/8

X:1
T:Broken and tuplets
R:reel
M:4/4
K:D
A>B c<d (3efg a2 | b>a g<f e4 |]

X:2
T:Ties, chords, graces
R:reel
M:4/4
K:G
G2-G2 [GBd]2 {a}g2 | {fg}f4 d4 |]

X:3
T:Decorations and chord symbols
R:jig
M:6/8
K:Edor
"Em"~E3 !trill!F3 | .G3 "D"A3 | B6 |]

X:4
T:Repeats and endings
R:jig
M:6/8
K:A
|: A2B c2d | e3 e3 |1 f6 :|2 a6 |]

X:5
T:Inline changes
M:3/4
K:C
C2 D2 E2 | [K:G] F2 G2 A2 | [M:2/4] B2 c2 | [L:1/4] d2 |]

X:6
T:Two voices
M:2/4
K:F
V:1
F2 A2 | c4 |]
V:2
F,4 | C,4 |]

X:7
T:Unreadable
M:4/4
K:C
c'''''''''''''''''''''''''''''''''''''''' d |]
"""
# construct -> tunes of TUNEBOOK holding it (abc_reader's counts' names)
CONSTRUCTS = {
  "broken_rhythm": 1,
  "tuplets": 1,
  "ties": 1,
  "chords": 1,
  "grace_notes": 1,
  "decorations": 1,
  "chord_symbols": 1,
  "repeats": 1,
  "endings": 1,
  "inline_fields": 1,
  "key_changes": 1,
  "meter_changes": 1,
  "unit_changes": 1,
  "voices_dropped": 1,
}
COLUMNS = ["tune_id", "setting_id", "name", "type", "meter", "mode", "abc"]
SESSION = [
  [1, 11, "Cooley's", "reel", "4/4", "Edorian", "|:EBBA B2 EB|B2AB dBAG:|"],
  [1, 12, "Cooley's", "reel", "4/4", "Edorian", "EBBA B2EB!B2AB dBAG|"],
  [2, 21, "The Kesh", "jig", "6/8", "Gmajor", "|:GAG GAB|ABA ABd:|"],
  [3, 31, "Broken", "reel", "4/4", "Dmajor", "|:A>B c'''''''''''''''d:|"],
]


def _build(tmp_path, source, **options):
  midi_dir = abc_source.midi_dir_of(tmp_path / "data")
  summary = abc_source.convert_abc_source(
    source, midi_dir, workers=1, progress=False, **options
  )
  config = data_config_lib.CorpusConfig(min_notes=1, min_label_songs=1)
  dataset = build.build_dataset(
    midi_dir, tmp_path / "data", config, workers=1, progress=False
  )
  return summary, dataset


def _songs(dataset):
  with open(f"{dataset.path}/songs.jsonl") as f:
    return {line["source"]: line for line in map(json.loads, f)}


def test_tunebook_counts_every_construct_and_drops_the_unreadable(tmp_path):
  book = tmp_path / "book.abc"
  book.write_text(TUNEBOOK)
  summary, dataset = _build(tmp_path, book)
  report = dataset.report
  assert (summary["tunes"], summary["written"], summary["failed"]) == (7, 6, 1)
  conversion = report["conversion"]
  for construct, tunes in CONSTRUCTS.items():
    assert conversion["construct_tunes"].get(construct) == tunes, construct
  assert report["dropped_by_reason"] == {"abc_unreadable": 1}
  (drop,) = report["dropped_files"]
  assert drop["source"] == "book/0006_7.mid"
  assert "Unreadable" in drop["message"] and "outside MIDI" in drop["message"]
  # Type (R:) as the style folder, else the collection (the file).
  songs = _songs(dataset)
  assert sorted(songs) == [
    "book/0004_5.mid",
    "book/0005_6.mid",
    "jig/book/0002_3.mid",
    "jig/book/0003_4.mid",
    "reel/book/0000_1.mid",
    "reel/book/0001_2.mid",
  ]
  assert dataset.labels.style.known == ("book", "jig", "reel")
  tune = songs["jig/book/0002_3.mid"]["tune"]
  assert tune["title"] == "Decorations and chord symbols"
  assert (tune["collection"], tune["type"]) == ("book", "jig")
  assert (tune["meter"], tune["tonic"], tune["mode"]) == ("6/8", "E", "dorian")
  # Repeats once: A B c d e e, then the last ending only.
  assert len(songs["jig/book/0003_4.mid"]["pitch"]) == 7
  # The second voice is dropped: only the first one's notes.
  assert songs["book/0005_6.mid"]["pitch"] == ["C4", "E4", "G4"]


def test_repeats_played(tmp_path):
  book = tmp_path / "book.abc"
  book.write_text(TUNEBOOK)
  _, dataset = _build(tmp_path, book, repeats="play")
  # A B c d e e f, again A B c d e e, then a.
  assert len(_songs(dataset)["jig/book/0003_4.mid"]["pitch"]) == 14


def _write_session(path, rows):
  if path.suffix == ".json":
    path.write_text(
      json.dumps([dict(zip(COLUMNS, r, strict=True)) for r in rows])
    )
    return
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(COLUMNS)
    writer.writerows(rows)


@pytest.mark.parametrize("name", ["tunes.csv", "tunes.json", "tunes.txt"])
def test_session_settings_keep_their_ids(tmp_path, name):
  path = tmp_path / name
  _write_session(
    path.with_suffix(".csv") if name.endswith("txt") else path, SESSION
  )
  if name.endswith("txt"):  # the layout found by its content
    path.write_bytes(path.with_suffix(".csv").read_bytes())
  summary, dataset = _build(tmp_path, path)
  assert (summary["written"], summary["failed"]) == (3, 1)
  songs = _songs(dataset)
  assert sorted(songs) == [
    "jig/2/0000_21.mid",
    "reel/1/0000_11.mid",
    "reel/1/0001_12.mid",
  ]
  ids = {
    (s["tune"]["tune_id"], s["tune"]["setting_id"]) for s in songs.values()
  }
  assert ids == {(1, 11), (1, 12), (2, 21)}
  tune = songs["reel/1/0001_12.mid"]["tune"]
  assert (tune["title"], tune["collection"]) == ("Cooley's", "thesession")
  assert (tune["tonic"], tune["mode"]) == ("E", "dorian")
  # '!' broke the line: both halves read.
  assert len(songs["reel/1/0001_12.mid"]["pitch"]) == 14
  assert dataset.report["dropped_by_reason"] == {"abc_unreadable": 1}
  assert set(dataset.labels.style.known) == {"jig", "reel"}


def test_folder_is_reused_and_redone_when_it_changes(tmp_path):
  folder = tmp_path / "abc"
  (folder / "irish").mkdir(parents=True)
  (folder / "irish" / "book.abc").write_text(TUNEBOOK)
  (folder / "notes.txt").write_text("not ABC")
  first, _ = _build(tmp_path, folder)
  assert first["files"] == 1 and not first["reused"]
  again, _ = _build(tmp_path, folder)
  assert again["reused"]
  (folder / "more.abc").write_text("X:1\nT:More\nK:C\nCDEF|]\n")
  third, dataset = _build(tmp_path, folder)
  assert not third["reused"] and third["written"] == 7
  assert "irish/book/0004_5.mid" in _songs(dataset)
  assert "more/0000_1.mid" in _songs(dataset)


def test_data_abc_builds_through_prepare_dataset(tmp_path):
  book = tmp_path / "book.abc"
  book.write_text(TUNEBOOK)
  data = data_config_lib.defaults()
  data.abc, data.dataset_dir = str(book), str(tmp_path / "data")
  data.min_notes = 1
  data_config_lib.check(data)
  dataset = build.prepare_dataset(data, progress=False)
  assert dataset.report["songs"] == 6
  assert dataset.report["midi_dir"] == str(tmp_path / "data" / "midi")


def test_data_abc_refuses_the_default_dataset_folder():
  data = data_config_lib.defaults()
  data.abc = "tunes.abc"
  with pytest.raises(errors.ConfigError, match="a folder of its own"):
    data_config_lib.check(data)


@pytest.mark.parametrize(
  "make, message",
  [
    (lambda p: p / "nothing.abc", "ABC source not found"),
    (lambda p: _file(p / "empty.abc", "T:no X\n"), "no tunes in"),
    (lambda p: _file(p / "x" / "a.txt", "la").parent, "no ABC files"),
    (
      lambda p: _file(p / "t.csv", "tune_id,name\n1,a\n"),
      "row 1 lacks the column(s) setting_id",
    ),
    (lambda p: _file(p / "t.json", "{}"), "not a JSON list of tunes"),
  ],
)
def test_sources_that_cannot_be_read_are_one_line(tmp_path, make, message):
  with pytest.raises(errors.CorpusError, match=re.escape(message)):
    abc_source.convert_abc_source(make(tmp_path), tmp_path / "m", workers=1)


def _file(path, text):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text)
  return path


def test_cli_builds_from_abc_and_refuses_both_sources(tmp_path, capsys):
  book = _file(tmp_path / "book.abc", TUNEBOOK)
  out = tmp_path / "data"
  argv = ["--abc", str(book), "--out", str(out), "--no_progress"]
  assert corpus_cli.main([*argv, "--workers=1", "--min_notes=1"]) == 0
  printed = capsys.readouterr().out
  assert "6/7 tunes from 1 files written, 1 failed" in printed
  assert "ABC constructs: broken rhythm 4 (1 tunes)" in printed
  assert "abc_unreadable: Unreadable:" in printed
  with pytest.raises(SystemExit) as exit:
    corpus_cli.main([*argv, "--midi_dir", str(tmp_path)])
  assert exit.value.code == 2
  assert "give --midi_dir or --abc" in capsys.readouterr().err


def test_a_builtin_conversion_is_not_overwritten(tmp_path):
  midi = tmp_path / "m"
  midi.mkdir()
  (midi / builtin.SUMMARY_NAME).write_text(
    json.dumps({"corpus": "oneills", "reader": "abc", "repeats": "once"})
  )
  book = _file(tmp_path / "book.abc", TUNEBOOK)
  with pytest.raises(errors.CorpusError, match="built-in corpus oneills"):
    abc_source.convert_abc_source(book, midi, workers=1)


def test_new_builtin_corpora_and_folk_label_their_songs(tmp_path):
  """A few of the tunes music21 ships: Ryan's by type, folk by collection
  (first 2 files of each part, 3 tunes each)."""
  ryans = convert.convert_corpus(
    tmp_path / "ryans",
    corpus="ryans",
    limit_files=6,
    workers=1,
    progress=False,
  )
  assert ryans["written"] == 6 and ryans["failed"] == 0
  with open(tmp_path / "ryans" / builtin.TUNES_NAME) as f:
    tunes = json.load(f)
  for path, tune in tunes.items():
    kind = abc_text.folder_name(tune["type"])
    assert path.split("/")[0] == kind if kind else len(path.split("/")) == 2
    assert tune["collection"] == "ryans" and tune["meter"]
  folk = convert.convert_corpus(
    tmp_path / "folk",
    corpus="folk",
    limit_files=2,
    limit_tunes=3,
    workers=1,
    progress=False,
  )
  assert folk["tunes"] == 5 * 2 * 3 - 2 * 2  # Ryan's: one tune per file
  config = data_config_lib.CorpusConfig(min_label_songs=1)
  dataset = build.build_dataset(
    tmp_path / "folk", tmp_path / "data", config, workers=1, progress=False
  )
  assert set(dataset.labels.style.known) <= set(builtin.CORPORA["folk"].parts)
  songs = _songs(dataset)
  assert {s["tune"]["collection"] for s in songs.values()} == set(
    builtin.CORPORA["folk"].parts
  )
  assert all(
    source.split("/")[0] == s["tune"]["collection"]
    for source, s in songs.items()
  )
  assert dataset.report["conversion"]["songs_by_collection"]["esac"] == 6
