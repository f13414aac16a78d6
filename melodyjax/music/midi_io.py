"""MIDI files to note events and back, with mido. No JAX.

A song is a list of events, one per note, chord or rest. Each event has the
MIDI pitches sounding (ascending; empty for a rest) and a duration in quarter
notes. Onsets are implicit: an event starts where the previous one ends.

Reading policy (the same for every file, so results are deterministic):
- Type 0 and type 1 files. Type 2 and SMPTE-timed files are rejected.
- Per-file limits keep a hostile file from exhausting time or memory: at
  most `MAX_FILE_BYTES` bytes (checked before parsing, which bounds mido's
  time and memory), `MAX_MESSAGES` messages, notes ending before quarter
  `MAX_QUARTERS`, and `MAX_SECONDS` of note processing after parsing.
- A note_on with velocity 0 is a note-off. A note_on on a pitch that is already
  sounding on the same channel of the same track ends the sounding note there
  (re-articulation). A note-off with no sounding note is ignored. A note still
  sounding at the end of its track ends at the track's last tick.
- Channel 10 (index 9, General MIDI drums) is ignored.
- `tracks='merge'` merges every other track and channel. `tracks='melody'`
  keeps one (track, channel) part: the one with the most notes, ties broken
  by the higher mean pitch, then by the lower track and channel index.
- Times are in quarter notes from ticks_per_beat (tempo changes do not change
  quarter lengths), rounded to a grid of `grid` steps per quarter note (12 holds
  sixteenths and eighth-note triplets). Notes shorter than half a grid step
  round to zero length and are dropped (grace notes).
- Notes with the same onset form one event: a chord (`polyphony='chord'`),
  the top note (`'top'`), or the song is rejected (`'reject'`). An event lasts
  until its longest note ends or the next onset, whichever comes first; a gap
  before the next onset becomes a rest event. Silence before the first note
  and after the last one is not kept; the first note's onset is kept as
  `Song.start_quarters`.
- Time signatures: the first one is `Song.time_signature` (None when the
  file has none), the later ones `Song.meter_changes`, each starting a bar
  (two at the same tick: the last one read counts).
"""

from __future__ import annotations

import errno
import fractions
import functools
import io
import math
import os
import stat
import time
from collections.abc import Iterable, Sequence
from typing import BinaryIO, NamedTuple

import mido

from melodyjax import errors, files
from melodyjax.music.events import Event, Song

DRUM_CHANNEL = 9
MAX_FILE_BYTES = 2 * 2**20  # larger files are refused unparsed
MAX_MESSAGES = 1_000_000  # messages over all tracks
MAX_QUARTERS = 100_000  # a note ending later means absurd delta times
MAX_SECONDS = 60.0  # note processing after parsing, per file
POLYPHONY_POLICIES = ("chord", "top", "reject")
TRACK_POLICIES = ("merge", "melody")


class MidiError(errors.MelodyjaxError):
  """A file that cannot become a song; `reason` is a short code for reports.

  Reasons: 'not_midi', 'truncated', 'bad_meta', 'unsupported', 'unreadable',
  'no_notes', 'polyphonic', 'not_a_file' (a FIFO, socket or device),
  'changed_while_read', and the limits: 'too_large', 'too_many_events',
  'absurd_time', 'too_slow'.
  """

  def __init__(self, reason: str, message: str):
    super().__init__(message)
    self.reason = reason


class _Note(NamedTuple):
  start: int  # grid steps
  end: int  # grid steps
  pitch: int
  part: tuple[int, int]  # (track index, channel)


@functools.lru_cache(maxsize=4096)
def _quarters(steps: int, grid: int) -> fractions.Fraction:
  return fractions.Fraction(steps, grid)


def _read_bytes(source: str | os.PathLike | bytes | BinaryIO, name) -> bytes:
  """The file's bytes, refusing more than MAX_FILE_BYTES unread."""
  if isinstance(source, bytes):
    data = source
  elif isinstance(source, str | os.PathLike):
    data = _read_regular_file(os.fspath(source), name)
  else:
    data = source.read(MAX_FILE_BYTES + 1)
  if len(data) > MAX_FILE_BYTES:
    raise MidiError(
      "too_large",
      f"{name}: larger than the {MAX_FILE_BYTES / 2**20:g} MiB limit "
      "(midi_io.MAX_FILE_BYTES)",
    )
  return data


