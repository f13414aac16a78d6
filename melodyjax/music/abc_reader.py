"""ABC text to note events without music21: the ABC that folk collections use.

No JAX, no MIDI. `read_tunebook` splits a file's text into tunes at X:
fields (lines before the first X:, the file header, are put in front of
every tune) and `read_tune` reads one into a `Tune`: its header fields,
key, meter, pickup and events (`music.events.Event`, durations exact in
quarter notes), with a `collections.Counter` of the constructs met.

Reading policy (what the music21 conversion of `data.esac` gives, where it
is right):
- Header: X: T: M: L: K: Q: (P: V: R: and the rest are kept in
  `Tune.fields`); the first K: line ends it, and a line before it that is
  no field ('3/8=120' for 'Q:3/8=120') is skipped ('header_lines_skipped').
  Field lines after it and inline fields (`[K:D]`, `[M:3/4]`, `[L:1/16]`,
  `[V:2]`) change the key, meter, unit or voice from there on. Without
  L:, the unit is 1/16 when the meter's value is below 0.75, else 1/8.
  'M:C' is 4/4, 'M:C|' 2/2,
  'M:none' no meter; a meter with words around its numbers ('FREI4/4') is
  read from its numbers. 'Q:1/4=120', 'Q:3/8=50' and 'Q:120' (a quarter,
  as music21 reads it) give the tempo in quarter notes per minute.
- Keys: a tonic (`K:D`, `K:Bb`, `K:F#`) with an optional mode (`m`, `min`,
  `maj`, `ion`, `aeo`, `dor`, `phr`, `lyd`, `mix`, `loc`, any case, with or
  without a space), then explicit accidentals (`K:D =c ^g`, `exp` to drop the
  signature's own); `K:HP` (no signature) and `K:Hp` (F#, C#) for the
  highland pipes, `K:none`; German names (`K:H` = B, `K:Es` = Eb) with
  `german_keys=True`; an unknown mode word is read as major, as music21 does
  (counted as 'unknown_mode'); aeolian is minor and ionian major. Clef
  words are ignored.
- Accidentals `^ ^^ _ __ =` carry to the end of the bar (ABC 2.1). As in
  music21's ABC 2.1 mode they carry to the same letter in every octave
  (`propagate='pitch'`); `'octave'` carries them within the octave only,
  `'not'` not at all; a `%%propagate-accidentals` directive overrides.
  Accidentals of grace notes carry too (music21 does the same).
- Lengths: `A2 A/2 A/ A// A3/2 A3/`; broken rhythm `> < >> <<` (between
  the notes, chords or rests on either side, whatever decorations lie
  between; a note between two markers, 'a>b>c', takes the second one's
  factor only, as music21 reads it); tuplets `(3abc`, `(3:2:3`, `(p:q:r`
  (q from ABC's table, 3 for 5, 7 and 9 in a compound meter, else 2; r
  notes, rests or chords; grace notes do not count); ties `-` join a note
  to the next one of the same pitch; a tie between different pitches (a
  slur written as a tie) keeps both notes (counted as
  'ties_between_pitches'), and one after grace notes (`{c}-B`) ties
  nothing. Rests `z`, invisible rests `x`, multi-bar rests `Z4`, `X4`
  (bars of the current meter, 4/4 without one).
- Chords `[CEG]2` (and ABC 1's `+CEG+`; one broken across two lines is
  joined, 'chords_across_lines') give all their pitches, ascending,
  with the length of their first note times the length after the bracket;
  the caller applies its chord policy. A tie joins a chord to a following
  chord or note whose pitches it holds.
- Dropped or ignored: grace notes `{...}`, decorations (`~ . H L M O P S T u
  v`, `!trill!`, `+trill+`), quoted strings (`"Am"` chord symbols, `"^text"`
  annotations), slurs, spacers (`y`, back quotes), line continuations,
  comments, lyrics (w: W:), voices after the first one (V:), and the notes
  of a voice overlay (`&` to the bar's end). Symbols that mean nothing in
  ABC are counted as 'unknown_symbols' and skipped.
- Bar lines `| || |] [| :| |: :: .|`, endings `[1 [2 |1 |2 :|2 [1,3 [1-3`.
  `repeats='once'` (the corpora's policy, as `data.esac` plays them) plays
  each bar once and drops the endings that close with a repeat sign, except
  the last of a section's endings: each section is played once into its
  last ending. `repeats='play'` performs them as written: `|: A :|` plays A
  twice, `|: A [1 B :|[2 C |` plays A B A C, and a `:|` with no `|:`
  repeats from the start or from the last `||`, `|]` or `[|`.
- Pickup: the length in quarters of the first bar when the tune has a
  meter, more than one bar, and that bar is shorter than the meter's bar
  (else 0), as music21 pads its first measure.
- Events: rests are empty pitch tuples, consecutive rests are merged, and
  leading and trailing rests are kept (`Tune.to_song` and `quantize_events`
  drop them, as a MIDI round trip does).

A tune that cannot be read raises `AbcError` with a one-line reason naming
the construct and its line and column; no other exception comes out for any
text.
"""

from __future__ import annotations

import collections
import dataclasses
import fractions
import functools
import os
import re
from collections.abc import Iterator
from typing import NamedTuple

from melodyjax import errors
from melodyjax.music.events import Event, Song

Fraction = fractions.Fraction

REPEAT_POLICIES = ("once", "play")
PROPAGATION_POLICIES = ("pitch", "octave", "not")
MAX_DIGITS = 6  # longer numbers in a note length, tuplet or field are refused
MAX_ENDING = 16  # highest ending number (bounds the passes of a repeat)
MAX_PASSES_BARS = 200_000  # bars performed per tune at most

