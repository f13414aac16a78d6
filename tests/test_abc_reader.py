"""The ABC reader (music.abc_reader) and The Session's layout (abc_session).

Each construct is tested on ABC text written here, with its exact events;
a few dozen real tunes of ESAC and O'Neill's are compared with the music21
path's events (skipped without music21); a short fuzz loop checks that only
`AbcError` comes out of mutated tunes.
"""

import collections
import csv
import json
import random
import time
from fractions import Fraction as F

import pytest

from melodyjax import errors
from melodyjax.music import abc_reader, abc_session
from melodyjax.music.events import Event

C, D, E, FF, G, A, B = 60, 62, 64, 65, 67, 69, 71  # FF: F4, not Fraction


def _tune(body, header="M:4/4\nL:1/8\nK:C", **options):
  return abc_reader.read_tune(f"X:1\nT:Test\n{header}\n{body}\n", **options)


def _events(body, header="M:4/4\nL:1/8\nK:C", **options):
  tune = _tune(body, header, **options)
  return [(event.pitches, event.quarters) for event in tune.events]


def _pitches(body, header="M:4/4\nL:1/8\nK:C", **options):
  return [p[-1] for p, _ in _events(body, header, **options) if p]


def _notes(*pairs):
  """(pitch or None for a rest, quarters) pairs as expected events."""
  return [((p,) if p is not None else (), F(q)) for p, q in pairs]


# ------------------------------------------------------------ tunebooks


def test_tunebook_header_applies_to_every_tune():
  text = (
    "% a tunebook\nM:3/4\nL:1/4\n\n"
    "X:7\nT:First\nT:Second title\nK:G\nF G A |\n\n"
    "X:8\nT:Other\nM:2/4\nK:D\nF2 |\n"
  )
  first, second = abc_reader.read_tunebook(text)
  assert (first.number, first.title, first.meter) == (7, "First", (3, 4))
  assert first.fields["T"] == ["First", "Second title"]
  assert [(e.pitches, e.quarters) for e in first.events] == _notes(
    (FF + 1, 1), (G, 1), (A, 1)
  )
  assert (second.number, second.meter, second.unit) == (8, (2, 4), F(1, 4))
  assert [(e.pitches, e.quarters) for e in second.events] == _notes((FF + 1, 2))
  assert abc_reader.split_tunebook("X:1\nK:C\nC\n")[0].startswith("X:1")


def test_tunebook_errors_name_the_tune_or_are_skipped():
  text = "X:1\nK:C\nC D |\n\nX:2\nT:Bad\nK:C\n[CE |\n\nX:3\nK:C\nE |\n"
  with pytest.raises(abc_reader.AbcError, match=r"tune 2 \(X:2\).*chord"):
    abc_reader.read_tunebook(text)
  assert len(abc_reader.read_tunebook(text, skip_errors=True)) == 2
  kinds = [type(t).__name__ for t in abc_reader.iter_tunebook(text)]
  assert kinds == ["Tune", "AbcError", "Tune"]


def test_header_fields_tempo_and_the_rest():
  tune = _tune("C4 |", "M:C|\nL:1/4\nQ:1/4=100\nP:AB\nV:1\nR:reel\nK:C")
  assert tune.meter == (2, 2) and tune.unit == F(1, 4)
  assert tune.tempo_bpm == 100.0
  assert tune.fields["R"] == ["reel"] and tune.fields["P"] == ["AB"]
  assert _tune("C", "Q:3/8=60\nK:C").tempo_bpm == 90.0
  assert _tune("C", 'Q:"Allegro" 80\nK:C').tempo_bpm == 80.0
  assert _tune("C", "M:C\nK:C").meter == (4, 4)
  assert _tune("C", "M:none\nK:C").meter is None
  free = _tune("C", "M:FREI4/4\nK:C")
  assert free.meter == (4, 4) and free.counts["free_meter"] == 1


@pytest.mark.parametrize(
  "meter, unit",
  [("2/4", F(1, 16)), ("3/4", F(1, 8)), ("6/8", F(1, 8)), ("none", F(1, 8))],
)
def test_default_unit_follows_the_meter(meter, unit):
  assert _tune("C", f"M:{meter}\nK:C").unit == unit
  assert _tune("C", "K:C").unit == F(1, 8)