def _read_regular_file(path: str, name) -> bytes:
  """A regular file's first MAX_FILE_BYTES + 1 bytes.

  Opened without blocking and checked before it is read: a FIFO, a socket
  or a device (even behind a link) is refused, never waited on; a file
  whose size or time changes while it is read is refused too (its bytes
  may mix two versions).
  """
  try:
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
  except OSError as e:  # a socket cannot be opened at all: say it is one
    if e.errno == errno.ENXIO and stat.S_ISSOCK(os.stat(path).st_mode):
      raise MidiError(
        "not_a_file", f"{name}: a socket, not a regular file"
      ) from None
    raise
  with os.fdopen(descriptor, "rb") as f:
    before = os.fstat(f.fileno())
    if not stat.S_ISREG(before.st_mode):
      kind = _SPECIAL.get(stat.S_IFMT(before.st_mode), "special file")
      raise MidiError("not_a_file", f"{name}: a {kind}, not a regular file")
    data = f.read(MAX_FILE_BYTES + 1)
    after = os.fstat(f.fileno())
  if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
    raise MidiError("changed_while_read", f"{name}: changed while it was read")
  return data


_SPECIAL = {
  stat.S_IFIFO: "named pipe (FIFO)",
  stat.S_IFSOCK: "socket",
  stat.S_IFCHR: "character device",
  stat.S_IFBLK: "block device",
  stat.S_IFDIR: "folder",
}


def _open_midi(source: str | os.PathLike | bytes | BinaryIO) -> mido.MidiFile:
  """Parses a file with mido, mapping its many failure modes to MidiError."""
  name = source if isinstance(source, str | os.PathLike) else "<bytes>"
  data = _read_bytes(source, name)
  try:
    midi = mido.MidiFile(file=io.BytesIO(data))
  except EOFError as e:
    raise MidiError("truncated", f"{name}: truncated MIDI data") from e
  except (KeyError, mido.midifiles.meta.KeySignatureError) as e:
    raise MidiError("bad_meta", f"{name}: bad meta message ({e})") from e
  except OSError as e:
    if "MThd" in str(e):
      raise MidiError("not_midi", f"{name}: not a MIDI file") from e
    raise MidiError("unreadable", f"{name}: {e}") from e
  except (ValueError, TypeError, IndexError) as e:
    raise MidiError("unreadable", f"{name}: corrupt MIDI data ({e})") from e
  num_messages = sum(len(track) for track in midi.tracks)
  if num_messages > MAX_MESSAGES:
    raise MidiError(
      "too_many_events",
      f"{name}: {num_messages} messages, more than the {MAX_MESSAGES} limit "
      "(midi_io.MAX_MESSAGES)",
    )
  return midi


def read_midi(
  source: str | os.PathLike | bytes | BinaryIO,
  *,
  grid: int = 12,
  polyphony: str = "chord",
  tracks: str = "merge",
) -> Song:
  """Reads a MIDI file into a song of events (policy in the module docstring).

  Args:
    source: a path, the file's bytes, or a binary file object.
    grid: quantization steps per quarter note.
    polyphony: 'chord', 'top' or 'reject' for notes sharing an onset.
    tracks: 'merge' or 'melody'.

  Returns:
    The song.

  Raises:
    MidiError: the file is not usable; `reason` says why.
  """
  if polyphony not in POLYPHONY_POLICIES:
    raise ValueError(f"polyphony must be one of {POLYPHONY_POLICIES}")
  if tracks not in TRACK_POLICIES:
    raise ValueError(f"tracks must be one of {TRACK_POLICIES}")
  midi = _open_midi(source)
  name = source if isinstance(source, str | os.PathLike) else "<bytes>"
  if midi.type == 2:
    raise MidiError("unsupported", f"{name}: type 2 MIDI is not supported")
  tpb = midi.ticks_per_beat
  if not isinstance(tpb, int) or tpb <= 0:
    raise MidiError("unsupported", f"{name}: SMPTE timing is not supported")

  deadline = time.monotonic() + MAX_SECONDS
  try:
    notes, meta = _collect_notes(midi.tracks, tpb, grid, deadline)
  except MidiError as e:
    raise MidiError(e.reason, f"{name}: {e}") from None
  if tracks == "melody" and notes:
    notes = _select_melody(notes)
  if not notes:
    raise MidiError("no_notes", f"{name}: no notes")
  try:
    events = _notes_to_events(notes, grid, polyphony)
  except MidiError as e:
    raise MidiError(e.reason, f"{name}: {e}") from None
  tempo, signatures, key_signature = meta
  first, *changes = signatures or [None]
  return Song(
    events,
    tempo,
    first and first[1:],
    key_signature,
    tuple((_quarters(step, grid), n, d) for step, n, d in changes),
    _quarters(min(note.start for note in notes), grid),
  )