_LETTER_STEPS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_LETTER_FIFTHS = {"F": -1, "C": 0, "G": 1, "D": 2, "A": 3, "E": 4, "B": 5}
_SHARP_ORDER = "FCGDAEB"
_ACCIDENTALS = {"^": 1, "^^": 2, "_": -1, "__": -2, "=": 0}
_MODES = (  # (prefix of the word, lowercase; mode; fifths from major)
  ("maj", "major", 0),
  ("ion", "major", 0),
  ("mix", "mixolydian", -1),
  ("dor", "dorian", -2),
  ("aeo", "minor", -3),
  ("min", "minor", -3),
  ("phr", "phrygian", -4),
  ("loc", "locrian", -5),
  ("lyd", "lydian", 1),
)
_MAJOR_KEYS = "Cb Gb Db Ab Eb Bb F C G D A E B F# C#".split()
_MINOR_KEYS = "Ab Eb Bb F C G D A E B F# C# G# D# A#".split()
_GERMAN_KEYS = {
  "H": "B",
  "Es": "Eb",
  "As": "Ab",
  "Des": "Db",
  "Ges": "Gb",
  "Fis": "F#",
  "Cis": "C#",
  "Gis": "G#",
  "Dis": "D#",
  "Ais": "A#",
}
# Tuplet (p: default q) of ABC 2.1; None: 3 in a compound meter, else 2.
_TUPLET_Q = {1: 1, 2: 3, 3: 2, 4: 3, 5: None, 6: 2, 7: None, 8: 3, 9: None}

_TUNE_START = re.compile(r"^X:", re.MULTILINE)
_OPEN_CHORD = re.compile(r"\[[_=^A-Ga-g,'\d/.]*$")
_FIELD_LINE = re.compile(r"([A-Za-z]):(?!\|)(.*)")
_DIRECTIVE = re.compile(r"%%propagate-accidentals\s+(\w+)")
_KEY_TONIC = re.compile(r"([A-Ga-g])([#b]?)")
_KEY_ACCIDENTAL = re.compile(r"(\^\^|\^|__|_|=)([A-Ga-g])$")
_METER = re.compile(r"(\d+(?:\s*\+\s*\d+)*)\s*/\s*(\d+)", re.ASCII)
_LENGTH = re.compile(r"(\d*)(/*)(\d*)", re.ASCII)
_UNIT = re.compile(r"\s*(\d+)\s*(?:/\s*(\d+))?\s*", re.ASCII)
_CHORD_NOTE = re.compile(
  r"(\^\^|\^|__|_|=)?([A-Ga-g])([,']*)(\d*(?:/+\d*)?)"
  r"|([zx]\d*(?:/+\d*)?)|(\S)",
  re.ASCII,
)
_TOKEN = re.compile(
  r"""
  (?P<field>\[(?P<field_key>[A-Za-z]):(?P<field_value>[^\]\n]*)\])
  |(?P<bar>(?P<bar_sign>\.?:*\[?\|[|\]]?:*|::+|:(?![:|\d]))
     (?P<bar_ending>\[?\d+(?:[-,]\d+)*)?)
  |(?P<ending>\[(?P<ending_numbers>\d+(?:[-,]\d+)*))
  |(?P<chord>\[(?P<chord_body>[^\][|\n]*)\](?P<chord_length>\d*(?:/+\d*)?))
  |(?P<note>(?P<accidental>\^\^|\^|__|_|=)?(?P<pitch>[A-Ga-g])
     (?P<octave>[,']*)(?P<length>\d*(?:/+\d*)?))
  |(?P<rest>(?P<rest_kind>[zx])(?P<rest_length>\d*(?:/+\d*)?))
  |(?P<bar_rest>(?P<bar_rest_kind>[ZX])(?P<bar_rest_count>\d*))
  |(?P<tuplet>\((?P<tuplet_p>\d+)(?::(?P<tuplet_q>\d*))?(?::(?P<tuplet_r>\d*))?)
  |(?P<grace>\{(?P<grace_body>[^}\n]*)\})
  |(?P<quoted>"(?P<quoted_text>[^"\n]*)")
  |(?P<plus_chord>\+(?P<plus_body>(?:[_=^]*[A-Ga-g][,']*\d*(?:/+\d*)?){2,})\+)
  |(?P<decoration>![^!\s]*!|\+[^+\s]*\+|[.~HLMOPSTuv])
  |(?P<broken>[<>]+)
  |(?P<tie>-)
  |(?P<slur>[()])
  |(?P<overlay>&)
  |(?P<space>[\s`\\]+|y)
  |(?P<unclosed>[\[{"])
  |(?P<other>.)
  """,
  re.VERBOSE | re.ASCII,
)


class AbcError(errors.CorpusError):
  """A tune that cannot be read; the message names the construct and where.

  Attributes:
    construct: the construct that failed ('chord', 'K: field', ...).
    reason: what is wrong with it.
    line: its line in the tune's text, from 1 (0: unknown).
    column: its column, from 1 (0: unknown).
    tune: which tune of a tunebook ('' when read alone).
  """

  def __init__(
    self, construct: str, reason: str, line=0, column=0, tune: str = ""
  ):
    where = f"line {line}, column {column}: " if line else ""
    super().__init__(f"{tune}: " * bool(tune) + f"{where}{construct}: {reason}")
    self.construct = construct
    self.reason = reason
    self.line = line
    self.column = column
    self.tune = tune


@dataclasses.dataclass(frozen=True)
class Key:
  """A key field read.

  Attributes:
    tonic: 'D', 'Bb', 'F#'; None for K:none.
    mode: 'major', 'minor', 'dorian', 'phrygian', 'lydian', 'mixolydian',
      'locrian'; None for K:none.
    alterations: semitones per letter ('F': 1) of the signature.
    signature: the signature in mido's spelling ('D', 'Em'; a mode's
      relative major, as music21 writes it); None for K:none or beyond
      seven sharps or flats.
  """

  tonic: str | None
  mode: str | None
  alterations: tuple[tuple[str, int], ...]
  signature: str | None


