"""ABC notation of melodies (listening/abc.py), read back by music21.

music21 is an independent ABC reader: what it reads from our text must be
the events we wrote, for test-made melodies with every feature (triplets,
ties over bar lines, chords, rests, accidentals in every key) and for real
ESAC tunes (ABC -> MIDI -> events -> our ABC -> music21 -> events).
"""

import random
import warnings
from fractions import Fraction as F

import pytest

from melodyjax import errors
from melodyjax.listening import abc
from melodyjax.music import midi_io
from melodyjax.music.events import Event

pytest.importorskip("music21")


def read_abc(text: str) -> list[Event]:
  """The events music21 reads from one ABC tune.

  Tied notes become one event, as do neighbouring rests. music21 keeps no
  tie on a chord ('[C-E-]' reads as two chords), so a chord's tie is taken
  from its ABC token, which music21's own tokenizer gives.
  """
  from music21 import abcFormat, chord, harmony
  from music21.abcFormat import translate

  handler = abcFormat.ABCHandler()
  handler.process(text)
  assert handler.abcVersion == (2, 1, 0)  # accidentals carry in the bar
  chord_ties = [
    "-" in token.src
    for token in handler.tokens
    if isinstance(token, abcFormat.ABCChord)
  ]
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    score = translate.abcToStreamScore(handler)
  events: list[Event] = []
  tied = False
  for element in score.flatten().notesAndRests:
    if isinstance(element, harmony.ChordSymbol):
      continue
    quarters = F(element.quarterLength).limit_denominator(48)
    pitches = tuple(sorted(int(p.ps) for p in element.pitches))
    if isinstance(element, chord.Chord):
      ties_on = chord_ties.pop(0)
    else:
      ties_on = element.tie is not None and element.tie.type != "stop"
    joined = events and (
      (tied and events[-1].pitches == pitches)
      or (not pitches and not events[-1].pitches)
    )
    if joined:
      events[-1] = Event(pitches, events[-1].quarters + quarters)
    else:
      events.append(Event(pitches, quarters))
    tied = ties_on
  assert not chord_ties
  return events


def bar_lengths(text: str) -> list[F]:
  """The length of each bar music21 reads, in quarter notes (music21 makes
  no bars of a tune of one or two bars)."""
  from music21 import converter, stream

  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    score = converter.parse(text, format="abc")
  return [
    F(m.duration.quarterLength).limit_denominator(48)
    for m in score.recurse().getElementsByClass(stream.Measure)
  ]


def n(*pairs) -> list[Event]:
  """Events from (pitch or pitches or None, quarters) pairs."""
  out = []
  for pitch, quarters in pairs:
    if pitch is None:
      pitches = ()
    elif isinstance(pitch, int):
      pitches = (pitch,)
    else:
      pitches = tuple(sorted(pitch))
    out.append(Event(pitches, F(quarters)))
  return out


MADE = {
  "triplets": n(
    (60, F(1, 3)), (62, F(1, 3)), (64, F(1, 3)), (65, 1),
    (67, F(2, 3)), (69, F(1, 3)), (71, F(1, 6)), (72, F(1, 6)),
    (74, F(2, 3)), (76, 2),
  ),
  "ties over bars": n((60, 3), (62, 3), (64, F(5, 2)), (65, F(3, 2)), (67, 6)),
  "chords": n(
    ((60, 64, 67), 1), ((62, 65, 69), 2), ((60, 64, 67), 2),
    ((59, 62, 67), F(1, 2)), (72, F(1, 2)), ((48, 55, 64, 72), 4),
  ),
  "rests": n(
    (None, F(1, 2)), (60, F(1, 2)), (None, 1), (62, F(1, 3)),
    (None, F(2, 3)), (64, 5), (None, 3), (65, 1),
  ),
  "accidentals": n(
    (66, F(1, 2)), (67, F(1, 2)), (66, F(1, 2)), (78, F(1, 2)),
    (65, F(1, 2)), (66, F(1, 2)), (70, 1), (71, 1), (70, 1), (58, 1),
    (61, 4), (61, 1), (73, 1), ((61, 65), 1), (61, 1), (60, 4),
  ),
  "piano range": n((21, 1), (108, 1), (24, F(1, 12)), (96, F(23, 12))),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(MADE))
@pytest.mark.parametrize(
  "time_signature,key,pickup",
  [
    ((4, 4), "C", 0),
    ((3, 4), "D", F(1, 2)),
    ((6, 8), "Bb", 1),
    ((2, 4), "F#m", 0),
    ((5, 8), "Ebm", F(1, 2)),
    ((2, 2), "C#", 0),
    ((9, 8), "Cb", F(3, 2)),
  ],
)
def test_made_songs_read_back_by_music21(name, time_signature, key, pickup):
  events = MADE[name]
  text = abc.to_abc(
    events,
    time_signature=time_signature,
    key_signature=key,
    pickup_quarters=pickup,
    title=name,
  )
  assert read_abc(text) == events, text
  bar = F(4 * time_signature[0], time_signature[1])
  lengths = bar_lengths(text)
  if lengths:
    assert lengths[0] == (pickup or bar), text
    assert set(lengths[1:-1]) <= {bar}, text