def test_inline_fields_and_field_lines_in_the_body():
  events = _events("F [K:G] F [L:1/4] F [M:3/4] F |\nK:F\nB\nL:1/8\nB |")
  assert events == _notes(
    (FF, F(1, 2)), (FF + 1, F(1, 2)), (FF + 1, 1), (FF + 1, 1), (B - 1, 1),
    (B - 1, F(1, 2)),
  )  # fmt: skip
  tune = _tune("C [M:3/4] D |")
  assert tune.meter_changes == ((F(1, 2), 3, 4),)
  assert tune.counts["inline_fields"] == 1


# ----------------------------------------------------------------- keys


@pytest.mark.parametrize(
  "key, scale, signature, mode",
  [
    ("D", [62, 64, 66, 67, 69, 71, 73], "D", "major"),
    ("Dm", [62, 64, 65, 67, 69, 70, 72], "Dm", "minor"),
    ("Ador", [62, 64, 66, 67, 69, 71, 72], "G", "dorian"),
    ("Emin", [62, 64, 66, 67, 69, 71, 72], "Em", "minor"),
    ("G mix", [62, 64, 65, 67, 69, 71, 72], "C", "mixolydian"),
    ("Bb", [62, 63, 65, 67, 69, 70, 72], "Bb", "major"),
    ("F#m", [62, 64, 66, 68, 69, 71, 73], "F#m", "minor"),
    ("HP", [62, 64, 65, 67, 69, 71, 72], "C", "mixolydian"),
    ("Hp", [62, 64, 66, 67, 69, 71, 73], "D", "mixolydian"),
    ("D =c", [62, 64, 66, 67, 69, 71, 72], "D", "major"),
    ("C ^f _b", [62, 64, 66, 67, 69, 70, 72], "C", "major"),
    ("none", [62, 64, 65, 67, 69, 71, 72], None, None),
  ],
)
def test_keys_modes_and_explicit_accidentals(key, scale, signature, mode):
  tune = _tune("DEFGABc", f"L:1/8\nK:{key}")
  assert [p for p, _ in ((e.pitches[0], 0) for e in tune.events)] == scale
  assert tune.key_signature == signature
  assert tune.mode == mode


def test_german_key_names_only_when_asked():
  assert _pitches("B", "K:H", german_keys=True) == [71]
  assert _tune("B", "K:H", german_keys=True).key_signature == "B"
  assert _pitches("EAB", "K:Es", german_keys=True) == [63, 68, 70]
  with pytest.raises(abc_reader.AbcError, match="K: field"):
    _tune("B", "K:H")
  assert _tune("B", "K:Bn").counts["unknown_mode"] == 1  # music21: B major


def test_accidentals_carry_to_the_end_of_the_bar():
  assert _pitches("^F F =F F | F") == [66, 66, 65, 65, 65]
  assert _pitches("^^C C __E E | C E") == [62, 62, 62, 62, 60, 64]
  # music21's ABC 2.1 reading: the same letter in every octave.
  assert _pitches("^f F | F") == [78, 66, 65]
  assert _pitches("^f F | F", propagate="octave") == [78, 65, 65]
  assert _pitches("^f f", propagate="not") == [78, 77]
  directive = "%%propagate-accidentals not\nK:C"
  assert _pitches("^F F", directive) == [66, 65]
  # Grace notes' accidentals carry too (as in music21), in the key's
  # signature a natural cancels.
  assert _pitches("{^F}F F", "K:C") == [66, 66]
  assert _pitches("=F F | F", "K:G") == [65, 65, 66]
  assert _pitches("C, c' c''") == [48, 84, 96]


# -------------------------------------------------------------- lengths


def test_lengths():
  assert _events("A2 A/2 A/ A// A3/2 A3/ A") == _notes(
    (A, 1), (A, F(1, 4)), (A, F(1, 4)), (A, F(1, 8)), (A, F(3, 4)),
    (A, F(3, 4)), (A, F(1, 2)),
  )  # fmt: skip