class PlayedBar(NamedTuple):
  """One bar as performed (`Tune.bars`).

  Attributes:
    meter: the meter an inline or body field sets in it, else None.
    lengths: its notes', chords' and rests' lengths as written (before ties
      join them), in quarter notes.
    sounding: for each of them, whether it is a note or chord (not a rest).
  """

  meter: tuple[int, int] | None
  lengths: tuple[Fraction, ...]
  sounding: tuple[bool, ...] = ()

  @property
  def quarters(self) -> Fraction:
    return sum(self.lengths, Fraction(0))


@dataclasses.dataclass
class Tune:
  """One tune read.

  Attributes:
    title: the first T: field ('' if none).
    number: the X: number (None if missing).
    meter: the first meter (numerator, denominator), None for 'M:none' or
      no M: field.
    unit: the default note length (L:) as a fraction of a whole note.
    tonic: the first key's tonic ('D', 'Bb'), None for K:none.
    mode: the first key's mode ('major', 'minor', 'dorian', ...).
    key_signature: the first key's signature in mido's spelling ('D',
      'Em'), as `Song.key_signature` holds it.
    tempo_bpm: quarter notes per minute from Q:, None if not given.
    pickup_quarters: the length of an incomplete first bar, 0 if none.
    events: the events as performed (see the module docstring).
    counts: how often each construct was met.
    fields: every header field's values by letter ('R': ['reel']).
    meter_changes: later meters as (onset in quarters from the start,
      numerator, denominator), in performed order.
    bars: the bars as performed (`PlayedBar`), empty ones left out; their
      lengths add up to the events'.
  """

  title: str
  number: int | None
  meter: tuple[int, int] | None
  unit: Fraction
  tonic: str | None
  mode: str | None
  key_signature: str | None
  tempo_bpm: float | None
  pickup_quarters: Fraction
  events: list[Event]
  counts: collections.Counter
  fields: dict[str, list[str]]
  meter_changes: tuple[tuple[Fraction, int, int], ...] = ()
  bars: tuple[PlayedBar, ...] = ()

  def to_song(self) -> Song:
    """The tune as a `Song`: rests before the first note and after the last
    one dropped (the first note's onset is `start_quarters`), tempo 120
    when not given."""
    events = list(self.events)
    start = Fraction(0)
    while events and not events[0].pitches:
      start += events.pop(0).quarters
    while events and not events[-1].pitches:
      events.pop()
    return Song(
      events,
      self.tempo_bpm or 120.0,
      self.meter,
      self.key_signature,
      self.meter_changes,
      start,
    )


# ------------------------------------------------------------------ fields


def _error(construct: str, reason: str, line: int = 0, column: int = 0):
  return AbcError(construct, reason, line, column)


def _placed(error: AbcError, line: int, column: int) -> AbcError:
  """The error with a position, if it has none yet."""
  if error.line:
    return error
  return AbcError(error.construct, error.reason, line, column)


def _to_int(text: str, construct: str) -> int:
  if len(text) > MAX_DIGITS:
    raise _error(construct, f"number {text[:12]}... is too long")
  return int(text)


@functools.lru_cache(maxsize=1024)
def parse_length(text: str) -> Fraction:
  """A note length suffix to a multiple of the unit: '3/2' -> 3/2, '/' ->
  1/2, '//' -> 1/4, '' -> 1.

  Raises:
    AbcError: not a length, or a zero denominator.
  """
  match = _LENGTH.fullmatch(text)
  if match is None:
    raise _error("note length", f"cannot read {text!r}")
  numerator, slashes, denominator = match.groups()
  if len(slashes) > 8:
    raise _error("note length", f"too many slashes in {text!r}")
  top = _to_int(numerator, "note length") if numerator else 1
  if not slashes:
    return Fraction(top)
  bottom = 2 ** len(slashes)
  if denominator:
    bottom = _to_int(denominator, "note length") * 2 ** (len(slashes) - 1)
  if bottom == 0:
    raise _error("note length", f"zero denominator in {text!r}")
  return Fraction(top, bottom)


def parse_meter(text: str) -> tuple[tuple[int, int] | None, bool]:
  """An M: value to ((numerator, denominator) or None, free).

  'C' is 4/4, 'C|' 2/2, 'none' (or empty) no meter; '2+3/8' is 5/8; `free`
  is True when words surround the numbers ('FREI4/4').

  Raises:
    AbcError: no meter can be read.
  """
  value = text.strip()
  if not value or value.lower() == "none":
    return None, False
  if value == "C":
    return (4, 4), False
  if value == "C|":
    return (2, 2), False
  match = _METER.search(value)
  if match is None:
    raise _error("M: field", f"cannot read meter {value!r}")
  top = sum(_to_int(part, "M: field") for part in match.group(1).split("+"))
  bottom = _to_int(match.group(2), "M: field")
  if top == 0 or bottom == 0:
    raise _error("M: field", f"zero in meter {value!r}")
  return (top, bottom), match.group(0) != value


def parse_unit(text: str) -> Fraction:
  """An L: value to a fraction of a whole note ('1/8' -> 1/8).

  Raises:
    AbcError: not a positive fraction.
  """
  match = _UNIT.fullmatch(text)
  if match is None:
    raise _error("L: field", f"cannot read unit length {text.strip()!r}")
  top = _to_int(match.group(1), "L: field")
  bottom = _to_int(match.group(2), "L: field") if match.group(2) else 1
  if top == 0 or bottom == 0:
    raise _error("L: field", f"unit length {text.strip()!r} is not positive")
  return Fraction(top, bottom)


def parse_tempo(text: str) -> float | None:
  """A Q: value to quarter notes per minute; None if it has no number.

  'Q:1/4=120' -> 120, 'Q:3/8=50' -> 75, 'Q:"Allegro" 1/4 1/8=40' -> 60; a
  bare number is a quarter note's (as music21 reads it).
  """
  value = re.sub(r'"[^"]*"?', " ", text).strip()
  beats, equals, number = value.rpartition("=")
  if not equals:
    number, beats = value, "1/4"
  try:
    bpm = float(number.split()[0]) if number.split() else None
    quarters = sum(
      4 * Fraction(part) for part in beats.split() if "/" in part
    ) or Fraction(1)
  except (ValueError, ZeroDivisionError, OverflowError):
    return None
  if bpm is None or not 0 < bpm < 1e6:
    return None
  return float(bpm * quarters)


