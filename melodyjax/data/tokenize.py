"""One MIDI file to a song record of tokens, or to a drop reason; a folder of
them in worker processes. No JAX.

A record holds the file's split (a hash of its path), its key, and its
token sequences: the original, key-normalised if asked, and the training
split's transposed copies; and what a model can be conditioned on
(`data.labels`): each event's bar position and time signature
(`music.metre`; the pickups and meters of a conversion's ABC text), the
mode, the style (top-level subfolder); and, for a conversion of ABC, what
is known of its tune (`corpora.builtin.tune_records`: title, collection,
type, The Session's tune and setting ids, meter, key and mode).
"""

from __future__ import annotations

import fractions
import multiprocessing
import os
import sys
from collections.abc import Sequence

from melodyjax.data import config as data_config_lib
from melodyjax.data import dataset as dataset_lib
from melodyjax.data import groups, labels
from melodyjax.data.corpora import builtin
from melodyjax.music import metre, midi_io, tokens, tonality

MIDI_SUFFIXES = (".mid", ".midi", ".smf", ".kar")


def list_midi_files(midi_dir: str | os.PathLike) -> list[str]:
  """Relative paths of the MIDI files below `midi_dir`, sorted."""
  root = os.fspath(midi_dir)
  found = []
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames.sort()
    for name in filenames:
      if name.lower().endswith(MIDI_SUFFIXES) and not name.startswith("."):
        found.append(os.path.relpath(os.path.join(dirpath, name), root))
  found.sort()
  return found


def tokenize_file(
  midi_dir: str,
  relpath: str,
  config: data_config_lib.CorpusConfig,
  check_roundtrip: bool,
  hint: str | None = None,
) -> dict:
  """One file to a song record, or a drop record with a reason.

  `hint` is the file's metre hint from `corpora.builtin.metre_hints`, if
  any. The split is the hash of the path; with `config.group_splits` the build
  replaces it by the group's (`data.groups`).
  """
  path = os.path.join(midi_dir, relpath)
  try:
    song = midi_io.read_midi(
      path,
      grid=config.grid,
      polyphony=config.polyphony,
      tracks=config.tracks,
    )
  except midi_io.MidiError as e:
    return {"source": relpath, "drop": e.reason, "message": str(e)}
  except Exception as e:  # noqa: BLE001 - a corrupt file never stops a build
    return {"source": relpath, "drop": "unreadable", "message": f"{path}: {e}"}
  num_notes = sum(1 for event in song.events if event.pitches)
  if num_notes < config.min_notes:
    return {
      "source": relpath,
      "drop": "too_short",
      "message": f"{path}: {num_notes} notes < min_notes",
    }
  if config.max_notes and num_notes > config.max_notes:
    return {
      "source": relpath,
      "drop": "too_long",
      "message": f"{path}: {num_notes} notes > max_notes",
    }
  record = {
    "source": relpath,
    "split": dataset_lib.assign_split(relpath, config),
  }
  if check_roundtrip:
    again = midi_io.read_midi(
      midi_io.song_to_bytes(song),
      grid=config.grid,
      polyphony=config.polyphony,
      tracks=config.tracks,
    )
    record["roundtrip"] = again.events == song.events
  events = song.events
  if config.group_splits or config.exclude_test_of:
    record["fingerprint"] = groups.fingerprint(events)
  try:
    tonic, mode = tonality.find_key(song)
  except ValueError:
    tonic, mode = tonality.estimate_key(events)
  record["key"] = tonality.key_signature_name(tonic, mode)
  record["key_source"] = "signature" if song.key_signature else "estimate"
  record["mode"] = mode
  record["style"] = labels.style_of(relpath)
  record["metre"] = _metre_record(song, config.grid, hint)
  if config.normalize_key:
    shifted = tonality.transpose(
      events, tonality.normalizing_shift(tonic, mode)
    )
    if shifted is None:
      return {
        "source": relpath,
        "drop": "out_of_range",
        "message": f"{path}: pitches leave 0-127 when normalised",
      }
    events = shifted
  # Grouped splits are known only once every song is read: every song gets
  # its copies, and `drop_held_out_copies` removes the held-out songs'.
  transpose = record["split"] == "train" or config.group_splits
  record["copies"] = _copies(events, config.transpositions if transpose else ())
  record["notes"] = num_notes
  return record


def _copies(events, shifts: Sequence[int]) -> list[tuple[int, tuple]]:
  """(shift, tokens) of the events and of each transposition by `shifts`
  that stays in range (shift 0 is the events themselves, first)."""
  copies = [(0, tokens.event_tokens(events))]
  for shift in shifts:
    if shift != 0 and (moved := tonality.transpose(events, shift)) is not None:
      copies.append((shift, tokens.event_tokens(moved)))
  return copies


def _metre_record(song, grid: int, hint: str | None) -> dict:
  """Bar positions and time signature labels of a song (see `metre`)."""
  if hint == metre.NO_METER:
    song = song._replace(time_signature=None)
  pickup = (
    fractions.Fraction(hint) if hint not in (None, metre.NO_METER) else None
  )
  found = metre.song_metre(song, grid, pickup)
  label = lambda s: s and metre.signature_label(s)  # noqa: E731
  return {
    "positions": found.positions,
    "signatures": [label(s) for s in found.signatures],
    "end_position": found.end_position,
    "end_signature": label(found.end_signature),
    "pickup_steps": found.pickup_steps,
  }


def _process_chunk(args) -> list[dict]:
  midi_dir, relpaths, config, check_roundtrip, hints = args
  return [
    tokenize_file(midi_dir, r, config, check_roundtrip, hints.get(r))
    for r in relpaths
  ]


def drop_held_out_copies(records: Sequence[dict]) -> None:
  """Keeps only the original of each song outside the training split (and
  forgets the fingerprints, which the build no longer needs)."""
  for record in records:
    record.pop("fingerprint", None)
    if record.get("split", "train") != "train":
      del record["copies"][1:]


def tokenize_files(
  midi_dir: str,
  relpaths: Sequence[str],
  config: data_config_lib.CorpusConfig,
  check_roundtrip: bool,
  workers: int,
  progress: bool,
) -> list[dict]:
  """Processes all files, in worker processes when workers > 1."""
  from tqdm import tqdm

  tunes = builtin.tune_records(midi_dir)
  hints = builtin.metre_hints(midi_dir, tunes)

  bar = tqdm(
    total=len(relpaths),
    desc="reading MIDI",
    unit="file",
    disable=not progress,
    file=sys.stderr,
    mininterval=0.5,
  )
  records = []
  chunk = 64
  jobs = []
  for i in range(0, len(relpaths), chunk):
    part = relpaths[i : i + chunk]
    hinted = {r: hints[r] for r in part if r in hints}
    jobs.append((midi_dir, part, config, check_roundtrip, hinted))
  with bar:
    if workers <= 1 or len(jobs) <= 1:
      for job in jobs:
        records.extend(_process_chunk(job))
        bar.update(len(job[1]))
    else:
      # fork is fastest, but not once JAX has started its threads.
      method = "forkserver" if "jax" in sys.modules else "fork"
      context = multiprocessing.get_context(method)
      with context.Pool(workers) as pool:
        for result in pool.imap_unordered(_process_chunk, jobs):
          records.extend(result)
          bar.update(len(result))
  for record in records:
    if record["source"] in tunes:
      record["tune"] = tunes[record["source"]]
  records.sort(key=lambda r: r["source"])
  return records