def _collect_notes(midi_tracks, tpb: int, grid: int, deadline: float):
  """Pairs note-ons with note-offs per (track, channel, pitch), quantized.

  Raises:
    MidiError: past `deadline` (time.monotonic) or past MAX_QUARTERS.
  """
  half = tpb  # rounding: (ticks * 2 * grid + tpb) // (2 * tpb)
  two_tpb = 2 * tpb
  two_grid = 2 * grid
  notes: list[_Note] = []
  first_tempo = first_key = None  # (tick, value)
  signatures = {}  # grid step -> (numerator, denominator), the last one
  for track_index, track in enumerate(midi_tracks):
    tick = 0
    sounding: dict[tuple[int, int], int] = {}  # (channel, pitch) -> start
    for count, msg in enumerate(track):
      if not count & 0xFFFF and time.monotonic() > deadline:
        raise MidiError(
          "too_slow", f"over {MAX_SECONDS:g} s (midi_io.MAX_SECONDS)"
        )
      tick += msg.time
      kind = msg.type
      if kind == "note_on" or kind == "note_off":
        channel = msg.channel
        if channel == DRUM_CHANNEL:
          continue
        key = (channel, msg.note)
        start = sounding.pop(key, None)
        if start is not None:
          s = (start * two_grid + half) // two_tpb
          e = (tick * two_grid + half) // two_tpb
          if e > s:
            notes.append(_Note(s, e, msg.note, (track_index, channel)))
        if kind == "note_on" and msg.velocity > 0:
          sounding[key] = tick
      elif kind == "set_tempo":
        if first_tempo is None or tick < first_tempo[0]:
          first_tempo = (tick, msg.tempo)
      elif kind == "time_signature":
        step = (tick * two_grid + half) // two_tpb
        signatures[step] = (msg.numerator, msg.denominator)
      elif kind == "key_signature":
        if first_key is None or tick < first_key[0]:
          first_key = (tick, msg.key)
    for (channel, pitch), start in sounding.items():
      s = (start * two_grid + half) // two_tpb
      e = (tick * two_grid + half) // two_tpb
      if e > s:
        notes.append(_Note(s, e, pitch, (track_index, channel)))
  last_end = max((note.end for note in notes), default=0)
  if last_end > MAX_QUARTERS * grid:
    raise MidiError(
      "absurd_time",
      f"a note ends at quarter {last_end // grid}, past the {MAX_QUARTERS} "
      "limit (midi_io.MAX_QUARTERS): absurd delta times",
    )
  tempo = mido.tempo2bpm(first_tempo[1]) if first_tempo else 120.0
  key_signature = first_key[1] if first_key else None
  changes = [(step, *signatures[step]) for step in sorted(signatures)]
  return notes, (tempo, changes, key_signature)


def _select_melody(notes: list[_Note]) -> list[_Note]:
  parts: dict[tuple[int, int], list[int]] = {}
  for note in notes:
    parts.setdefault(note.part, []).append(note.pitch)
  best = min(
    parts,
    key=lambda p: (-len(parts[p]), -sum(parts[p]) / len(parts[p]), p),
  )
  return [note for note in notes if note.part == best]


def _notes_to_events(
  notes: list[_Note], grid: int, polyphony: str
) -> list[Event]:
  """Groups notes by onset into chord/note events and fills gaps with rests."""
  by_onset: dict[int, dict[int, int]] = {}  # onset -> pitch -> end
  for note in notes:
    group = by_onset.setdefault(note.start, {})
    if group.get(note.pitch, -1) < note.end:
      group[note.pitch] = note.end
  onsets = sorted(by_onset)
  events: list[Event] = []
  for i, onset in enumerate(onsets):
    group = by_onset[onset]
    if len(group) > 1:
      if polyphony == "reject":
        raise MidiError(
          "polyphonic", f"notes share an onset at quarter {onset / grid:g}"
        )
      if polyphony == "top":
        top = max(group)
        group = {top: group[top]}
    end = max(group.values())
    next_onset = onsets[i + 1] if i + 1 < len(onsets) else None
    if next_onset is not None and end > next_onset:
      end = next_onset
    events.append(Event(tuple(sorted(group)), _quarters(end - onset, grid)))
    if next_onset is not None and end < next_onset:
      events.append(Event((), _quarters(next_onset - end, grid)))
  return events


def canonical_events(events: Sequence[Event]) -> list[Event]:
  """Events as `read_midi` would give them back from a file.

  Rests before the first and after the last note are dropped and adjacent
  rests merged: in a MIDI file they are all just silence.
  """
  out: list[Event] = []
  for event in events:
    if not event.pitches:
      if not out:
        continue
      if not out[-1].pitches:
        out[-1] = Event((), out[-1].quarters + event.quarters)
        continue
    out.append(event)
  while out and not out[-1].pitches:
    out.pop()
  return out


def default_ticks_per_beat(
  events: Iterable[Event], times: Iterable[fractions.Fraction] = ()
) -> int:
  """480, raised so that every event's duration and every one of `times`
  (in quarter notes) is a whole number of ticks."""
  values = [event.quarters for event in events] + list(times)
  return math.lcm(480, *(fractions.Fraction(v).denominator for v in values))