def _signature(fifths: int) -> tuple[tuple[str, int], ...]:
  """Semitones per letter of a signature of `fifths` sharps (< 0: flats)."""
  alterations = dict.fromkeys(_SHARP_ORDER, 0)
  order = _SHARP_ORDER if fifths > 0 else _SHARP_ORDER[::-1]
  step = 1 if fifths > 0 else -1
  for i in range(abs(fifths)):
    alterations[order[i % 7]] += step
  return tuple((k, v) for k, v in alterations.items() if v)


def _mido_name(fifths: int, minor: bool) -> str | None:
  if not -7 <= fifths <= 7:
    return None
  return _MINOR_KEYS[fifths + 7] + "m" if minor else _MAJOR_KEYS[fifths + 7]


def _key_tonic(value: str, german: bool) -> tuple[str, str, bool]:
  """(tonic name, rest of the value, whether a German name was used)."""
  if german:
    for name in sorted(_GERMAN_KEYS, key=len, reverse=True):
      if value.startswith(name):
        return _GERMAN_KEYS[name], value[len(name) :], True
  match = _KEY_TONIC.match(value)
  if match is None:
    raise _error("K: field", f"cannot read key {value!r}")
  letter, sign = match.groups()
  return letter.upper() + sign, value[match.end() :], False


def _key_mode(rest: str, counts: collections.Counter) -> tuple[str, int, str]:
  """(mode, fifths from major, rest after the mode word)."""
  words = rest.split(None, 1)
  stripped = rest.lstrip()
  if not words or _KEY_ACCIDENTAL.match(words[0]) or "=" in words[0]:
    return "major", 0, stripped
  word = words[0].lower()
  remainder = words[1] if len(words) > 1 else ""
  for prefix, mode, shift in _MODES:
    if word.startswith(prefix):
      return mode, shift, remainder
  if word.startswith("m"):
    return "minor", -3, remainder
  if word in ("exp", "bass", "treble", "alto", "tenor", "perc", "none"):
    return "major", 0, stripped
  counts["unknown_mode"] += 1
  return "major", 0, remainder


def parse_key(
  text: str, german_keys: bool = False, counts: collections.Counter = None
) -> Key:
  """A K: value to a `Key` (the forms are in the module docstring).

  Raises:
    AbcError: no tonic can be read.
  """
  counts = collections.Counter() if counts is None else counts
  value = re.sub(r'"[^"]*"?', " ", text).strip()
  if not value or value.lower().startswith("none"):
    return Key(None, None, (), None)
  if value[:2] in ("HP", "Hp") and not value[2:3].isalpha():
    fifths = 0 if value[:2] == "HP" else 2
    return Key("A", "mixolydian", _signature(fifths), _mido_name(fifths, False))
  tonic, rest, german = _key_tonic(value, german_keys)
  counts["german_keys"] += german
  mode, shift, rest = _key_mode(rest, counts)
  fifths = _LETTER_FIFTHS[tonic[0]] + 7 * {"#": 1, "b": -1}.get(tonic[1:], 0)
  fifths += shift
  if abs(fifths) > 14:
    raise _error("K: field", f"key {value!r} has more than 14 accidentals")
  alterations = dict(_signature(fifths))
  for word in rest.split():
    if word == "exp":
      alterations = {}
    elif match := _KEY_ACCIDENTAL.match(word):
      alterations[match.group(2).upper()] = _ACCIDENTALS[match.group(1)]
      counts["key_accidentals"] += 1
  return Key(
    tonic,
    mode,
    tuple(sorted(alterations.items())),
    _mido_name(fifths, mode == "minor"),
  )


# ----------------------------------------------------------------- reading


class _Note:
  """A note, chord or rest (pitches empty) as written, before ties."""

  __slots__ = ("pitches", "quarters", "tie", "broken")

  def __init__(self, pitches: tuple[int, ...], quarters: Fraction):
    self.pitches = pitches
    self.quarters = quarters
    self.tie = False
    self.broken = Fraction(1)  # the broken-rhythm factor in `quarters`


class _MeterMark:
  __slots__ = ("meter",)

  def __init__(self, meter: tuple[int, int]):
    self.meter = meter


class _Bar:
  """The music between two bar lines and what those bar lines say."""

  __slots__ = (
    "items",
    "start_repeat",
    "end_repeat",
    "section_end",
    "ending_start",
    "ending",
    "span",
    "last_in_group",
    "group_max",
  )

  def __init__(self):
    self.items: list = []
    self.start_repeat = False
    self.end_repeat = False
    self.section_end = False
    self.ending_start: frozenset[int] | None = None
    self.ending: frozenset[int] | None = None
    self.span = -1  # index of its ending span, -1: none
    self.last_in_group = False  # its span is the last of 2 or more endings
    self.group_max = 0  # the highest ending number of its endings

  def has_music(self) -> bool:
    return any(isinstance(item, _Note) for item in self.items)


def _ending_numbers(text: str) -> frozenset[int]:
  numbers = set()
  for part in text.strip("[").split(","):
    low, _, high = part.partition("-")
    first = _to_int(low, "ending")
    last = _to_int(high, "ending") if high else first
    if not 1 <= first <= last <= MAX_ENDING:
      raise _error("ending", f"ending {text!r} is not 1 to {MAX_ENDING}")
    numbers.update(range(first, last + 1))
  return frozenset(numbers)


