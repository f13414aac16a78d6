"""One ABC tune to a MIDI file with music21, corrected. No JAX.

music21 needs these corrections, all made here for every corpus:
- ABC 2.1 accidentals. music21 reads ABC without a version line as ABC 1.3,
  where an accidental applies to its own note only. The transcriptions
  assume ABC 2.1 (it carries to the end of the bar); in ESAC about 3,600
  notes in 1,100 tunes would come out a semitone off. Tunes are parsed as
  ABC 2.1.
- Shared objects. When music21 re-bars an over-full bar it puts one
  TimeSignature object into several measures and its MIDI export then fails
  (about 900 ESAC tunes). Such objects are copied before export.
- Ties between different pitches (a slur written as a tie). music21 merges
  tied notes at export whatever their pitch, so a note would disappear. Such
  ties are removed; both notes are kept.
And for what O'Neill's has and ESAC has not (each counted):
- Repeats are played once. music21's export expands repeat signs (and fails
  on about 1% of these tunes); a melody model should see each section once,
  as ESAC writes it. Repeat signs are removed, and first-time endings (the
  bars of an ending that closes with a repeat sign) are dropped: each
  section is played once, into its last ending.
- Grace notes are removed (music21 writes them as notes of no length).
- Chords (a few double stops) keep their top note, the melody; quoted
  strings that music21 reads as chord symbols (mostly dynamics: "f" would
  sound as an F major chord) are removed.
- A second voice, if any, is dropped: the first is the melody.
A corpus's own fixes of the text (ESAC's German key names) are made by the
caller before `convert_abc_tune`.

Each MIDI file (type 1, 10,080 ticks per quarter note) has a conductor track
(tempo 120, time signature, key signature) and one track with the tune's
notes on channel 1, named after the tune's title. Rests are gaps; rests at
the end of a tune leave no trace. As music21 writes them:
- A pickup (anacrusis) starts at time 0, with no leading gap, so bar lines
  counted from the time signature are shifted by the pickup's length.
- Tunes without a meter ('M: none', 214 ESAC tunes) get music21's 4/4.
- Bars longer than the meter are split by music21, with time signature
  changes in the MIDI file (about 900 ESAC tunes); notes are not changed.
- Tied notes of equal pitch become one note; tuplets keep their lengths
  (1/3 of a quarter note and so on, on the corpus grid).
The key field names the tonic; ESAC writes minor and modal tunes under a
major signature with explicit accidentals. The key signature is written to
the MIDI file as given; finding the mode is left to the reader.
"""

from __future__ import annotations

import copy
import dataclasses

from melodyjax import errors
from melodyjax.data.corpora import abc_text

ABC_VERSION = (2, 1, 0)
INSTALL_HINT = "pip install 'melodyjax[corpus]'"


@dataclasses.dataclass
class Flattened:
  """What `flatten_score` changed in one tune.

  Attributes:
    repeats_removed: repeat signs removed (each section is played once).
    ending_bars_dropped: bars of first-time endings dropped.
    grace_notes_removed: grace notes removed.
    chords_flattened: chords reduced to their top note.
    chord_symbols_removed: quoted strings music21 reads as chord symbols
      (in O'Neill's mostly dynamics: "f" becomes an F major chord).
    voices_dropped: voices after the first one dropped.
  """

  repeats_removed: int = 0
  ending_bars_dropped: int = 0
  grace_notes_removed: int = 0
  chords_flattened: int = 0
  chord_symbols_removed: int = 0
  voices_dropped: int = 0


@dataclasses.dataclass
class TuneResult:
  """What converting one tune gave.

  Attributes:
    midi: the MIDI file's bytes.
    notes: number of notes in the MIDI file.
    rests: number of gaps between notes (silence before the first note and
      after the last one is not counted).
    pickup: length in quarter notes of an incomplete first bar, else 0.
    ties_removed: ties between different pitches that were removed.
    objects_copied: objects shared by several bars that were copied.
    flattened: what `flatten_score` changed (repeats, grace notes, ...).
    header: what the abc reader found of the tune (`abc_midi.tune_header`:
      meter, tonic, mode, exact pickup); empty from music21.
  """

  midi: bytes
  notes: int
  rests: int
  pickup: float
  ties_removed: int
  objects_copied: int
  flattened: Flattened = dataclasses.field(default_factory=Flattened)
  header: dict = dataclasses.field(default_factory=dict)


