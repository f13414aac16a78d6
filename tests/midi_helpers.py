"""Small MIDI files written by the tests themselves, from message lists."""

import mido


def note_track(notes, channel=0, name=None, velocity_zero_off=False):
  """A track from (pitch, start_tick, end_tick) triples, any order."""
  timed = []
  for pitch, start, end in notes:
    timed.append(
      (
        start,
        1,
        mido.Message("note_on", note=pitch, velocity=90, channel=channel),
      )
    )
    if velocity_zero_off:
      off = mido.Message("note_on", note=pitch, velocity=0, channel=channel)
    else:
      off = mido.Message("note_off", note=pitch, velocity=0, channel=channel)
    timed.append((end, 0, off))
  timed.sort(key=lambda x: (x[0], x[1]))
  track = mido.MidiTrack()
  if name:
    track.append(mido.MetaMessage("track_name", name=name))
  last = 0
  for tick, _, msg in timed:
    track.append(msg.copy(time=tick - last))
    last = tick
  return track


def raw_track(messages):
  """A track from (delta_ticks, message) pairs."""
  track = mido.MidiTrack()
  for delta, msg in messages:
    track.append(msg.copy(time=delta))
  return track


def midi_file(tracks, midi_type=1, ticks_per_beat=480):
  midi = mido.MidiFile(type=midi_type, ticks_per_beat=ticks_per_beat)
  midi.tracks.extend(tracks)
  return midi


def save(midi, path):
  midi.save(str(path))
  return path