class _Reader:
  """Reads the body of one tune into bars (`read_tune` drives it)."""

  def __init__(self, header: dict, options: dict, counts: collections.Counter):
    self.counts = counts
    self.german_keys = options["german_keys"]
    self.propagate = options["propagate"]
    self.meter = header["meter"]
    self.unit = header["unit"]
    self.alterations = dict(header["key"].alterations)
    self.bar_accidentals: dict = {}
    self.bars = [_Bar()]
    self.last: _Note | None = None  # the note a tie or '>' applies to
    self.broken: Fraction | None = None  # factor for the next note
    self.tuplet: tuple[Fraction, int] | None = None  # (ratio, notes left)
    self.overlay = False
    self.after_grace = False
    self.voice = header["voice"]
    self.kept_voice = header["voice"]
    self.dropped_voices: set[str] = set()
    self.tempo = header["tempo"]
    self.line = self.column = 0

  # -- fields

  def field(self, key: str, value: str) -> None:
    """A field line or inline field of the body."""
    if key == "V":
      voice = value.split()[0] if value.split() else ""
      if self.kept_voice is None:
        self.kept_voice = voice
      elif voice != self.kept_voice:
        self.dropped_voices.add(voice)
      self.voice = voice
      self.last = None
      return
    if not self.keeping():
      return
    if key == "K":
      key_read = parse_key(value, self.german_keys, self.counts)
      self.alterations = dict(key_read.alterations)
      self.counts["key_changes"] += 1
    elif key == "M":
      meter, _ = parse_meter(value)
      self.meter = meter
      if meter:
        self.bars[-1].items.append(_MeterMark(meter))
      self.counts["meter_changes"] += 1
    elif key == "L":
      self.unit = parse_unit(value)
      self.counts["unit_changes"] += 1
    elif key == "Q" and self.tempo is None:
      self.tempo = parse_tempo(value)
    elif key == "P":
      self.counts["parts"] += 1

  def keeping(self) -> bool:
    return self.voice is None or self.voice == self.kept_voice

  # -- notes

  def pitch(self, accidental, letter: str, octave: str, grace=False) -> int:
    """The MIDI pitch of a note; records its accidental for the bar."""
    upper = letter.upper()
    number = 60 + _LETTER_STEPS[upper] + (12 if letter.islower() else 0)
    number += 12 * (octave.count("'") - octave.count(","))
    carry = upper if self.propagate == "pitch" else (upper, number)
    if accidental:
      shift = _ACCIDENTALS[accidental]
      if self.propagate != "not":
        self.bar_accidentals[carry] = shift
    elif carry in self.bar_accidentals:
      shift = self.bar_accidentals[carry]
    else:
      shift = self.alterations.get(upper, 0)
    number += shift
    if not 0 <= number <= 127 and not grace:
      raise _error(
        "note",
        f"pitch {number} is outside MIDI's 0-127",
        self.line,
        self.column,
      )
    return number

  def add(self, pitches: tuple[int, ...], length: Fraction) -> None:
    """Appends a note, chord or rest of `length` units."""
    quarters = 4 * self.unit * length
    if self.tuplet is not None:
      ratio, left = self.tuplet
      quarters *= ratio
      self.tuplet = (ratio, left - 1) if left > 1 else None
    note = _Note(pitches, quarters)
    if self.broken is not None:
      note.quarters *= self.broken
      note.broken = self.broken
      self.broken = None
    self.bars[-1].items.append(note)
    self.last = note
    self.after_grace = False
    self.counts["notes" if pitches else "rests"] += 1

  def length(self, text: str) -> Fraction:
    return parse_length(text)

  def chord(self, body: str, outer: str) -> None:
    pitches = []
    first = None
    for match in _CHORD_NOTE.finditer(body):
      accidental, letter, octave, length, rest, other = match.groups()
      if letter:
        pitches.append(self.pitch(accidental, letter, octave))
        if first is None:
          first = self.length(length)
      elif other and other not in ".~HLMOPSTuv!+-":
        self.counts["unknown_symbols"] += 1
    self.counts["chords"] += 1
    if not pitches:
      self.counts["empty_chords"] += 1
      return
    self.add(tuple(sorted(set(pitches))), first * self.length(outer))

  def grace(self, body: str) -> None:
    self.after_grace = True  # a tie here would tie a grace note
    for match in _CHORD_NOTE.finditer(body):
      if match.group(2):
        self.pitch(match.group(1), match.group(2), match.group(3), grace=True)
        self.counts["grace_notes"] += 1

  def tuplet_start(self, p: str, q: str | None, r: str | None) -> None:
    notes = _to_int(p, "tuplet")
    time = _to_int(q, "tuplet") if q else _TUPLET_Q.get(notes, 0)
    if notes == 0 or (q and time == 0):
      raise _error("tuplet", f"a zero in ({p}:{q or ''}")
    if time == 0:  # not in ABC's table
      raise _error("tuplet", f"({p} needs its q: ({p}:q:r")
    if time is None:
      compound = self.meter and self.meter[0] % 3 == 0 and self.meter[0] > 3
      time = 3 if compound else 2
    count = _to_int(r, "tuplet") if r else notes
    if count:
      self.tuplet = (Fraction(time, notes), count)
    self.counts["tuplets"] += 1

  def broken_rhythm(self, marks: str) -> None:
    if self.last is None or len(set(marks)) > 1 or len(marks) > 3:
      self.counts["broken_rhythm_ignored"] += 1
      return
    short = Fraction(1, 2 ** len(marks))
    long = 2 - short
    left, right = (long, short) if marks[0] == ">" else (short, long)
    # A note between two markers ('a>b>c') takes the second one's factor
    # only, as music21 reads it.
    self.last.quarters *= left / self.last.broken
    self.last.broken = left
    self.broken = right
    self.counts["broken_rhythm"] += 1

  def bar_rest(self, count: str) -> None:
    bars = _to_int(count, "multi-bar rest") if count else 1
    meter = self.meter or (4, 4)
    self.last = None
    quarters = Fraction(4 * bars * meter[0], meter[1])
    if quarters:
      note = _Note((), quarters)
      self.bars[-1].items.append(note)
    self.counts["multi_bar_rests"] += 1

  # -- bars

  def bar_line(self, sign: str, ending: str | None) -> None:
    """Closes the current bar and opens the next one."""
    self.bar_accidentals = {}
    self.overlay = False
    if sign in (":", ".|"):
      self.counts["dotted_bars"] += 1
      sign = "|"
    current = self.bars[-1]
    closing = current if current.has_music() or len(self.bars) == 1 else None
    if not current.has_music() and len(self.bars) > 1:
      closing = self.bars[-2]
    if closing is not None:
      if sign.lstrip(".").startswith(":"):
        closing.end_repeat = True
        self.counts["repeats"] += 1
      if "||" in sign or "|]" in sign or "[|" in sign:
        closing.section_end = True
    if current.has_music():
      current = _Bar()
      self.bars.append(current)
    if sign.endswith(":") and sign != ":":
      current.start_repeat = True
      self.counts["repeats"] += 1
    if ending:
      self.ending(ending)

  def ending(self, text: str) -> None:
    current = self.bars[-1]
    if current.has_music():
      self.bar_accidentals = {}
      current = _Bar()
      self.bars.append(current)
    current.ending_start = _ending_numbers(text)
    self.counts["endings"] += 1


