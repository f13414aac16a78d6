"""Token spelling, parsing and vocabularies."""

from fractions import Fraction as F

import numpy as np
import pytest

from melodyjax.music import tokens
from melodyjax.music.events import Event


@pytest.mark.parametrize(
  "pitches, token",
  [
    ((60,), "C4"),
    ((80,), "G#5"),
    ((0,), "C-1"),
    ((127,), "G9"),
    ((60, 64, 67), "C4.E4.G4"),
    ((), "R"),
  ],
)
def test_pitch_tokens(pitches, token):
  assert tokens.pitch_token(pitches) == token
  assert tokens.parse_pitch_token(token) == pitches


def test_flats_parse_and_chords_sort():
  assert tokens.parse_pitch_token("Bb3") == (58,)
  assert tokens.parse_pitch_token("G4.C4.E4") == (60, 64, 67)
  with pytest.raises(tokens.TokenError, match="H4"):
    tokens.parse_pitch_token("H4")


@pytest.mark.parametrize(
  "quarters, token",
  [
    (F(1, 2), "0.5"),
    (F(1), "1.0"),
    (F(1, 3), "1/3"),
    (F(4, 3), "4/3"),
    (F(3, 4), "0.75"),
    (F(1, 16), "0.0625"),
    (F(5, 12), "5/12"),
    (F(4), "4.0"),
  ],
)
def test_duration_tokens(quarters, token):
  assert tokens.duration_token(quarters) == token
  assert tokens.parse_duration_token(token) == quarters


def test_bad_duration_tokens():
  for token in ("x", "0", "-1", "1/0"):
    with pytest.raises(tokens.TokenError):
      tokens.parse_duration_token(token)


def test_events_to_tokens_and_back():
  events = [
    Event((60,), F(1, 2)),
    Event((), F(1)),
    Event((60, 67), F(2, 3)),
  ]
  pitch, duration = tokens.event_tokens(events)
  assert pitch == ["C4", "R", "C4.G4"]
  assert duration == ["0.5", "1.0", "2/3"]
  assert tokens.tokens_to_events(pitch, duration) == events
  with pytest.raises(tokens.TokenError, match="length"):
    tokens.tokens_to_events(pitch, duration[:2])


def test_vocab_reserved_ids_order_and_min_count():
  counts = {"G4": 5, "C4": 9, "R": 3, "C4.E4": 2, "A#3": 1}
  vocab = tokens.build_vocab("pitch", counts, min_count=2)
  assert vocab.tokens[:4] == tokens.RESERVED
  assert (tokens.PAD_ID, tokens.BOS_ID, tokens.EOS_ID, tokens.UNK_ID) == (
    0,
    1,
    2,
    3,
  )
  assert vocab.tokens[4:] == ("R", "C4", "G4", "C4.E4")
  ids = vocab.encode(["C4", "A#3", "G4"])
  assert ids.dtype == np.int32
  assert list(ids) == [5, tokens.UNK_ID, 6]
  assert vocab.decode(ids) == ["C4", "<unk>", "G4"]

  durations = tokens.build_vocab("duration", {"1.0": 3, "1/3": 1, "0.5": 2})
  assert durations.tokens[4:] == ("1/3", "0.5", "1.0")


def test_vocab_json_round_trip(tmp_path):
  vocab = tokens.build_vocab("duration", {"1.0": 3, "1/3": 1, "0.5": 2})
  path = tmp_path / "vocab_duration.json"
  vocab.save(path)
  text = path.read_text()
  assert '"token": "1/3"' in text  # human-readable
  again = tokens.Vocab.load(path)
  assert again == vocab
  assert again.encode(["0.5", "1.0"]).tolist() == [5, 6]


def test_vocab_rejects_bad_layouts():
  with pytest.raises(ValueError, match="start with"):
    tokens.Vocab("pitch", ("C4",))
  with pytest.raises(ValueError, match="stream"):
    tokens.Vocab("velocity", tokens.RESERVED)
