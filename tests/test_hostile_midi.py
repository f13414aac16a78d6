"""The corpus build survives a folder of hostile MIDI files (seeded fuzz)."""

import json
import os
import struct
import time

import mido
import numpy as np
import pytest

from melodyjax.data import build
from melodyjax.data import config as data_config_lib
from melodyjax.music import midi_io
from tests import midi_helpers
from tests.helpers import tune, write_tunes

NUM_GOOD = 12


def _chunks(data: bytes) -> list[tuple[int, bytes, int]]:
  """(offset, name, declared length) of each chunk of a MIDI file."""
  found, offset = [], 0
  while offset + 8 <= len(data):
    name = data[offset : offset + 4]
    (size,) = struct.unpack(">L", data[offset + 4 : offset + 8])
    found.append((offset, name, size))
    offset += 8 + size
  return found


def _track_body(data: bytes) -> tuple[int, int]:
  """(start, end) of the last track's events."""
  offset, _, size = _chunks(data)[-1]
  return offset + 8, offset + 8 + size


def _replace_track(data: bytes, events: bytes) -> bytes:
  offset, _, _ = _chunks(data)[-1]
  return data[:offset] + b"MTrk" + struct.pack(">L", len(events)) + events


def make_hostile_files(good: list[bytes], seed: int) -> dict[str, bytes]:
  """Mutations of valid files, named by kind; reproducible from `seed`."""
  rng = np.random.default_rng(seed)
  files = {}
  pick = lambda: good[int(rng.integers(len(good)))]  # noqa: E731
  for i in range(50):  # random bit flips, 1-8 of them
    data = bytearray(pick())
    for _ in range(int(rng.integers(1, 9))):
      bit = int(rng.integers(len(data) * 8))
      data[bit // 8] ^= 1 << (bit % 8)
    files[f"bitflip_{i:02d}.mid"] = bytes(data)
  for i in range(15):  # truncated anywhere
    data = pick()
    files[f"truncated_{i:02d}.mid"] = data[: int(rng.integers(len(data)))]
  for i in range(10):  # random bytes behind a valid header
    data = pick()
    noise = rng.integers(0, 256, int(rng.integers(10, 400)), dtype=np.uint8)
    files[f"garbage_{i:02d}.mid"] = data[:22] + noise.tobytes()
  for i in range(6):  # absurd delta times: the largest VLQ, 0x0FFFFFFF
    data = pick()
    start, end = _track_body(data)
    body = data[start:end]
    at = 0 if i == 0 else int(rng.integers(0, 12)) * 4
    body = body[:at] + b"\xff\xff\xff\x7f\x90\x3c\x40" + body[at:]
    files[f"absurd_delta_{i}.mid"] = _replace_track(data, body)
  for i, tpb in enumerate((1, 0x7FFF)):  # absurd tick resolutions
    data = bytearray(pick())
    data[12:14] = struct.pack(">H", tpb)
    files[f"absurd_ticks_{i}.mid"] = bytes(data)
  for i, size in enumerate((0xFFFFFFFF, 0x7FFFFFFF, 3)):
    data = bytearray(pick())  # declared track length huge or too small
    offset, _, _ = _chunks(bytes(data))[-1]
    data[offset + 4 : offset + 8] = struct.pack(">L", size)
    files[f"declared_length_{i}.mid"] = bytes(data)
  data = bytearray(pick())  # a header that claims to be huge
  data[4:8] = struct.pack(">L", 0xFFFFFFF0)
  files["header_length.mid"] = bytes(data)
  bad_meta = (
    b"\x00\xff\x59\x02\x40\x05",  # key signature with 64 sharps
    b"\x00\xff\x51\x01\x07",  # tempo with one byte
    b"\x00\xff\x58\x7f\x04",  # time signature longer than the track
    b"\x00\xff\x03\xff\xff\xff\xff\x0f",  # name with a 4 GB length
  )
  for i, meta in enumerate(bad_meta):
    data = pick()
    start, end = _track_body(data)
    files[f"bad_meta_{i}.mid"] = _replace_track(data, meta + data[start:end])
  for i, events in enumerate(
    (
      b"\x00\x3c\x40\x00\xff\x2f\x00",  # data bytes before any status
      b"\x00\x90\x3c\x40\x00\xff\x2f\x00\x3c\x00",  # running status after meta
      b"\x00\xf4\x3c\x40",  # undefined status byte
    )
  ):
    files[f"running_status_{i}.mid"] = _replace_track(pick(), events)
  for i, division in enumerate((0xE250, 0xE728)):  # SMPTE: -30 fps, -25
    data = bytearray(pick())
    data[12:14] = struct.pack(">H", division)
    files[f"smpte_{i}.mid"] = bytes(data)
  data = bytearray(pick())
  data[8:10] = struct.pack(">H", 2)
  files["type2.mid"] = bytes(data)
  files["zero_tracks.mid"] = b"MThd" + struct.pack(">LHHH", 6, 1, 0, 480)
  files["negative_tracks.mid"] = b"MThd" + struct.pack(">LhhH", 6, 1, -3, 480)
  files["missing_tracks.mid"] = b"MThd" + struct.pack(">LHHH", 6, 1, 5, 480)
  files["empty.mid"] = b""
  for i in range(2):  # drums only
    notes = [(36 + j % 10, j * 240, j * 240 + 120) for j in range(30)]
    track = midi_helpers.note_track(notes, channel=9)
    files[f"drums_{i}.mid"] = _bytes(midi_helpers.midi_file([track]))
  # Every pitch on every channel at once (1,920 notes), three times.
  tracks = []
  for channel in (c for c in range(16) if c != 9):
    notes = [(p, k * 480, k * 480 + 240) for k in range(3) for p in range(128)]
    tracks.append(midi_helpers.note_track(notes, channel=channel))
  files["simultaneous.mid"] = _bytes(midi_helpers.midi_file(tracks))
  # Several MB: over the size limit, refused without being parsed.
  big = b"\x00\x90\x3c\x40\x00\x80\x3c\x00" * (5 * 2**20 // 8)
  files["several_mb.mid"] = _replace_track(pick(), big)
  return files


def _bytes(midi: mido.MidiFile) -> bytes:
  import io

  buffer = io.BytesIO()
  midi.save(file=buffer)
  return buffer.getvalue()


def _write_good(folder):
  for i in range(NUM_GOOD):
    midi_io.write_midi(tune(i, 10 + i), folder / f"good_{i:02d}.mid")


def _songs(dataset) -> dict:
  songs = {}
  with open(f"{dataset.path}/songs.jsonl") as f:
    for line in f:
      song = json.loads(line)
      songs[song["source"]] = (song["pitch"], song["duration"])
  return songs


# Files that no reading can accept, and the reason each must be given.
MUST_DROP = {
  "smpte_0.mid": "unsupported",
  "smpte_1.mid": "unsupported",
  "type2.mid": "unsupported",
  "zero_tracks.mid": "no_notes",
  "negative_tracks.mid": "no_notes",
  "missing_tracks.mid": "truncated",
  "empty.mid": "truncated",
  "drums_0.mid": "no_notes",
  "drums_1.mid": "no_notes",
  "several_mb.mid": "too_large",
  "absurd_delta_0.mid": "absurd_time",
  "running_status_0.mid": "unreadable",
  "running_status_2.mid": "unreadable",
}


@pytest.mark.parametrize("workers", [1, 2])
def test_hostile_folder_builds_and_good_files_are_unchanged(tmp_path, workers):
  good = [midi_io.song_to_bytes(tune(i, 10 + i)) for i in range(NUM_GOOD)]
  hostile = make_hostile_files(good, seed=workers)
  assert len(hostile) == 105  # 50 bit flips, 15 cuts, 10 garbage, 30 others
  alone_dir = tmp_path / "alone"
  alone_dir.mkdir()
  _write_good(alone_dir)
  mixed_dir = tmp_path / "mixed"
  mixed_dir.mkdir()
  _write_good(mixed_dir)
  for name, data in hostile.items():
    (mixed_dir / name).write_bytes(data)
  config = data_config_lib.CorpusConfig(valid_fraction=0.2, test_fraction=0.1)
  alone = build.build_dataset(
    alone_dir, tmp_path / "d1", config, workers=1, progress=False
  )
  start = time.perf_counter()
  mixed = build.build_dataset(
    mixed_dir, tmp_path / "d2", config, workers=2, progress=False
  )
  seconds = time.perf_counter() - start
  assert seconds < 60, f"hostile folder took {seconds:.1f} s"
  report = mixed.report
  assert report["files"] == NUM_GOOD + len(hostile)
  dropped = {d["source"]: d for d in report["dropped_files"]}
  kept = _songs(mixed)
  # Every file is a song or is in the report with its reason.
  assert set(dropped) | set(kept) == {p.name for p in mixed_dir.iterdir()}
  assert not set(dropped) & set(kept)
  for name, reason in MUST_DROP.items():
    assert dropped[name]["reason"] == reason, dropped[name]
  for drop in dropped.values():
    assert drop["source"] in drop["message"], drop
    assert drop["reason"] in report["dropped_by_reason"]
  # Most bit flips still parse; some are dropped: both paths are taken.
  assert any(n.startswith("bitflip") for n in kept)
  assert any(n.startswith("bitflip") for n in dropped)
  # The good files give exactly the tokens they give alone.
  alone_songs = _songs(alone)
  assert set(alone_songs) == {f"good_{i:02d}.mid" for i in range(NUM_GOOD)}
  for name, song in alone_songs.items():
    assert kept[name] == song, name


def test_hostile_files_are_reproducible():
  good = [midi_io.song_to_bytes(tune(i, 10 + i)) for i in range(3)]
  first = make_hostile_files(good, 7)
  assert first == make_hostile_files(good, 7)
  assert first != make_hostile_files(good, 8)


def test_limits_refuse_a_file_in_bounded_time(tmp_path, monkeypatch):
  notes = [(60 + i % 12, i * 60, i * 60 + 40) for i in range(6_000)]
  data = _bytes(midi_helpers.midi_file([midi_helpers.note_track(notes)]))
  song = midi_io.read_midi(data)
  assert len(song.events) > 1000
  monkeypatch.setattr(midi_io, "MAX_MESSAGES", 5_000)
  with pytest.raises(midi_io.MidiError) as e:
    midi_io.read_midi(data)
  assert e.value.reason == "too_many_events"
  monkeypatch.setattr(midi_io, "MAX_MESSAGES", 1_000_000)
  monkeypatch.setattr(midi_io, "MAX_SECONDS", 0.0)
  with pytest.raises(midi_io.MidiError) as e:
    midi_io.read_midi(data)
  assert e.value.reason == "too_slow"
  monkeypatch.setattr(midi_io, "MAX_FILE_BYTES", len(data) - 1)
  path = tmp_path / "big.mid"
  path.write_bytes(data)
  with pytest.raises(midi_io.MidiError) as e:
    midi_io.read_midi(path)
  assert e.value.reason == "too_large" and str(path) in str(e.value)


def test_special_files_and_loops_are_skipped_with_their_reason(tmp_path):
  """A FIFO (with no writer: opening it would block), a socket, a link to a
  device, a link loop and a folder named like a MIDI file, among good
  files: the build never waits, and each is dropped with its reason."""
  import socket

  midi_dir = tmp_path / "midi"
  write_tunes(midi_dir, 12, 3)
  os.mkfifo(midi_dir / "pipe.mid")
  server = socket.socket(socket.AF_UNIX)
  server.bind(str(midi_dir / "socket.mid"))
  os.symlink("/dev/zero", midi_dir / "device.mid")
  os.symlink("loop.mid", midi_dir / "loop.mid")
  (midi_dir / "folder.mid").mkdir()
  (midi_dir / "folder.mid" / "inner.mid").write_bytes(
    (midi_dir / "tune00.mid").read_bytes()
  )
  try:
    dataset = build.build_dataset(
      midi_dir, tmp_path / "data", progress=False, workers=1
    )
  finally:
    server.close()
  with open(tmp_path / "data" / "report.json") as f:
    report = json.load(f)
  reasons = {d["source"]: d["reason"] for d in report["dropped_files"]}
  assert reasons == {
    "pipe.mid": "not_a_file",
    "socket.mid": "not_a_file",
    "device.mid": "not_a_file",
    "loop.mid": "unreadable",
  }
  messages = {d["source"]: d["message"] for d in report["dropped_files"]}
  assert "named pipe (FIFO), not a regular file" in messages["pipe.mid"]
  assert "character device" in messages["device.mid"]
  assert "a socket, not a regular file" in messages["socket.mid"]
  assert "Too many levels of symbolic links" in messages["loop.mid"]
  assert report["songs"] == 13  # the 12 tunes and folder.mid/inner.mid
  assert len(dataset.train) + len(dataset.valid) + len(dataset.test) == 13


def test_a_file_that_changes_while_read_is_skipped(tmp_path, monkeypatch):
  path = tmp_path / "tune.mid"
  midi_io.write_midi(tune(0, 12), path)
  real_fstat = os.fstat
  calls = []

  def growing(fd):  # the second look sees the file grown
    result = real_fstat(fd)
    calls.append(fd)
    if len(calls) % 2 == 0:
      return os.stat_result((*result[:6], result.st_size + 1, *result[7:]))
    return result

  monkeypatch.setattr(midi_io.os, "fstat", growing)
  with pytest.raises(midi_io.MidiError, match="changed while it was read"):
    midi_io.read_midi(path)