def import_music21():
  """The music21 module; raises errors.ConversionError naming the fix."""
  try:
    import music21
  except ImportError as e:
    raise errors.ConversionError(
      f"music21 is needed for the built-in corpora ({e}); install it with: "
      f"{INSTALL_HINT}"
    ) from None
  return music21


def parse_abc_tune(text: str):
  """Parses the ABC text of one tune as ABC 2.1 into a music21 Score.

  Accidentals carry to the end of the bar (ABC 2.1) unless the text says
  otherwise (%%propagate-accidentals, I:abc-version). The Score is not yet
  corrected for export; see `prepare_score_for_midi`.

  Args:
    text: one tune (X: to the end of its music).

  Returns:
    A music21 Score.
  """
  import_music21()
  from music21 import abcFormat
  from music21.abcFormat import translate

  handler = abcFormat.ABCHandler(abcVersion=ABC_VERSION)
  handler.process(text)
  return translate.abcToStreamScore(handler)


def copy_shared_objects(score) -> int:
  """Gives each bar its own copy of objects that sit in several bars.

  music21's ABC re-barring (abcFormat.translate.reBar) puts one
  TimeSignature object into more than one Measure; its MIDI export then
  fails with "the object ... is already found in this Stream".

  Args:
    score: a music21 Score, changed in place.

  Returns:
    The number of objects copied.
  """
  from music21 import stream

  seen = set()
  copied = 0
  for measure in score.recurse().getElementsByClass(stream.Measure):
    for element in list(measure.elements):
      if isinstance(element, stream.Stream):
        continue
      if id(element) in seen:
        measure.replace(element, copy.deepcopy(element))
        copied += 1
      else:
        seen.add(id(element))
  return copied


def remove_pitch_changing_ties(score) -> int:
  """Removes ties between notes of different pitch; keeps both notes.

  ESAC writes some slurs as ties ('c-d'). music21's MIDI export merges any
  note with a 'stop' tie into the note before it (Stream.stripTies), so the
  second note would disappear. After this call a tie joins exactly the
  consecutive notes of equal pitch that were tied before.

  Args:
    score: a music21 Score, changed in place.

  Returns:
    The number of ties removed.
  """
  from music21 import note, stream, tie

  parts = list(score.getElementsByClass(stream.Part)) or [score]
  removed = 0
  for part in parts:
    events = [
      e for e in part.recurse().notesAndRests if e.duration.quarterLength > 0
    ]
    # linked[i]: event i is tied on to event i + 1.
    linked = []
    for current, following in zip(events, events[1:] + [None], strict=True):
      current_tie = getattr(current, "tie", None)
      tied = current_tie is not None and current_tie.type in (
        "start",
        "continue",
      )
      keep = (
        tied
        and type(current) is note.Note
        and type(following) is note.Note
        and current.pitch.ps == following.pitch.ps
      )
      removed += tied and not keep
      linked.append(keep)
    for i, event in enumerate(events):
      into = i > 0 and linked[i - 1]
      out = linked[i]
      kind = {
        (False, True): "start",
        (True, True): "continue",
        (True, False): "stop",
      }.get((into, out))
      old = getattr(event, "tie", None)
      if kind is None:
        if old is not None:
          event.tie = None
      elif old is None or old.type != kind:
        event.tie = tie.Tie(kind)
  return removed


def play_repeats_once(part) -> tuple[int, int]:
  """Removes repeat signs and first-time endings from a part.

  Each repeated section is then played once, into its last ending: an
  ending (a music21 RepeatBracket) whose last bar closes with a repeat sign
  leads back, so its bars are dropped and later bars move up.

  Args:
    part: a music21 Part (or Score without parts), changed in place.

  Returns:
    (repeat signs removed, bars dropped).
  """
  from music21 import bar, spanner, stream

  dropped = []
  for bracket in list(part.spannerBundle.getByClass(spanner.RepeatBracket)):
    bars = bracket.getSpannedElements()
    if bars and isinstance(bars[-1].rightBarline, bar.Repeat):
      dropped += [m for m in bars if m not in dropped]
    part.spannerBundle.remove(bracket)
  removed = 0
  for measure in part.getElementsByClass(stream.Measure):
    if isinstance(measure.leftBarline, bar.Repeat):
      measure.leftBarline = None
      removed += 1
    if isinstance(measure.rightBarline, bar.Repeat):
      measure.rightBarline = bar.Barline("regular")
      removed += 1
  for measure in sorted(dropped, key=lambda m: -m.offset):
    part.remove(measure, shiftOffsets=True)
  return removed, len(dropped)