def test_broken_rhythm():
  assert _events("A>B A<B A>>B c2<d2") == _notes(
    (A, F(3, 4)), (B, F(1, 4)), (A, F(1, 4)), (B, F(3, 4)), (A, F(7, 8)),
    (B, F(1, 8)), (72, F(1, 2)), (74, F(3, 2)),
  )  # fmt: skip
  # Decorations, slurs and grace notes between do not matter.
  assert _events("(A>.B) A>{g}B") == _notes(
    (A, F(3, 4)), (B, F(1, 4)), (A, F(3, 4)), (B, F(1, 4))
  )
  # a>b>c: the middle note takes the second marker only (as music21).
  assert _events("A>B>c") == _notes((A, F(3, 4)), (B, F(3, 4)), (72, F(1, 4)))
  assert _tune("A>B").counts["broken_rhythm"] == 1


def test_tuplets():
  third = F(1, 3)
  assert _events("(3ABc d") == _notes(
    (A, third), (B, third), (72, third), (74, F(1, 2))
  )
  assert _events("(3:2:2AB c") == _notes((A, third), (B, third), (72, F(1, 2)))
  # (p:q:r: p notes in the time of q, for r notes.
  assert _events("(3:2:4ABcd") == _notes(*[(p, third) for p in (A, B, 72, 74)])
  # (5 is 5 in the time of 3 in a compound meter, else of 2.
  assert _events("(5ABcde", "M:6/8\nL:1/8\nK:C")[0] == ((A,), F(3, 10))
  assert _events("(5ABcde", "M:2/4\nL:1/8\nK:C")[0] == ((A,), F(1, 5))
  # Rests and chords count, grace notes do not.
  assert _events("(3z{B}[Ac]B") == [
    ((), third),
    ((A, 72), third),
    ((B,), third),
  ]
  assert _tune("(3ABc").counts["tuplets"] == 1


def test_ties():
  assert _events("A2-A2 B-|B c-d") == _notes(
    (A, 2), (B, 1), (72, F(1, 2)), (74, F(1, 2))
  )
  tune = _tune("c-d A-z")
  assert tune.counts["ties"] == 2
  assert tune.counts["ties_between_pitches"] == 1
  # A chord ties on to a note or chord whose pitches it holds.
  assert _events("[Ac]-c [Ac]-[Ac] [Ac]-B") == [
    ((A, 72), F(1)),
    ((A, 72), F(1)),
    ((A, 72), F(1, 2)),
    ((B,), F(1, 2)),
  ]
  # A tie after grace notes ties nothing (music21 reads it so).
  assert _events("B{c}-B") == _notes((B, F(1, 2)), (B, F(1, 2)))


def test_rests_merge_and_multi_bar_rests_take_the_meter():
  assert _events("A z z2 | Z2 | x B", "M:3/4\nL:1/8\nK:C") == _notes(
    (A, F(1, 2)), (None, 8), (B, F(1, 2))
  )
  tune = _tune("A Z | x B")
  assert tune.counts["multi_bar_rests"] == 1
  assert tune.counts["invisible_rests"] == 1
  assert tune.to_song().events[1] == Event((), F(9, 2))


def test_chords_give_all_pitches_ascending():
  assert _events("[ECG] [C2E2G2]/2 [ce]3 [Gc]") == [
    ((C, E, G), F(1, 2)),
    ((C, E, G), F(1, 2)),
    ((72, 76), F(3, 2)),
    ((G, 72), F(1, 2)),
  ]
  assert _tune("[CE]").counts["chords"] == 1
  assert _events("+CE+") == [((C, E), F(1, 2))]  # ABC 1's chords


def test_dropped_and_ignored_constructs():
  body = (
    '{ag}A ~B .c Hd !trill!e +fermata+f "Am"g "^text"a uA vB '
    "T c y d`e \\\n% a comment\nf %more\n"
  )
  tune = _tune(body)
  assert [e.pitches[0] for e in tune.events] == [
    A, B, 72, 74, 76, 77, 79, 81, A, B, 72, 74, 76, 77,
  ]  # fmt: skip
  assert all(e.quarters == F(1, 2) for e in tune.events)
  counts = tune.counts
  assert counts["grace_notes"] == 2
  assert counts["decorations"] == 8
  assert (counts["chord_symbols"], counts["annotations"]) == (1, 1)
  assert counts["spacers"] == 1


def test_bar_lines_reset_accidentals():
  for bar in ["|", "||", "|]", "[|", ":|", "|:", "::", ".|", ":|:"]:
    assert _pitches(f"^F {bar} F") == [66, 65], bar


def test_voice_overlay_is_dropped_to_the_bar_end():
  assert _pitches("A B & c d | e") == [A, B, 76]


