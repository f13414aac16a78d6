"""MIDI reading and writing on small files the tests write themselves."""

import io
from fractions import Fraction as F

import mido
import pytest

from melodyjax.music import midi_io
from melodyjax.music.events import Event, Song
from tests import midi_helpers as mh

Q = 480  # ticks per quarter note in these files


def events(*pairs):
  return [Event(tuple(p), F(q)) for p, q in pairs]


def read(midi, **kwargs):
  buffer = io.BytesIO()
  midi.save(file=buffer)
  return midi_io.read_midi(buffer.getvalue(), **kwargs)


def test_note_off_and_velocity_zero_are_the_same():
  notes = [(60, 0, Q), (62, Q, 2 * Q)]
  a = read(mh.midi_file([mh.note_track(notes)]))
  b = read(mh.midi_file([mh.note_track(notes, velocity_zero_off=True)]))
  assert a.events == b.events == events(((60,), 1), ((62,), 1))


def test_gaps_become_rests_and_leading_silence_is_dropped():
  notes = [(60, Q, 2 * Q), (64, 3 * Q, 3 * Q + Q // 2)]
  song = read(mh.midi_file([mh.note_track(notes)]))
  assert song.events == events(((60,), 1), ((), 1), ((64,), F(1, 2)))


def test_chords_top_and_reject_policies():
  notes = [(67, 0, Q), (60, 0, Q), (64, 0, 2 * Q), (72, Q, 2 * Q)]
  midi = mh.midi_file([mh.note_track(notes)])
  # The chord lasts until the next onset (its longest note is cut there).
  assert read(midi).events == events(((60, 64, 67), 1), ((72,), 1))
  assert read(midi, polyphony="top").events == events(((67,), 1), ((72,), 1))
  with pytest.raises(midi_io.MidiError) as e:
    read(midi, polyphony="reject")
  assert e.value.reason == "polyphonic"


def test_overlapping_notes_are_cut_at_the_next_onset():
  # Legato overlap: 60 still sounds when 62 starts.
  notes = [(60, 0, Q + Q // 2), (62, Q, 2 * Q)]
  song = read(mh.midi_file([mh.note_track(notes)]))
  assert song.events == events(((60,), 1), ((62,), 1))


def test_retriggered_and_unterminated_notes_are_deterministic():
  on = lambda p: mido.Message("note_on", note=p, velocity=80)  # noqa: E731
  off = lambda p: mido.Message("note_off", note=p)  # noqa: E731
  track = mh.raw_track(
    [
      (0, on(60)),
      (Q, on(60)),  # re-articulation ends the first note
      (Q, off(60)),
      (0, off(61)),  # a note-off without a note-on is ignored
      (0, on(65)),  # never ended: lasts until the end of the track
      (2 * Q, mido.MetaMessage("end_of_track")),
    ]
  )
  song = read(mh.midi_file([track]))
  assert song.events == events(((60,), 1), ((60,), 1), ((65,), 2))
  assert read(mh.midi_file([track])).events == song.events


def test_drum_channel_is_ignored_and_tracks_merge():
  melody = mh.note_track([(72, 0, Q), (74, Q, 2 * Q)], channel=0)
  bass = mh.note_track([(48, 0, 2 * Q)], channel=1)
  drums = mh.note_track([(36, 0, Q // 2), (38, Q // 2, Q)], channel=9)
  song = read(mh.midi_file([melody, bass, drums]))
  assert song.events == events(((48, 72), 1), ((74,), 1))


def test_melody_policy_keeps_the_part_with_most_notes():
  melody = mh.note_track([(72, 0, Q), (74, Q, 2 * Q), (76, 2 * Q, 3 * Q)])
  bass = mh.note_track([(48, 0, 3 * Q)], channel=1)
  song = read(mh.midi_file([bass, melody]), tracks="melody")
  assert song.events == events(((72,), 1), ((74,), 1), ((76,), 1))


def test_type_0_file_with_two_channels():
  a = mh.note_track([(60, 0, Q)], channel=0)
  b = mh.note_track([(55, 0, Q)], channel=3)
  merged = mido.merge_tracks([a, b])
  song = read(mh.midi_file([merged], midi_type=0))
  assert song.events == events(((55, 60), 1))


def test_quantization_to_grid_and_grace_notes_dropped():
  # 1/3 quarter (triplet) with a little jitter; a 10-tick grace note.
  notes = [(59, 0, 10), (60, 10, 170), (62, 165, 320), (64, 320, 480)]
  song = read(mh.midi_file([mh.note_track(notes)]))
  assert song.events == events(
    ((60,), F(1, 3)), ((62,), F(1, 3)), ((64,), F(1, 3))
  )
  # At a grid of 4 steps per quarter, triplets are rounded to sixteenths.
  coarse = read(mh.midi_file([mh.note_track(notes)]), grid=4)
  assert [e.quarters for e in coarse.events] == [F(1, 4), F(1, 2), F(1, 4)]


def test_durations_do_not_depend_on_tempo_or_resolution():
  for tpb, tempo in ((96, 300000), (10080, 900000)):
    track = mh.note_track([(60, 0, tpb), (62, tpb, 3 * tpb)])
    track.insert(0, mido.MetaMessage("set_tempo", tempo=tempo))
    song = read(mh.midi_file([track], ticks_per_beat=tpb))
    assert song.events == events(((60,), 1), ((62,), 2))
    assert song.tempo_bpm == pytest.approx(mido.tempo2bpm(tempo))


def test_meta_data_is_read():
  meta = mh.raw_track(
    [
      (0, mido.MetaMessage("time_signature", numerator=6, denominator=8)),
      (0, mido.MetaMessage("key_signature", key="Bb")),
    ]
  )
  song = read(mh.midi_file([meta, mh.note_track([(60, 0, Q)])]))
  assert song.time_signature == (6, 8)
  assert song.key_signature == "Bb"


@pytest.mark.parametrize(
  "song",
  [
    Song(events(((60,), 1), ((), F(1, 2)), ((62,), F(1, 2)))),
    Song(
      events(((60, 64, 67), F(1, 3)), ((60,), F(2, 3)), ((60,), 4)),
      tempo_bpm=90.0,
      time_signature=(3, 4),
      key_signature="Am",
    ),
    Song(events(((30,), F(1, 12)), ((), F(5, 12)), ((100,), 7))),
  ],
)
def test_write_then_read_is_identity(song, tmp_path):
  path = tmp_path / "song.mid"
  midi_io.write_midi(song, path)
  again = midi_io.read_midi(path)
  assert again._replace(tempo_bpm=0) == song._replace(tempo_bpm=0)
  # MIDI stores whole microseconds per quarter note.
  assert again.tempo_bpm == pytest.approx(song.tempo_bpm, rel=1e-6)
  assert not list(tmp_path.glob("*.tmp*"))


def test_writer_options():
  song = events(((60, 64), 1), ((), 1), ((67,), 1))
  midi = mido.MidiFile(
    file=io.BytesIO(
      midi_io.song_to_bytes(
        song,
        tempo_bpm=100,
        program=73,
        velocity=64,
        channel=2,
        key_signature="G",
        time_signature=(2, 4),
      )
    )
  )
  messages = [m for track in midi.tracks for m in track]
  kinds = {m.type for m in messages}
  assert {"set_tempo", "time_signature", "key_signature"} <= kinds
  program = [m for m in messages if m.type == "program_change"]
  assert program[0].program == 73 and program[0].channel == 2
  ons = [m for m in messages if m.type == "note_on"]
  assert [m.note for m in ons] == [60, 64, 67]
  assert {m.velocity for m in ons} == {64}
  with pytest.raises(ValueError, match="drums"):
    midi_io.song_to_midi(song, channel=9)


@pytest.mark.parametrize(
  "data, reason",
  [
    (b"", "truncated"),
    (b"RIFF....WAVEfmt not a midi file at all", "not_midi"),
    ("truncate", "truncated"),
    ("bad_key", "bad_meta"),
  ],
)
def test_corrupt_files_raise_midi_error_with_reason(data, reason):
  good = midi_io.song_to_bytes(
    Song(events(((60,), 1), ((62,), 1)), key_signature="D")
  )
  if data == "truncate":
    data = good[: len(good) - 7]
  elif data == "bad_key":
    i = good.find(bytes([0xFF, 0x59, 0x02]))
    data = good[: i + 3] + bytes([42]) + good[i + 4 :]
  with pytest.raises(midi_io.MidiError) as e:
    midi_io.read_midi(data)
  assert e.value.reason == reason


def test_file_without_notes_is_an_error_naming_it(tmp_path):
  path = mh.save(mh.midi_file([mh.raw_track([])]), tmp_path / "empty.mid")
  with pytest.raises(midi_io.MidiError, match="empty.mid") as e:
    midi_io.read_midi(path)
  assert e.value.reason == "no_notes"