def _read_line(reader: _Reader, text: str) -> None:
  """Reads one music line (comment removed) into `reader`."""
  counts = reader.counts
  for match in _TOKEN.finditer(text):
    kind = match.lastgroup
    reader.column = match.start() + 1
    if kind == "space":
      counts["spacers"] += match.group() == "y"
      continue
    if kind == "field":
      counts["inline_fields"] += 1
      reader.field(match.group("field_key"), match.group("field_value"))
      continue
    if not reader.keeping():
      continue
    if reader.overlay and kind not in ("bar", "ending"):
      continue
    if kind == "note":
      pitch = reader.pitch(*match.group("accidental", "pitch", "octave"))
      reader.add((pitch,), reader.length(match.group("length")))
    elif kind == "bar":
      reader.bar_line(match.group("bar_sign"), match.group("bar_ending"))
    elif kind == "tie":
      if reader.after_grace:
        counts["ties_from_grace_notes"] += 1
      elif reader.last is not None and reader.last.pitches:
        reader.last.tie = True
        counts["ties"] += 1
    elif kind in _SIMPLE:
      _SIMPLE[kind](reader, match)
    elif kind == "unclosed":
      raise _error(
        _UNCLOSED[match.group()][0],
        f"no closing {_UNCLOSED[match.group()][1]}",
        reader.line,
        reader.column,
      )
    else:
      counts["unknown_symbols"] += 1


def _rest(reader: _Reader, match: re.Match) -> None:
  reader.add((), reader.length(match.group("rest_length")))
  if match.group("rest_kind") == "x":
    reader.counts["invisible_rests"] += 1


def _quoted(reader: _Reader, match: re.Match) -> None:
  text = match.group("quoted_text")
  is_annotation = text[:1] in ("^", "_", "<", ">", "@")
  reader.counts["annotations" if is_annotation else "chord_symbols"] += 1


def _plus_chord(reader: _Reader, match: re.Match) -> None:
  body = match.group("plus_body")
  if re.fullmatch(r"[pf]+", body):  # a dynamic (+ff+), not a chord
    reader.counts["decorations"] += 1
    return
  reader.counts["plus_chords"] += 1
  reader.chord(body, "")


def _overlay(reader: _Reader, match: re.Match) -> None:
  reader.overlay = True
  reader.counts["voice_overlays"] += 1


_SIMPLE = {
  "rest": _rest,
  "chord": lambda r, m: r.chord(m.group("chord_body"), m.group("chord_length")),
  "ending": lambda r, m: r.ending(m.group("ending_numbers")),
  "bar_rest": lambda r, m: r.bar_rest(m.group("bar_rest_count")),
  "tuplet": lambda r, m: r.tuplet_start(
    *m.group("tuplet_p", "tuplet_q", "tuplet_r")
  ),
  "grace": lambda r, m: r.grace(m.group("grace_body")),
  "plus_chord": _plus_chord,
  "quoted": _quoted,
  "decoration": lambda r, m: r.counts.update(decorations=1),
  "broken": lambda r, m: r.broken_rhythm(m.group("broken")),
  "slur": lambda r, m: r.counts.update(slurs=m.group() == "("),
  "overlay": _overlay,
}
_UNCLOSED = {
  "[": ("chord", "']'"),
  "{": ("grace notes", "'}'"),
  '"': ("quoted string", "'\"'"),
}


# ------------------------------------------------------------------ header


def _read_header(lines: list[str], options: dict, counts) -> tuple[dict, int]:
  """The header's fields up to the first K: line; (header, body start)."""
  fields: dict[str, list[str]] = {}
  for index, line in enumerate(lines):
    directive = _DIRECTIVE.match(line)
    if directive and directive.group(1) in PROPAGATION_POLICIES:
      options["propagate"] = directive.group(1)
    code = line.split("%", 1)[0].strip()
    if not code or code.startswith("+:"):
      continue
    match = _FIELD_LINE.match(code)
    if match is None:
      # A stray line ('3/8=120' for 'Q:3/8=120', in Aird's Airs): skipped.
      counts["header_lines_skipped"] += 1
      continue
    letter, value = match.group(1), match.group(2).strip()
    fields.setdefault(letter, []).append(value)
    if letter == "K":
      try:
        return _header(fields, options, counts), index + 1
      except AbcError as e:
        raise _placed(e, index + 1, 1) from None
  raise _error("K: field", "missing (it ends the header)")


def _header(fields: dict, options: dict, counts) -> dict:
  """Meter, unit, key, tempo and first voice of the header's fields."""
  meter, free = parse_meter(fields["M"][-1]) if "M" in fields else (None, 0)
  counts["free_meter"] += free
  if "L" in fields:
    unit = parse_unit(fields["L"][-1])
  elif meter and Fraction(*meter) < Fraction(3, 4):
    unit = Fraction(1, 16)
  else:
    unit = Fraction(1, 8)
  tempo = parse_tempo(fields["Q"][-1]) if "Q" in fields else None
  voices = [v.split()[0] for v in fields.get("V", []) if v.split()]
  number = re.match(r"\s*(\d{1,9})", fields["X"][0]) if "X" in fields else None
  return {
    "fields": fields,
    "meter": meter,
    "unit": unit,
    "key": parse_key(fields["K"][-1], options["german_keys"], counts),
    "tempo": tempo,
    "voice": voices[0] if voices else None,
    "number": int(number.group(1)) if number else None,
  }