# -------------------------------------------------------------- repeats


REPEATED = "G |: AB cd |1 ef g2 :|2 fe d2 || gg ga |[1 b2 a2 :|[2 c'2 b2 |]"


def test_repeats_once_drop_the_first_endings():
  assert _pitches(REPEATED, "M:2/4\nL:1/8\nK:G") == [
    67, 69, 71, 72, 74, 78, 76, 74, 79, 79, 79, 81, 84, 83,
  ]  # fmt: skip
  tune = _tune(REPEATED, "M:2/4\nL:1/8\nK:G")
  assert tune.counts["ending_bars_dropped"] == 2
  assert tune.counts["endings"] == 4
  assert tune.pickup_quarters == F(1, 2)


def test_repeats_played_as_written():
  assert _pitches(REPEATED, "M:2/4\nL:1/8\nK:G", repeats="play") == [
    67, 69, 71, 72, 74, 76, 78, 79, 69, 71, 72, 74, 78, 76, 74,
    79, 79, 79, 81, 83, 81, 79, 79, 79, 81, 84, 83,
  ]  # fmt: skip
  play = {"repeats": "play"}
  assert _pitches("|: C D :| E", **play) == [C, D, C, D, E]
  # ':|' with no '|:' repeats from the start or from the last '||'.
  assert _pitches("C | D :| E || F :|", **play) == [C, D, C, D, E, FF, FF]
  assert _pitches("C :: D :|", **play) == [C, C, D, D]
  assert _pitches("|: C [1,2 D :|[3 E |", **play) == [C, D, C, D, C, E]
  assert _pitches("|: C [1 D :|[2 E :|[3 F |]", **play) == [
    C, D, C, E, C, FF,
  ]  # fmt: skip
  once = _pitches("|: C [1 D :|[2 E :|[3 F |]")
  assert once == [C, FF]
  # The last of several endings is kept even when it closes with ':|';
  # a lone first ending is dropped.
  assert _pitches("|: C |1 D :|2 E :|") == [C, E]
  assert _pitches("|: C |1 D :| E |") == [C, E]
  with pytest.raises(ValueError, match="repeats"):
    _tune("C", repeats="twice")


def test_only_the_first_voice_is_kept():
  body = "V:1\nC D |\nV:2\nE F |\nV:1\nG A |\n[V:2] B c |"
  tune = _tune(body, "M:2/4\nL:1/8\nV:1\nV:2\nK:C")
  assert [e.pitches[0] for e in tune.events] == [C, D, G, A]
  assert tune.counts["voices_dropped"] == 1


def test_pickup_is_an_incomplete_first_bar():
  header = "M:3/4\nL:1/8\nK:C"
  assert _tune("(3ABc | C6 | C6 |", header).pickup_quarters == F(1)
  assert _tune("|: z2 C2 | C6 |", header).pickup_quarters == F(2)
  assert _tune("C6 | C6 |", header).pickup_quarters == 0
  assert _tune("C2 | C6 |", "M:none\nL:1/8\nK:C").pickup_quarters == 0
  assert _tune("C2 D2", header).pickup_quarters == 0  # a single bar


# ----------------------------------------------------- events and songs


def test_quantize_events_as_a_midi_round_trip():
  events = _tune("z (3ABc d z z | e/4 f", "M:4/4\nL:1/8\nK:C").events
  assert events[0] == Event((), F(1, 2))  # leading rests are kept
  assert abc_reader.quantize_events(events, 12) == [
    Event((A,), F(1, 3)),
    Event((B,), F(1, 3)),
    Event((72,), F(1, 3)),
    Event((74,), F(1, 2)),
    Event((), F(1)),
    Event((76,), F(1, 6)),  # 1/8 of a quarter rounds to 2 of 12 steps
    Event((77,), F(1, 2)),
  ]
  song = _tune("z C D z", "M:3/4\nL:1/4\nK:Em\nQ:90").to_song()
  assert song.start_quarters == 1 and song.time_signature == (3, 4)
  assert song.key_signature == "Em" and song.tempo_bpm == 90
  assert song.events == [Event((C,), F(1)), Event((D,), F(1))]


