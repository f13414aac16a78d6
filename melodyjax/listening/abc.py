"""ABC 2.1 notation of one melody: events, metre and key -> a tune's text.

The text is what folk musicians share and what the audition page draws as a
staff (with abcjs): a header (X:, T:, M:, L:, Q:, K:), bar lines from the
metre (after an optional pickup bar), notes split at bar lines and tied,
triplets, rests (z), chords ([CEG]) and accidentals. No JAX, no MIDI.

Durations are on the corpus grid (12 or 24 steps per quarter note), so
thirds and sixths of a quarter occur. Each bar is cut into quarter-note
beats; a beat in which a note starts or ends at a third of a binary value
(1/3, 1/6, 1/12, ...) is written as a tuplet `(3:2:r`: its notes at 3/2 of
their length, played in 2/3 of the time. A length that is no single note
value (5/8, 9/16, ...) is written as tied notes.

Accidentals follow ABC 2.1: one carries to the end of its bar. Readers
disagree whether it carries to other octaves (music21 says yes, others no),
so a note gets an accidental whenever either reading would be wrong without
one, and no more often.
"""

from __future__ import annotations

import fractions
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

from melodyjax import errors
from melodyjax.music.events import Event

Fraction = fractions.Fraction

LETTERS = "CDEFGAB"
NATURAL_PCS = {0: "C", 2: "D", 4: "E", 5: "F", 7: "G", 9: "A", 11: "B"}
_LETTER_PC = {letter: pc for pc, letter in NATURAL_PCS.items()}
_SHARP_ORDER = "FCGDAEB"
# Sharps (> 0) or flats (< 0) of every key signature mido names.
_FIFTHS = {
  "Cb": -7, "Gb": -6, "Db": -5, "Ab": -4, "Eb": -3, "Bb": -2, "F": -1,
  "C": 0, "G": 1, "D": 2, "A": 3, "E": 4, "B": 5, "F#": 6, "C#": 7,
  "Abm": -7, "Ebm": -6, "Bbm": -5, "Fm": -4, "Cm": -3, "Gm": -2, "Dm": -1,
  "Am": 0, "Em": 1, "Bm": 2, "F#m": 3, "C#m": 4, "G#m": 5, "D#m": 6,
  "A#m": 7,
}  # fmt: skip
_ACCIDENTAL = {-2: "__", -1: "_", 0: "=", 1: "^", 2: "^^"}
# Note values a single note can have: plain, dotted, double dotted.
_SHAPES = (Fraction(1), Fraction(3, 2), Fraction(7, 4))
TRIPLET = Fraction(3, 2)  # written length / sounding length in a tuplet


class Key(NamedTuple):
  """A key signature as ABC writes it.

  Attributes:
    name: the K: field ('C', 'F#m', 'Bb').
    fifths: sharps (> 0) or flats (< 0) of the signature.
    alterations: semitones each letter is altered by the signature.
  """

  name: str
  fifths: int
  alterations: dict[str, int]


def parse_key(name: str | None) -> Key:
  """The key signature of a key name in mido's spelling ('C', 'F#m', 'Bb').

  Args:
    name: tonic letter, '#' or 'b', 'm' for minor (mido's key names); None
      is C.

  Raises:
    errors.GenerateError: the name is no key.
  """
  name = name or "C"
  if name not in _FIFTHS:
    raise errors.GenerateError(
      f"key signature {name!r} is not a key (e.g. 'C', 'F#m', 'Bb')"
    )
  fifths = _FIFTHS[name]
  alterations = dict.fromkeys(LETTERS, 0)
  order = _SHARP_ORDER if fifths > 0 else _SHARP_ORDER[::-1]
  for letter in order[: abs(fifths)]:
    alterations[letter] = 1 if fifths > 0 else -1
  return Key(name, fifths, alterations)


