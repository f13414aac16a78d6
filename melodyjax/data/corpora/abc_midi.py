"""One ABC tune to a MIDI file with the project's own reader. No JAX.

The fast path of `corpora.convert` (`--reader=abc`): `music.abc_reader`
reads the tune (repeats 'once' or 'play') and the MIDI file is written the
way `music21_abc` writes it, so that the rest of the pipeline (metre hints,
bar positions, labels) sees the same files whichever reader made them:
- type 1; a conductor track (tempo, time signature, key signature) and one
  track with the notes on channel 1, named after the tune's title;
- each chord is its top note, the melody (grace notes, voices after the
  first, chord symbols and decorations the reader drops);
- a pickup starts at time 0, with no leading gap; rests before the first
  note are kept as a gap, rests at the end leave no trace;
- tempo from Q: (120 when none), the first meter as the time signature
  (music21's 4/4 when the tune has none), the key as the reader spells it;
- time signature changes where music21's re-barring writes them: a bar
  longer than the meter's bar is split after one bar of the meter, the rest
  gets a signature of its own (`meter.bestTimeSignature`, the only use of
  music21 here, for these bars alone) and the next bar the meter back; and
  each meter field of the body. Bar lines stay where the ABC has them.
`midi_io.read_midi` reads such a file back into the reader's events
quantized on the corpus grid (`abc_reader.quantize_events`, top notes).
"""

from __future__ import annotations

import fractions
import functools
import io

import mido

from melodyjax.data.corpora import abc_text
from melodyjax.data.corpora.music21_abc import Flattened, TuneResult
from melodyjax.music import abc_reader, midi_io
from melodyjax.music.abc_reader import PlayedBar
from melodyjax.music.events import Event, Song

Fraction = fractions.Fraction
DEFAULT_METER = (4, 4)  # music21's meter for a tune without one
COUNT_GRID = 12  # steps per quarter of the counts (`read_midi`'s default)


@functools.lru_cache(maxsize=4096)
def best_signature(
  lengths: tuple[Fraction, ...], sounding: tuple[bool, ...]
) -> tuple[int, int]:
  """The time signature music21 gives a bar of these notes and rests
  (`music21.meter.bestTimeSignature`)."""
  from music21 import meter, note, stream

  bar = stream.Measure()
  for length, is_note in zip(lengths, sounding, strict=True):
    element = note.Note("C4") if is_note else note.Rest()
    element.duration.quarterLength = length
    bar.append(element)
  found = meter.bestTimeSignature(bar)
  return found.numerator, found.denominator


def _split_tail(bar: PlayedBar, at: Fraction) -> PlayedBar:
  """The part of a bar after `at` quarters (a note across it is cut)."""
  lengths, sounding = [], []
  onset = Fraction(0)
  for length, is_note in zip(bar.lengths, bar.sounding, strict=True):
    end = onset + length
    if end > at:
      lengths.append(end - max(onset, at))
      sounding.append(is_note)
    onset = end
  return PlayedBar(None, tuple(lengths), tuple(sounding))


def signature_changes(
  bars: tuple[PlayedBar, ...], meter: tuple[int, int] | None
) -> list[tuple[Fraction, int, int]]:
  """The time signature changes music21 writes for these performed bars,
  as (onset in quarters, numerator, denominator), in time order.

  A meter field in a bar starts its signature there; a bar longer than the
  bar of the meter in force is re-barred as music21's ABC reader does
  (`abcFormat.translate.reBar`): one bar of the meter, then the rest with
  `best_signature` (unless it is exactly one more bar), and the next bar
  back in the meter.
  """
  if len(bars) < 2:
    return []  # music21 makes no bars of a tune without bar lines
  current = in_force = meter
  changes = []
  onset = Fraction(0)
  back_at = None
  for bar in bars:
    if bar.meter is not None:
      current = bar.meter
    if current is None:
      break  # no meter: music21 re-bars nothing (nor after a later one)
    wanted = current if (bar.meter is not None or back_at == onset) else None
    if wanted is not None and wanted != in_force:
      changes.append((onset, *wanted))
      in_force = wanted
    back_at = None
    length = bar.quarters
    full = Fraction(4 * current[0], current[1])
    if length > full:
      tail = _split_tail(bar, full)
      if tail.quarters != full:
        try:
          signature = best_signature(tail.lengths, tail.sounding)
        except Exception:  # noqa: BLE001 - music21 stops re-barring there
          break
        if signature != in_force:
          changes.append((onset + full, *signature))
          in_force = signature
        back_at = onset + length
    onset += length
  return changes