def test_counts_of_constructs():
  tune = _tune('"C"A>B (3cde [CE] {g}f- f | g2 :|')
  expected = {
    "chord_symbols": 1,
    "broken_rhythm": 1,
    "tuplets": 1,
    "chords": 1,
    "grace_notes": 1,
    "ties": 1,
    "repeats": 1,
  }
  assert {k: tune.counts[k] for k in expected} == expected
  assert isinstance(tune.counts, collections.Counter)


# --------------------------------------------------------------- errors


@pytest.mark.parametrize(
  "text, construct",
  [
    ("X:1\nK:C\nA [CE B\n", "chord"),
    ("X:1\nK:C\nA {ga B\n", "grace notes"),
    ('X:1\nK:C\nA "Am B\n', "quoted string"),
    ("X:1\nL:x\nK:C\nA\n", "L: field"),
    ("X:1\nM:waltz\nK:C\nA\n", "M: field"),
    ("X:1\nT:no key\nA B\n", "K: field"),
    ("X:1\nT:no key\n", "K: field"),
    ("X:1\nK:C\nz4 |\n", "tune"),
    ("X:1\nK:C\n(0ABC\n", "tuplet"),
    ("X:1\nK:C\n(12ABC\n", "tuplet"),
    ("X:1\nK:C\nA/0\n", "note length"),
    ("X:1\nK:C\nc''''''\n", "note"),
    ("X:1\nK:C\nA [99 B\n", "ending"),
    ("X:1\nK:C\nA9999999\n", "note length"),
  ],
)
def test_unreadable_tunes_raise_abc_error(text, construct):
  with pytest.raises(abc_reader.AbcError) as info:
    abc_reader.read_tune(text)
  assert info.value.construct == construct
  assert "\n" not in str(info.value)
  assert isinstance(info.value, errors.CorpusError)


def test_error_names_line_and_column():
  with pytest.raises(abc_reader.AbcError, match=r"line 4, column 4: chord"):
    abc_reader.read_tune("X:1\nM:2/4\nK:C\nAB [CE\n")


_ALPHABET = "ABCDEFGabcdefgzxZ^_=,'/0123456789|:[]{}()<>-!+\"%.~HTuvKLMy &\\\n "
_SEEDS = [
  REPEATED,
  '"Am"(3ABc [CE]2 {g}A>B c-c | Z2 | x2 [K:D] ^f [L:1/16] f//',
  "V:1\nA B :: C [1,2 D :|[3 E |]\nV:2\nF G\nK:Bb\nB",
]


def test_fuzzed_tunes_raise_only_abc_error():
  rng = random.Random(0)
  deadline = time.monotonic() + 3.0
  tried = 0
  while time.monotonic() < deadline:
    body = list(rng.choice(_SEEDS))
    for _ in range(rng.randint(1, 8)):
      i = rng.randrange(len(body) + 1)
      action = rng.random()
      if action < 0.4:
        body.insert(i, rng.choice(_ALPHABET))
      elif action < 0.7 and body:
        del body[min(i, len(body) - 1)]
      elif body:
        body[min(i, len(body) - 1)] = rng.choice(_ALPHABET)
    header = rng.choice(["M:6/8\nL:1/8\nK:G", "M:C|\nK:Hp", "K:none", ""])
    text = f"X:1\n{header}\n{''.join(body)}\n"
    for repeats in abc_reader.REPEAT_POLICIES:
      try:
        abc_reader.read_tune(text, repeats=repeats, german_keys=True)
      except abc_reader.AbcError:
        pass
    tried += 1
  assert tried > 100


# ------------------------------------------------------------ The Session


_ROWS = [
  {
    "tune_id": "1",
    "setting_id": "11",
    "name": "Cooley's",
    "type": "reel",
    "meter": "4/4",
    "mode": "Edorian",
    "abc": "|:D2|EBBA B2 EB|B2 AB dBAG|\r\nFDAD BDAD|FDAD dAFD:|",
    "date": "2001-05-14 18:44:05",
    "username": "Jeremy",
  },
  {
    "tune_id": "2",
    "setting_id": "12",
    "name": "The Kesh",
    "type": "jig",
    "meter": "6/8",
    "mode": "Gmajor",
    "abc": "|:GAG GAB|!trill!A2B AGE!GAG GAB|",
    "date": "2001-05-14 18:44:05",
    "username": "Jeremy",
  },
  {
    "tune_id": "3",
    "setting_id": "13",
    "name": "Broken",
    "type": "polka",
    "meter": "2/4",
    "mode": "Aminor",
    "abc": "A [CE B",
    "date": "",
    "username": "",
  },
]