def _read_body(reader: _Reader, lines: list[str], start: int) -> None:
  """Reads the body's lines (from index `start`) into `reader`'s bars."""
  index = start - 1
  while (index := index + 1) < len(lines):
    reader.line, reader.column = index + 1, 1
    code = lines[index].split("%", 1)[0]
    if not code.strip():
      continue
    match = _FIELD_LINE.match(code)
    # A chord broken across lines ('[f3a' then "c']"), as music21 reads it.
    while (
      match is None
      and _OPEN_CHORD.search(code.rstrip())
      and index + 1 < len(lines)
      and not _FIELD_LINE.match(lines[index + 1])
    ):
      index += 1
      code = code.rstrip() + lines[index].split("%", 1)[0]
      reader.counts["chords_across_lines"] += 1
    try:
      if match is None:
        _read_line(reader, code)
      else:
        reader.counts["field_lines"] += 1
        reader.field(match.group(1), match.group(2).strip())
    except AbcError as e:
      raise _placed(e, reader.line, reader.column) from None
  while len(reader.bars) > 1 and not reader.bars[-1].has_music():
    last = reader.bars.pop()
    reader.bars[-1].end_repeat |= last.end_repeat
  reader.counts["voices_dropped"] = len(reader.dropped_voices)


# ----------------------------------------------------------------- repeats


def _mark_endings(bars: list[_Bar]) -> None:
  """Sets each bar's ending (numbers), span (which ending it is in) and
  what it needs of the group of consecutive endings its span belongs to.

  An ending runs from its start to the bar closing with a repeat sign or a
  section end (both included), or to the next ending or repeat start.
  """
  current, span, spans = None, -1, 0
  groups: list[list[_Bar]] = []
  previous_in_ending = False
  for bar in bars:
    if bar.ending_start is not None:
      current, span, spans = bar.ending_start, spans, spans + 1
      if not previous_in_ending:
        groups.append([])
    elif bar.start_repeat:
      current = None
    bar.ending = current
    bar.span = span if current is not None else -1
    if current is not None:
      groups[-1].append(bar)
    previous_in_ending = current is not None
    if current is not None and (bar.end_repeat or bar.section_end):
      current = None
  for group in groups:
    highest = max(max(bar.ending) for bar in group)
    lone = group[0].span == group[-1].span  # the bars after it: the 2nd
    for bar in group:
      bar.group_max = max(highest, 2) if lone else highest
      bar.last_in_group = bar.span == group[-1].span and not lone


def _play_once(bars: list[_Bar], counts) -> list[_Bar]:
  """The bars performed: each once; endings closing with a repeat sign are
  dropped."""
  last = {}
  for bar in bars:
    if bar.span >= 0:
      last[bar.span] = bar
  dropped = {
    span
    for span, bar in last.items()
    if bar.end_repeat and not bar.last_in_group
  }
  performed = []
  for bar in bars:
    if bar.span in dropped:
      counts["ending_bars_dropped"] += 1
    else:
      performed.append(bar)
  return performed


def _play_repeats(bars: list[_Bar], counts) -> list[_Bar]:
  """The bars performed, repeats and endings as written (see the module
  docstring)."""
  performed: list[_Bar] = []
  i = start = 0
  passno, explicit, jumped, in_ending, played = 1, False, False, False, 0
  while i < len(bars):
    bar = bars[i]
    if in_ending and bar.ending is None and passno > 1:
      start, passno, explicit = i, 1, False  # past the last ending
    in_ending = bar.ending is not None
    if bar.start_repeat and not jumped:
      start, passno, explicit = i, 1, True
    jumped = False
    if bar.ending is not None and passno not in bar.ending:
      i += 1
      continue
    performed.append(bar)
    played += 1
    if played > MAX_PASSES_BARS:
      raise _error("repeats", f"more than {MAX_PASSES_BARS} bars performed")
    if bar.end_repeat:
      passes = bar.group_max if bar.ending else 2
      if passno < passes:
        passno, i, jumped, in_ending = passno + 1, start, True, False
        counts["repeats_played"] += 1
        continue
      start, passno, explicit = i + 1, 1, False
    elif bar.section_end and not explicit:
      start, passno = i + 1, 1
    i += 1
  return performed


# ------------------------------------------------------------------ events


def _to_events(items: list, meter, counts) -> tuple[list[Event], tuple]:
  """Performed notes to events: ties joined, rests merged; and the meter
  changes as (onset, numerator, denominator)."""
  events: list[Event] = []
  changes = []
  onset = Fraction(0)
  tied = False
  for item in items:
    if isinstance(item, _MeterMark):
      if item.meter != meter:
        changes.append((onset, *item.meter))
        meter = item.meter
      continue
    if item.quarters <= 0:
      counts["zero_lengths"] += 1
      continue
    previous = events[-1] if events else None
    if tied and item.pitches and set(item.pitches) <= set(previous.pitches):
      events[-1] = Event(previous.pitches, previous.quarters + item.quarters)
    elif not item.pitches and previous and not previous.pitches:
      events[-1] = Event((), previous.quarters + item.quarters)
    else:
      if tied and item.pitches:
        counts["ties_between_pitches"] += 1
      events.append(Event(item.pitches, item.quarters))
    onset += item.quarters
    tied = item.tie
  return events, tuple(changes)


def _played_bar(bar: _Bar) -> PlayedBar:
  meters = [item.meter for item in bar.items if isinstance(item, _MeterMark)]
  notes = [
    item for item in bar.items if isinstance(item, _Note) and item.quarters > 0
  ]
  return PlayedBar(
    meters[0] if meters else None,
    tuple(note.quarters for note in notes),
    tuple(bool(note.pitches) for note in notes),
  )