def test_random_melodies_read_back_by_music21():
  """Any durations of the 12- or 24-step grid, chords, rests, keys, metres."""
  rng = random.Random(15)
  keys = sorted(abc.parse_key.__globals__["_FIFTHS"])
  for trial in range(80):
    grid = 12 if trial % 2 else 24
    events = []
    for _ in range(rng.randint(1, 30)):
      quarters = F(rng.randint(1, 4 * grid), grid)
      draw = rng.random()
      if draw < 0.1 and events and events[-1].pitches:
        events.append(Event((), quarters))
      elif draw < 0.2:
        events.append(
          Event(tuple(sorted(rng.sample(range(40, 90), 3))), quarters)
        )
      else:
        events.append(Event((rng.randint(30, 100),), quarters))
    text = abc.to_abc(
      events,
      time_signature=rng.choice([(4, 4), (3, 4), (6, 8), (5, 8), (7, 8)]),
      key_signature=rng.choice(keys),
      pickup_quarters=rng.choice([0, F(1, 2), 1]),
    )
    assert read_abc(text) == events, text


def test_text_of_a_small_tune():
  events = n(
    (67, F(1, 2)), (72, 1), (74, F(1, 2)), (76, F(1, 2)), (78, F(3, 2)),
    (79, F(1, 2)), (77, F(1, 3)), (76, F(1, 3)), (74, F(1, 3)),
    ((60, 64), 3), (None, 1),
  )  # fmt: skip
  text = abc.to_abc(
    events,
    time_signature=(3, 4),
    key_signature="C",
    title="Small  tune",
    pickup_quarters=F(1, 2),
    tempo_bpm=96,
  )
  assert text == (
    "%abc-2.1\nX:1\nT:Small tune\nM:3/4\nL:1/8\nQ:1/4=96\nK:C\n"
    "G | c2 de ^f2- | ^fg (3=fed [C-E-]2 | [CE]4 z2 |]\n"
  )


def test_hornpipe_rhythm_on_the_24_grid_is_plain():
  """Dotted sixteenths and thirty-seconds (O'Neill's hornpipes) are plain
  note values, not tuplets."""
  dotted = [(72, F(3, 8)), (69, F(1, 8))] * 4
  text = abc.to_abc(n(*dotted), time_signature=(2, 4))
  assert "(3" not in text and "\nL:1/16\n" in text
  assert text.endswith("\nc3/2A/2c3/2A/2 c3/2A/2c3/2A/2 |]\n")
  assert read_abc(text) == n(*dotted)


def test_unit_length_follows_the_durations():
  assert abc.choose_unit(n((60, 1), (62, F(1, 2)))) == F(1, 8)
  assert abc.choose_unit(n((60, F(1, 4)), (62, F(1, 4)), (64, 1))) == F(1, 16)
  text = abc.to_abc(n((60, F(1, 4)), (62, F(1, 4)), (64, 1)))
  assert "\nL:1/16\n" in text and "CD C4" not in text and "E4 |]" in text


def test_lines_break_every_four_bars():
  text = abc.to_abc(n(*[(60, 4)] * 10))
  music = text.split("K:C\n")[1].splitlines()
  assert [line.count("|") for line in music] == [4, 4, 2]
  assert music[-1].endswith("|]")


def test_key_signatures():
  assert abc.parse_key("C").alterations == dict.fromkeys("CDEFGAB", 0)
  assert abc.parse_key("F#m").fifths == 3 and abc.parse_key("Bb").fifths == -2
  assert abc.parse_key(None).name == "C"
  assert abc.spell(70, abc.parse_key("F")) == ("B", -1, 4)
  assert abc.spell(60, abc.parse_key("C#")) == ("B", 1, 3)  # B sharp
  assert abc.spell(65, abc.parse_key("D")) == ("F", 0, 4)
  for bad in ("H", "Cmaj", "", "c"):
    with pytest.raises(errors.GenerateError, match="not a key"):
      abc.parse_key(bad or "?")


def test_bad_input_is_a_generate_error():
  with pytest.raises(errors.GenerateError, match="no metre"):
    abc.to_abc(n((60, 1)), time_signature=(3, 5))
  with pytest.raises(errors.GenerateError, match="MIDI range"):
    abc.to_abc(n((128, 1)))


def test_empty_melody():
  assert abc.to_abc([]).endswith("K:C\n|]\n")


def test_esac_tunes_read_back_by_music21():
  """40 ESAC tunes: ABC -> MIDI -> events -> our ABC -> music21: the same
  events, and the same bars (with the tune's pickup)."""
  from melodyjax.data.corpora import (
    abc_text,
    builtin,
  )

  pickups = 0
  for path in builtin.find_abc_files()[:5]:
    for tune in abc_text.read_abc_tunes(path)[:8]:
      result = builtin.convert_tune(tune.text, title=tune.title)
      song = midi_io.read_midi(result.midi)
      text = abc.to_abc(
        song.events,
        time_signature=song.time_signature,
        key_signature=song.key_signature,
        title=tune.title,
        pickup_quarters=result.pickup,
      )
      assert read_abc(text) == song.events, (tune.relpath, text)
      bar = F(4 * song.time_signature[0], song.time_signature[1])
      lengths = bar_lengths(text)
      assert len(lengths) > 2, text
      assert lengths[0] == (F(result.pickup) or bar), tune.relpath
      assert set(lengths[1:-1]) <= {bar}, (tune.relpath, text)
      pickups += result.pickup > 0
  assert pickups >= 5