def spell(pitch: int, key: Key) -> tuple[str, int, int]:
  """(letter, alteration, octave) of a MIDI pitch in a key (60: C, 0, 4).

  Notes of the scale are spelled as the signature says; others as naturals
  when they are white keys, else sharps (flats in flat keys; B flat in C).
  """
  pc = pitch % 12
  for letter, alter in key.alterations.items():
    if (_LETTER_PC[letter] + alter) % 12 == pc:
      break
  else:
    if pc in NATURAL_PCS:
      letter, alter = NATURAL_PCS[pc], 0
    elif key.fifths < 0 or (key.fifths == 0 and pc == 10):
      letter, alter = NATURAL_PCS[(pc + 1) % 12], -1
    else:
      letter, alter = NATURAL_PCS[(pc - 1) % 12], 1
  natural = pitch - alter
  return letter, alter, natural // 12 - 1


def _pitch_text(letter: str, octave: int) -> str:
  """'C' for C4 (middle C), 'c' for C5, "c'" for C6, 'C,' for C3."""
  if octave >= 5:
    return letter.lower() + "'" * (octave - 5)
  return letter + "," * (4 - octave)


class _Accidentals:
  """The accidentals in force in the current bar, as readers differ.

  ABC 2.1 carries an accidental to the end of the bar; some readers carry
  it to every octave (music21), some to its own octave only; music21 reads
  a chord's notes with the key signature alone, and its chords set nothing
  for the notes after them. A mark is written whenever any of these
  readings would otherwise get the note wrong.
  """

  def __init__(self, key: Key):
    self.key = key
    self.reset()

  def reset(self) -> None:
    self.by_letter: dict[str, int] = {}
    self.by_octave: dict[tuple[str, int], int] = {}
    self.by_note: dict[str, int] = {}  # set by single notes only

  def mark(self, letter: str, alter: int, octave: int, in_chord: bool) -> str:
    """The accidental to write before this note ('' if none is needed)."""
    default = self.key.alterations[letter]
    readings = {
      self.by_letter.get(letter, default),
      self.by_octave.get((letter, octave), default),
      default if in_chord else self.by_note.get(letter, default),
    }
    self.by_letter[letter] = alter
    self.by_octave[(letter, octave)] = alter
    if readings == {alter}:
      return ""
    if not in_chord:
      self.by_note[letter] = alter
    return _ACCIDENTAL[alter]


# ---------------------------------------------------------------- rhythm


def split_value(written: Fraction) -> list[Fraction]:
  """Note values (plain, dotted, double dotted) that add up to `written`.

  Args:
    written: a written length in quarter notes, a binary fraction.

  Returns:
    The longest values first, e.g. 5/4 -> [1, 1/4].
  """
  parts = []
  while written > 0:
    best = Fraction(0)
    for shape in _SHAPES:
      value = shape * Fraction(2) ** _floor_log2(written / shape)
      if value <= written:
        best = max(best, value)
    parts.append(best)
    written -= best
  return parts


def _floor_log2(x: Fraction) -> int:
  k = x.numerator.bit_length() - x.denominator.bit_length()
  return k if Fraction(2) ** k <= x else k - 1


def _binary(x: Fraction) -> bool:
  """A time a plain note value reaches (1/4, 3/8, ...), not a tuplet's."""
  return x.denominator & (x.denominator - 1) == 0


class Segment(NamedTuple):
  """A stretch of a bar written one way: plain, or as one tuplet."""

  start: Fraction
  end: Fraction
  tuplet: bool


def bar_lines(
  total: Fraction, bar_quarters: Fraction, pickup_quarters: Fraction
) -> list[Fraction]:
  """Times of the bar lines from 0 to `total` (both included)."""
  lines = [Fraction(0)]
  time = pickup_quarters if 0 < pickup_quarters < bar_quarters else Fraction(0)
  time = time or bar_quarters
  while time < total:
    lines.append(time)
    time += bar_quarters
  return lines + [total] if total > 0 else lines