def song_to_midi(
  song: Song | Sequence[Event],
  *,
  tempo_bpm: float | None = None,
  time_signature: tuple[int, int] | None = None,
  key_signature: str | None = None,
  program: int = 0,
  velocity: int = 80,
  channel: int = 0,
  ticks_per_beat: int | None = None,
  track_name: str = "melody",
) -> mido.MidiFile:
  """Builds a standard type 1 MIDI file from events.

  Track 0 holds tempo, time and key signature; track 1 the notes. Chords are
  simultaneous notes and rests are gaps. Settings given here override the
  song's own.

  Args:
    song: a Song, or a plain sequence of events.
    tempo_bpm: quarter notes per minute (default: the song's, else 120).
    time_signature: (numerator, denominator) (default: the song's, else 4/4).
    key_signature: mido key name such as 'C' or 'Am' (default: the song's;
      none is written when unknown).
    program: General MIDI program number, 0-127.
    velocity: note-on velocity, 1-127.
    channel: MIDI channel index, 0-15 (9 is drums and is refused).
    ticks_per_beat: resolution (default: 480, raised so that every duration
      is a whole number of ticks).

  Returns:
    The mido MidiFile (save it with `.save(path)`).
  """
  if isinstance(song, Song):
    events = song.events
    tempo_bpm = song.tempo_bpm if tempo_bpm is None else tempo_bpm
    time_signature = time_signature or song.time_signature
    key_signature = key_signature or song.key_signature
  else:
    events = list(song)
  tempo_bpm = 120.0 if tempo_bpm is None else tempo_bpm
  time_signature = time_signature or (4, 4)
  if channel == DRUM_CHANNEL or not 0 <= channel < 16:
    raise ValueError(f"channel must be 0-15 and not {DRUM_CHANNEL} (drums)")
  if not 1 <= velocity <= 127:
    raise ValueError("velocity must be 1-127")
  if not 0 <= program <= 127:
    raise ValueError("program must be 0-127")
  tpb = ticks_per_beat or default_ticks_per_beat(events)
  midi = mido.MidiFile(type=1, ticks_per_beat=tpb)
  midi.tracks.append(_meta_track(tempo_bpm, time_signature, key_signature))
  midi.tracks.append(
    _note_track(events, tpb, program, velocity, channel, track_name)
  )
  return midi


def _meta_track(tempo_bpm, time_signature, key_signature) -> mido.MidiTrack:
  """Track 0: tempo, time signature and (if known) key signature."""
  meta = mido.MidiTrack()
  meta.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm)))
  meta.append(
    mido.MetaMessage(
      "time_signature",
      numerator=time_signature[0],
      denominator=time_signature[1],
    )
  )
  if key_signature:
    meta.append(mido.MetaMessage("key_signature", key=key_signature))
  meta.append(mido.MetaMessage("end_of_track"))
  return meta


def _note_track(
  events, tpb, program, velocity, channel, track_name
) -> mido.MidiTrack:
  """Track 1: the notes, a chord's notes together, rests as gaps."""
  # Absolute (tick, order, message); offs sort before ons at the same tick so
  # a repeated pitch is re-articulated.
  timed = []
  tick = 0
  for event in events:
    length = event.quarters * tpb
    if length.denominator != 1:
      raise ValueError(
        f"duration {event.quarters} is not a whole number of ticks at "
        f"ticks_per_beat={tpb}"
      )
    end = tick + int(length)
    for pitch in event.pitches:
      timed.append((tick, 1, pitch, True))
      timed.append((end, 0, pitch, False))
    tick = end
  timed.sort()
  track = mido.MidiTrack()
  track.append(mido.MetaMessage("track_name", name=track_name))
  track.append(mido.Message("program_change", program=program, channel=channel))
  last = 0
  for t, _, pitch, is_on in timed:
    kind = "note_on" if is_on else "note_off"
    vel = velocity if is_on else 0
    track.append(
      mido.Message(
        kind, note=pitch, velocity=vel, channel=channel, time=t - last
      )
    )
    last = t
  track.append(mido.MetaMessage("end_of_track"))
  return track


def write_midi(
  song: Song | Sequence[Event], path: str | os.PathLike, **kwargs
) -> None:
  """Writes events to a MIDI file at `path` (options as `song_to_midi`).

  The file is written to a temporary name and renamed, so an interrupted
  write never leaves a half-written file.
  """
  midi = song_to_midi(song, **kwargs)
  with files.atomic_write(path, "wb") as f:
    midi.save(file=f)


def song_to_bytes(song: Song | Sequence[Event], **kwargs) -> bytes:
  """The bytes of `song_to_midi(song, **kwargs)` as a .mid file."""
  buffer = io.BytesIO()
  song_to_midi(song, **kwargs).save(file=buffer)
  return buffer.getvalue()