def _pickup(bars: list[_Bar], meter) -> Fraction:
  """The first bar's length in quarters if shorter than the meter's bar."""
  if meter is None or len(bars) < 2:
    return Fraction(0)
  length = sum(
    (item.quarters for item in bars[0].items if isinstance(item, _Note)),
    Fraction(0),
  )
  return length if 0 < length < Fraction(4 * meter[0], meter[1]) else 0


def quantize_events(events: list[Event], grid: int) -> list[Event]:
  """Events as a MIDI file of them reads back on `grid` steps per quarter.

  As `midi_io.read_midi` quantizes: each note's onset and end are rounded
  to the grid, notes that round to no length are dropped, the gaps between
  notes become rests, and rests before the first and after the last note
  are dropped.
  """
  out: list[Event] = []
  onset = Fraction(0)
  last_end = None
  for event in events:
    start, onset = onset, onset + event.quarters
    if not event.pitches:
      continue
    first = (2 * grid * start + 1) // 2
    end = (2 * grid * onset + 1) // 2
    if end <= first:
      continue
    if last_end is not None and first > last_end:
      out.append(Event((), Fraction(first - last_end, grid)))
    out.append(Event(event.pitches, Fraction(end - first, grid)))
    last_end = end
  return out


# ------------------------------------------------------------------- tunes


def _check_options(repeats: str, propagate: str) -> None:
  if repeats not in REPEAT_POLICIES:
    raise ValueError(f"repeats must be one of {REPEAT_POLICIES}")
  if propagate not in PROPAGATION_POLICIES:
    raise ValueError(f"propagate must be one of {PROPAGATION_POLICIES}")


def read_tune(
  text: str,
  *,
  german_keys: bool = False,
  repeats: str = "once",
  propagate: str = "pitch",
) -> Tune:
  """Reads one tune (X: to the end of its music, or a header from K: on).

  Args:
    text: the tune's ABC text, the file header in front if any.
    german_keys: read German key names ('K:H' = B, 'K:Es' = Eb), as ESAC
      writes them.
    repeats: 'once' (each section once, into its last ending) or 'play'
      (repeats and endings performed as written).
    propagate: how far an accidental carries in its bar: 'pitch' (every
      octave, music21's ABC 2.1 mode), 'octave', or 'not'.

  Returns:
    The tune.

  Raises:
    AbcError: the tune cannot be read; the message says where and why.
    ValueError: an unknown `repeats` or `propagate` option.
  """
  _check_options(repeats, propagate)
  options = {"german_keys": german_keys, "propagate": propagate}
  counts: collections.Counter = collections.Counter()
  # Only CR and LF break lines (str.splitlines also breaks at U+0085 and
  # others, which ESAC's notes hold).
  lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
  header, start = _read_header(lines, options, counts)
  reader = _Reader(header, options, counts)
  _read_body(reader, lines, start)
  bars = reader.bars
  _mark_endings(bars)
  play = _play_once if repeats == "once" else _play_repeats
  performed = play(bars, counts)
  items = [item for bar in performed for item in bar.items]
  events, changes = _to_events(items, header["meter"], counts)
  if not any(event.pitches for event in events):
    raise _error("tune", "no notes")
  key = header["key"]
  titles = header["fields"].get("T", [])
  return Tune(
    title=titles[0] if titles else "",
    number=header["number"],
    meter=header["meter"],
    unit=header["unit"],
    tonic=key.tonic,
    mode=key.mode,
    key_signature=key.signature,
    tempo_bpm=reader.tempo,
    pickup_quarters=Fraction(_pickup(bars, header["meter"])),
    events=events,
    counts=+counts,
    fields=header["fields"],
    meter_changes=changes,
    bars=tuple(_played_bar(bar) for bar in performed if bar.items),
  )


def split_tunebook(text: str) -> list[str]:
  """Splits an ABC file's text into the texts of its tunes.

  A tune starts at an X: line; the lines before the first one (the file
  header) are put in front of every tune, as music21 does. Text without an
  X: line is one tune.
  """
  starts = [match.start() for match in _TUNE_START.finditer(text)]
  if not starts:
    return [text] if text.strip() else []
  header = text[: starts[0]] if text[: starts[0]].strip() else ""
  ends = starts[1:] + [len(text)]
  return [header + text[a:b] for a, b in zip(starts, ends, strict=True)]


def read_tunebook(
  text: str, *, skip_errors: bool = False, **options
) -> list[Tune]:
  """Reads every tune of an ABC file's text (`split_tunebook`, `read_tune`).

  Args:
    text: the file's text.
    skip_errors: leave out tunes that cannot be read instead of raising.
    **options: `read_tune`'s options (german_keys, repeats, propagate).

  Returns:
    The tunes in file order.

  Raises:
    AbcError: a tune cannot be read (unless skip_errors); the message
      starts with the tune's position in the file and its X: line.
  """
  tunes = []
  for index, tune_text in enumerate(split_tunebook(text)):
    try:
      tunes.append(read_tune(tune_text, **options))
    except AbcError as e:
      if not skip_errors:
        first = tune_text.lstrip().split("\n", 1)[0][:40]
        tune = f"tune {index + 1} ({first})"
        raise AbcError(e.construct, e.reason, e.line, e.column, tune) from None
  return tunes


def iter_tunebook(text: str, **options) -> Iterator[Tune | AbcError]:
  """Each tune of an ABC file's text, or the `AbcError` reading it raised."""
  for tune_text in split_tunebook(text):
    try:
      yield read_tune(tune_text, **options)
    except AbcError as e:
      yield e


def read_file(path: str | os.PathLike, **options) -> list[Tune]:
  """Reads every tune of an ABC file (UTF-8; see `read_tunebook`)."""
  with open(os.fspath(path), encoding="utf-8", errors="replace") as f:
    return read_tunebook(f.read(), **options)
