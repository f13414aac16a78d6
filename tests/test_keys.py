"""Key finding and normalisation."""

from fractions import Fraction as F

import pytest

from melodyjax.music import tonality
from melodyjax.music.events import Event, Song


def scale_song(tonic_pitch, steps, key_signature=None):
  """A tune from scale steps (semitones above the tonic), tonic weighted."""
  events = [Event((tonic_pitch + s,), F(1)) for s in steps]
  events += [Event((tonic_pitch,), F(2))]
  return Song(events, key_signature=key_signature)


MAJOR_TUNE = [0, 2, 4, 5, 7, 4, 0, 7, 9, 7, 5, 4, 2, 0]
MINOR_TUNE = [0, 2, 3, 5, 7, 3, 0, 7, 8, 7, 5, 3, 2, 0]


def test_signature_names():
  assert tonality.parse_key_signature("F#m") == (6, tonality.MINOR)
  assert tonality.parse_key_signature("Bb") == (10, tonality.MAJOR)
  assert tonality.key_signature_name(9, tonality.MINOR) == "Am"
  with pytest.raises(ValueError):
    tonality.parse_key_signature("H")


@pytest.mark.parametrize("tonic", range(12))
def test_estimate_without_signature(tonic):
  assert tonality.find_key(scale_song(60 + tonic, MAJOR_TUNE)) == (
    tonic,
    tonality.MAJOR,
  )
  assert tonality.find_key(scale_song(60 + tonic, MINOR_TUNE)) == (
    tonic,
    tonality.MINOR,
  )


def test_signature_gives_tonic_and_notes_give_mode():
  # ESAC writes a D minor tune with the D major signature.
  assert tonality.find_key(scale_song(62, MINOR_TUNE, "D")) == (
    2,
    tonality.MINOR,
  )
  assert tonality.find_key(scale_song(62, MAJOR_TUNE, "D")) == (
    2,
    tonality.MAJOR,
  )
  # A minor tune under the C signature is its relative minor.
  assert tonality.find_key(scale_song(57, MINOR_TUNE, "C")) == (
    9,
    tonality.MINOR,
  )
  # A minor signature is taken as it is.
  assert tonality.find_key(scale_song(64, MAJOR_TUNE, "Em")) == (
    4,
    tonality.MINOR,
  )


@pytest.mark.parametrize(
  "tonic, mode, shift",
  [
    (0, "major", 0),
    (7, "major", 5),
    (5, "major", -5),
    (6, "major", -6),
    (9, "minor", 0),
    (2, "minor", -5),
    (4, "minor", 5),
    (11, "minor", -2),
  ],
)
def test_normalizing_shift(tonic, mode, shift):
  assert tonality.normalizing_shift(tonic, mode) == shift
  assert (tonic + shift) % 12 == (0 if mode == "major" else 9)


def test_transpose_keeps_durations_and_guards_range():
  song = scale_song(62, MAJOR_TUNE)
  moved = tonality.transpose(song.events, -2)
  assert [e.pitches[0] for e in moved] == [
    e.pitches[0] - 2 for e in song.events
  ]
  assert [e.quarters for e in moved] == [e.quarters for e in song.events]
  assert tonality.transpose([Event((126,), F(1))], 3) is None
  rest = [Event((), F(1))]
  assert tonality.transpose(rest, 5) == rest