def _check_session(tunes):
  cooley, kesh, broken = tunes
  assert (cooley.tune_id, cooley.setting_id, cooley.type) == (1, 11, "reel")
  assert cooley.tune.mode == "dorian" and cooley.tune.meter == (4, 4)
  assert cooley.tune.unit == F(1, 8) and cooley.tune.title == "Cooley's"
  assert cooley.tune.pickup_quarters == 1
  assert [p for e in cooley.tune.events for p in e.pitches][:4] == [
    62, 64, 71, 71,
  ]  # fmt: skip
  assert "K:Edor\n" in cooley.abc and "\r" not in cooley.abc
  assert kesh.tune.counts["decorations"] == 1
  assert "AGE\nGAG" in kesh.abc
  assert [e.pitches[0] for e in kesh.tune.events][-3:] == [67, 69, 71]
  assert broken.tune is None and "chord" in broken.error


def test_session_csv_and_json(tmp_path):
  csv_path = tmp_path / "tunes.csv"
  with open(csv_path, "w", newline="", encoding="utf-8") as f:
    writer = csv.DictWriter(f, fieldnames=list(_ROWS[0]))
    writer.writeheader()
    writer.writerows(_ROWS)
  _check_session(abc_session.read_session(csv_path))
  json_path = tmp_path / "tunes.json"
  json_path.write_text(json.dumps(_ROWS), encoding="utf-8")
  _check_session(abc_session.read_session(json_path))
  old = [{("tune" if k == "tune_id" else k): v for k, v in _ROWS[0].items()}]
  json_path.write_text(json.dumps(old), encoding="utf-8")
  assert abc_session.read_session(json_path)[0].tune_id == 1


def test_session_files_of_another_layout(tmp_path):
  path = tmp_path / "tunes.json"
  path.write_text(json.dumps([{"name": "x"}]), encoding="utf-8")
  with pytest.raises(errors.CorpusError, match="lacks the column"):
    abc_session.read_session(path)
  path.write_text("{not json", encoding="utf-8")
  with pytest.raises(errors.CorpusError, match="layout"):
    abc_session.read_session(path)
  with pytest.raises(errors.CorpusError):
    abc_session.read_session(tmp_path / "missing.csv")
  assert abc_session.key_field("F#minor") == "F#m"
  assert abc_session.key_field("Bbmixolydian") == "Bbmix"


# ------------------------------------------- real tunes against music21


def _spread(items, n):
  return [items[i * len(items) // n] for i in range(n)]


@pytest.mark.parametrize("corpus, count", [("esac", 24), ("oneills", 16)])
def test_real_tunes_read_as_the_music21_path(corpus, count):
  pytest.importorskip("music21")
  from benchmarks import bench_abc

  tunes = _spread(bench_abc.list_tunes(corpus, None), count)
  identical = 0
  for tune in tunes:
    record = bench_abc.music21_record(tune, corpus)
    found = bench_abc.compare_tune(tune, record, corpus)
    identical += found is None
    # Where they differ, music21 misread the text (bench_abc.MUSIC21_BUGS).
    assert found is None or found["reason"].startswith("music21 wrong"), (
      tune.relpath,
      found,
    )
  assert identical == count if corpus == "esac" else identical >= count // 2


def test_a_stray_header_line_is_skipped_and_counted():
  """Aird's Airs writes '3/8=120' for 'Q:3/8=120' and 'I :: ::' before K:."""
  tune = abc_reader.read_tune("X:1\nM:3/8\n3/8=120\nI :: ::\nK:D\nd2e|f3|]\n")
  assert tune.counts["header_lines_skipped"] == 2
  assert [e.pitches for e in tune.events] == [(74,), (76,), (78,)]


def test_a_chord_broken_across_lines_is_joined():
  """miscFolk's American fife tunes break '[f3a' ... "c']" over a line."""
  tune = abc_reader.read_tune("X:1\nM:3/4\nL:1/8\nK:D\nd2 [f3a\n] g|a6|]\n")
  assert tune.counts["chords_across_lines"] == 1
  assert [e.pitches for e in tune.events[:2]] == [(74,), (78, 81)]