def segments(
  bar_start: Fraction, bar_end: Fraction, onsets: Sequence[Fraction]
) -> list[Segment]:
  """Cuts one bar into plain stretches and one-beat tuplets.

  A beat (a quarter note from the bar line) is a tuplet when a note starts
  inside it off the binary grid, or when the beat itself is not a binary
  length (a bar cut short). Neighbouring plain beats are joined.
  """
  found: list[Segment] = []
  start = bar_start
  while start < bar_end:
    end = min(start + 1, bar_end)
    inside = [t for t in onsets if start < t < end]
    tuplet = not _binary(end - start) or any(
      not _binary(t - start) for t in inside
    )
    if found and not tuplet and not found[-1].tuplet:
      found[-1] = Segment(found[-1].start, end, False)
    else:
      found.append(Segment(start, end, tuplet))
    start = end
  return found


class _Piece(NamedTuple):
  pitches: tuple[int, ...]
  onset: Fraction  # sounding time from the start, in quarter notes
  written: Fraction  # written length in quarter notes
  tied: bool  # tied to the next piece (same pitches)


def _pieces(
  events: Sequence[Event], cuts: Sequence[Segment]
) -> Iterator[tuple[int, _Piece]]:
  """(segment index, piece) of every event cut at the segments' bounds."""
  onset = Fraction(0)
  index = 0
  for event in events:
    end = onset + Fraction(event.quarters)
    time = onset
    while time < end:
      while cuts[index].end <= time:
        index += 1
      segment = cuts[index]
      stop = min(end, segment.end)
      length = (stop - time) * (TRIPLET if segment.tuplet else 1)
      values = split_value(length)
      position = time
      for k, value in enumerate(values):
        last = stop == end and k == len(values) - 1
        tied = bool(event.pitches) and not last
        yield index, _Piece(tuple(event.pitches), position, value, tied)
        position += value / (TRIPLET if segment.tuplet else 1)
      time = stop
    onset = end


# ------------------------------------------------------------------ text


def choose_unit(events: Iterable[Event]) -> Fraction:
  """The L: unit length in whole notes: 1/16 when most notes are shorter
  than an eighth, else 1/8."""
  lengths = [Fraction(e.quarters) for e in events]
  short = sum(1 for q in lengths if q < Fraction(1, 2))
  return Fraction(1, 16) if short * 2 > len(lengths) else Fraction(1, 8)


def length_text(written: Fraction, unit: Fraction) -> str:
  """'' for one unit, '2', '3/2', '/2' (written in quarter notes)."""
  n = written / (unit * 4)
  if n == 1:
    return ""
  if n.denominator == 1:
    return str(n.numerator)
  top = "" if n.numerator == 1 else str(n.numerator)
  return f"{top}/{n.denominator}"


def _token(
  piece: _Piece, unit: Fraction, key: Key, accidentals: _Accidentals
) -> str:
  length = length_text(piece.written, unit)
  if not piece.pitches:
    return "z" + length
  notes = []
  for pitch in piece.pitches:
    letter, alter, octave = spell(pitch, key)
    mark = accidentals.mark(letter, alter, octave, len(piece.pitches) > 1)
    # In a chord each note carries its tie, which more readers understand.
    tie = "-" if piece.tied and len(piece.pitches) > 1 else ""
    notes.append(mark + _pitch_text(letter, octave) + tie)
  if len(notes) == 1:
    return notes[0] + length + ("-" if piece.tied else "")
  return "[" + "".join(notes) + "]" + length


def beat_quarters(time_signature: tuple[int, int]) -> Fraction:
  """Beaming unit: a dotted quarter in 6/8, 9/8, 12/8; else a quarter."""
  numerator, denominator = time_signature
  if denominator == 8 and numerator % 3 == 0 and numerator > 3:
    return Fraction(3, 2)
  return Fraction(1)