def flatten_score(score) -> Flattened:
  """Makes a tune one line, played once: what O'Neill's needs.

  Drops voices after the first, plays repeats once (`play_repeats_once`),
  removes grace notes and chord symbols, and keeps the top note of each
  chord. ESAC has none
  of these, and its tunes pass unchanged.

  Args:
    score: a music21 Score, changed in place.

  Returns:
    The counts of what was changed.
  """
  from music21 import chord, harmony, note, stream

  done = Flattened()
  parts = list(score.getElementsByClass(stream.Part))
  for extra in parts[1:]:
    score.remove(extra)
    done.voices_dropped += 1
  melody = parts[0] if parts else score
  done.repeats_removed, done.ending_bars_dropped = play_repeats_once(melody)
  found = [(e, e.activeSite) for e in melody.recurse().notes]
  for element, site in found:
    if isinstance(element, harmony.Harmony):
      site.remove(element)  # music21 may write it as a chord
      done.chord_symbols_removed += 1
    elif element.duration.isGrace:
      site.remove(element)
      done.grace_notes_removed += 1
    elif isinstance(element, chord.Chord):
      top = note.Note(max(element.pitches, key=lambda p: p.ps))
      top.duration = element.duration
      top.tie = element.tie
      site.replace(element, top)
      done.chords_flattened += 1
  return done


def prepare_score_for_midi(score) -> tuple[int, int]:
  """Applies `copy_shared_objects` and `remove_pitch_changing_ties`.

  Args:
    score: a music21 Score, changed in place.

  Returns:
    (objects copied, ties removed).
  """
  return copy_shared_objects(score), remove_pitch_changing_ties(score)


def _pickup_quarters(score) -> float:
  """Returns the length of an incomplete first bar (anacrusis), else 0."""
  from music21 import stream

  first = score.recurse().getElementsByClass(stream.Measure).first()
  if first is None or not first.paddingLeft:
    return 0.0
  return float(first.duration.quarterLength)


def _set_title(score, title: str) -> None:
  """Names the tune's track after its title (a MIDI track_name)."""
  from music21 import instrument, stream

  if not title:
    return
  for part in score.getElementsByClass(stream.Part):
    if not part.getElementsByClass(instrument.Instrument):
      player = instrument.Instrument()
      player.partName = title
      part.insert(0, player)


def count_midi_notes(data: bytes) -> tuple[int, int]:
  """(notes, rests) of a MIDI file as the project's reader sees it."""
  from melodyjax.music import midi_io

  try:
    events = midi_io.read_midi(data).events
  except midi_io.MidiError:
    return 0, 0
  notes = sum(1 for event in events if event.pitches)
  return notes, len(events) - notes


def convert_abc_tune(text: str, title: str | None = None) -> TuneResult:
  """Converts the ABC text of one tune to a MIDI file.

  Args:
    text: one tune (X: to the end of its music), as in a corpus file.
    title: name of the note track; default: the tune's first T: field.

  Returns:
    The MIDI bytes and counts.

  Raises:
    Exception: whatever music21 raises for text it cannot handle.
  """
  from music21 import midi

  if title is None:
    match = abc_text.TITLE.search(text)
    title = match.group(1) if match else ""
  score = parse_abc_tune(text)
  flattened = flatten_score(score)
  copied, removed = prepare_score_for_midi(score)
  pickup = _pickup_quarters(score)
  _set_title(score, title)
  # Latin-1: the charset mido assumes for meta text when reading.
  midi_file = midi.translate.streamToMidiFile(score, encoding="latin-1")
  data = midi_file.writestr()
  notes, rests = count_midi_notes(data)
  return TuneResult(
    midi=data,
    notes=notes,
    rests=rests,
    pickup=pickup,
    ties_removed=removed,
    objects_copied=copied,
    flattened=flattened,
  )


def convert_abc_tune_text(text: str) -> bytes:
  """Returns the MIDI file of one tune's ABC text (see `convert_abc_tune`)."""
  return convert_abc_tune(text).midi