def _midi_denominator(denominator: int) -> int:
  """A MIDI file holds a power of two: the one at or below (1/6 is 1/4), as
  music21's export writes it."""
  return 1 << (denominator.bit_length() - 1)


def _midi_title(title: str) -> str:
  """The title as a MIDI track name can hold it (Latin-1, as mido reads)."""
  return title.encode("latin-1", "replace").decode("latin-1")


def tune_song(tune: abc_reader.Tune) -> Song:
  """The song a tune's MIDI file holds: top notes, leading rests kept,
  trailing rests dropped, music21's time signatures."""
  events = [Event(e.pitches[-1:], e.quarters) for e in tune.events]
  while events and not events[-1].pitches:
    events.pop()
  changes = [
    (onset, numerator, _midi_denominator(denominator))
    for onset, numerator, denominator in signature_changes(
      tune.bars, tune.meter
    )
  ]
  first = tune.meter or DEFAULT_METER
  if changes and changes[0][0] == 0:
    first = changes.pop(0)[1:]
  return Song(
    events, tune.tempo_bpm or 120.0, first, tune.key_signature, tuple(changes)
  )


def song_midi(song: Song, title: str) -> bytes:
  """A song's MIDI file (`midi_io.song_to_midi`) with its meter changes
  in the conductor track."""
  tpb = midi_io.default_ticks_per_beat(
    song.events, (onset for onset, _, _ in song.meter_changes)
  )
  midi = midi_io.song_to_midi(
    song, track_name=_midi_title(title), ticks_per_beat=tpb
  )
  meta = midi.tracks[0]
  end = meta.pop()  # end_of_track
  last = 0
  for onset, numerator, denominator in song.meter_changes:
    tick = int(onset * tpb)
    meta.append(
      mido.MetaMessage(
        "time_signature",
        numerator=numerator,
        denominator=denominator,
        time=tick - last,
      )
    )
    last = tick
  meta.append(end)
  buffer = io.BytesIO()
  midi.save(file=buffer)
  return buffer.getvalue()


def read_abc_tune(text: str, corpus: str, repeats: str) -> abc_reader.Tune:
  """One tune of a built-in corpus read by `abc_reader` (ESAC: German key
  names)."""
  return abc_reader.read_tune(
    text, german_keys=corpus == "esac", repeats=repeats
  )


def convert_abc_tune(
  text: str,
  corpus: str,
  repeats: str = "once",
  title: str | None = None,
) -> tuple[TuneResult, dict]:
  """Converts the ABC text of one tune to a MIDI file with `abc_reader`.

  Args:
    text: one tune (X: to the end of its music), as in a corpus file.
    corpus: the built-in corpus it belongs to ('esac' reads German keys).
    repeats: 'once' or 'play' (`abc_reader.read_tune`).
    title: name of the note track; default: the tune's first T: field.

  Returns:
    (the MIDI bytes and counts as `music21_abc.convert_abc_tune` gives
    them, the reader's counts of what it met).

  Raises:
    abc_reader.AbcError: the tune cannot be read.
  """
  if title is None:
    match = abc_text.TITLE.search(text)
    title = match.group(1) if match else ""
  tune = read_abc_tune(text, corpus, repeats)
  song = tune_song(tune)
  data = song_midi(song, title)
  # As `music21_abc.count_midi_notes` reads the file back, without reading.
  read_back = abc_reader.quantize_events(song.events, COUNT_GRID)
  notes = sum(1 for event in read_back if event.pitches)
  rests = len(read_back) - notes
  counts = tune.counts
  flattened = Flattened(
    repeats_removed=counts["repeats"] if repeats == "once" else 0,
    ending_bars_dropped=counts["ending_bars_dropped"],
    grace_notes_removed=counts["grace_notes"],
    chords_flattened=sum(1 for e in tune.events if len(e.pitches) > 1),
    voices_dropped=counts["voices_dropped"],
  )
  result = TuneResult(
    midi=data,
    notes=notes,
    rests=rests,
    pickup=float(tune.pickup_quarters),
    ties_removed=counts["ties_between_pitches"],
    objects_copied=0,
    flattened=flattened,
    header=tune_header(tune),
  )
  return result, dict(counts)


def tune_header(tune: abc_reader.Tune) -> dict:
  """What a dataset keeps of a tune read: its meter ('6/8', None without
  one), tonic, mode, key signature and pickup in quarters ('1/2')."""
  return {
    "meter": "/".join(map(str, tune.meter)) if tune.meter else None,
    "tonic": tune.tonic,
    "mode": tune.mode,
    "key_signature": tune.key_signature,
    "pickup_quarters": str(tune.pickup_quarters),
  }