def _bar_text(
  bar: Sequence[tuple[Segment, list[_Piece]]],
  bar_start: Fraction,
  beat: Fraction,
  unit: Fraction,
  key: Key,
  accidentals: _Accidentals,
) -> str:
  """The notes of one bar: beats apart by a space, tuplets grouped."""
  accidentals.reset()
  words: list[str] = []
  open_word = False  # the last word may take the next note (a beam)
  for segment, pieces in bar:
    if segment.tuplet:
      count = len(pieces)
      head = "(3" if count == 3 else f"(3:2:{count}"
      body = "".join(_token(p, unit, key, accidentals) for p in pieces)
      words.append(head + body)
      open_word = False
      continue
    for piece in pieces:
      token = _token(piece, unit, key, accidentals)
      on_beat = ((piece.onset - bar_start) / beat).denominator == 1
      if open_word and not on_beat:
        words[-1] += token
      else:
        words.append(token)
      open_word = piece.written < 1
  return " ".join(words)


def to_abc(
  events: Sequence[Event],
  *,
  time_signature: tuple[int, int] = (4, 4),
  key_signature: str | None = "C",
  title: str = "",
  number: int = 1,
  pickup_quarters: Fraction | float = 0,
  tempo_bpm: float | None = None,
  bars_per_line: int = 4,
) -> str:
  """Writes one melody as an ABC 2.1 tune.

  Args:
    events: the melody (notes, chords, rests), durations in quarter notes.
    time_signature: (numerator, denominator), the M: field and bar lines.
    key_signature: the K: field in mido's spelling ('C', 'F#m', 'Bb');
      None writes C.
    title: the T: field.
    number: the X: field.
    pickup_quarters: length of an incomplete first bar (anacrusis), in
      quarter notes; 0 for none.
    tempo_bpm: quarter notes per minute (the Q: field), or None.
    bars_per_line: bars on each line of music.

  Returns:
    The tune's text, starting with the version line `%abc-2.1`.

  Raises:
    errors.GenerateError: a bad key, time signature or pitch.
  """
  numerator, denominator = time_signature
  if numerator < 1 or denominator < 1 or denominator & (denominator - 1):
    raise errors.GenerateError(f"time signature {time_signature} is no metre")
  for event in events:
    if any(not 0 <= p <= 127 for p in event.pitches):
      raise errors.GenerateError(f"pitch out of MIDI range in {event}")
  key = parse_key(key_signature)
  events = [e for e in events if e.quarters > 0]
  unit = choose_unit(events)
  header = [
    "%abc-2.1",
    f"X:{number}",
    f"T:{' '.join(title.split())}",
    f"M:{numerator}/{denominator}",
    f"L:{unit.numerator}/{unit.denominator}",
  ]
  if tempo_bpm:
    header.append(f"Q:1/4={round(tempo_bpm)}")
  header.append(f"K:{key.name}")
  body = _music(
    events,
    Fraction(numerator * 4, denominator),
    Fraction(pickup_quarters).limit_denominator(48),
    beat_quarters(time_signature),
    unit,
    key,
    bars_per_line,
  )
  return "\n".join(header + body) + "\n"


def _music(
  events: Sequence[Event],
  bar_quarters: Fraction,
  pickup_quarters: Fraction,
  beat: Fraction,
  unit: Fraction,
  key: Key,
  bars_per_line: int,
) -> list[str]:
  """The lines of music: bars of notes, bar lines, the final |]."""
  onsets, time = [], Fraction(0)
  for event in events:
    onsets.append(time)
    time += Fraction(event.quarters)
  lines_at = bar_lines(time, bar_quarters, pickup_quarters)
  bars = []
  for start, end in zip(lines_at, lines_at[1:], strict=False):
    bars.append([(s, []) for s in segments(start, end, onsets)])
  cuts = [segment for bar in bars for segment, _ in bar]
  by_index = [pieces for bar in bars for _, pieces in bar]
  for index, piece in _pieces(events, cuts):
    by_index[index].append(piece)
  accidentals = _Accidentals(key)
  texts = [
    _bar_text(bar, start, beat, unit, key, accidentals)
    for bar, start in zip(bars, lines_at, strict=False)
  ]
  if not texts:
    return ["|]"]
  lines = []
  for i in range(0, len(texts), bars_per_line):
    chunk = " | ".join(texts[i : i + bars_per_line])
    last = i + bars_per_line >= len(texts)
    lines.append(chunk + (" |]" if last else " |"))
  return lines
