"""`melodyjax-corpus` (also `python -m melodyjax.cli.corpus`): build or
reload the dataset of a MIDI folder, or of ABC, and print its report.

  melodyjax-corpus --midi_dir DIR --out DATASET_DIR \
    [--export_jsonl FILE] [--check_roundtrip] [data options as config.data]
    [--exclude_test_of OTHER_DATASET_DIR [--exclude_valid]]
  melodyjax-corpus --abc TUNES.abc|FOLDER|tunes.csv|tunes.json \
    --out DATASET_DIR [--repeats once|play] [the same options]

With --abc the tunes become MIDI files in DATASET_DIR/midi first
(`data.corpora.abc_source`; a second run with the same ABC skips it).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Sequence

from absl import flags

from melodyjax import cli, errors
from melodyjax.data import build
from melodyjax.data import config as data_config_lib
from melodyjax.data import report as build_report
from melodyjax.data.corpora import abc_source
from melodyjax.data.corpora import summary as convert_summary
from melodyjax.music import midi_io

PROG = "melodyjax-corpus"
FLAGS = cli.tool_flags()
_DEFAULTS = data_config_lib.CorpusConfig()

flags.DEFINE_string(
  "midi_dir",
  None,
  "Folder of MIDI files (searched recursively).",
  flag_values=FLAGS,
)
flags.DEFINE_string(
  "abc",
  None,
  "An ABC tunebook, a folder of them, or The Session's tunes.csv or "
  "tunes.json (instead of --midi_dir).",
  flag_values=FLAGS,
)
flags.DEFINE_enum(
  "repeats",
  data_config_lib.DEFAULT_REPEATS,
  data_config_lib.REPEATS,
  "With --abc: play each section once, or play the repeats.",
  flag_values=FLAGS,
)
flags.DEFINE_string("out", None, "Dataset folder.", flag_values=FLAGS)
flags.DEFINE_string(
  "export_jsonl", None, "Also write the tokens here.", flag_values=FLAGS
)
flags.DEFINE_integer(
  "workers", None, "Processes (default: all cores).", flag_values=FLAGS
)
flags.DEFINE_bool(
  "check_roundtrip",
  False,
  "Check events -> MIDI -> events for every song.",
  flag_values=FLAGS,
)
flags.DEFINE_bool(
  "force", False, "Rebuild even if the cache is fresh.", flag_values=FLAGS
)
flags.DEFINE_bool("no_progress", False, "No progress bar.", flag_values=FLAGS)
# The data options, as config.data.
flags.DEFINE_integer(
  "grid",
  _DEFAULTS.grid,
  "Quantization steps per quarter note.",
  flag_values=FLAGS,
)
flags.DEFINE_enum(
  "polyphony",
  _DEFAULTS.polyphony,
  midi_io.POLYPHONY_POLICIES,
  "Notes that share an onset.",
  flag_values=FLAGS,
)
flags.DEFINE_enum(
  "tracks",
  _DEFAULTS.tracks,
  midi_io.TRACK_POLICIES,
  "Merge every non-drum track, or keep the melody part.",
  flag_values=FLAGS,
)
flags.DEFINE_bool(
  "normalize_key",
  _DEFAULTS.normalize_key,
  "Transpose songs to C major / A minor.",
  flag_values=FLAGS,
)
flags.DEFINE_list(
  "transpositions",
  list(_DEFAULTS.transpositions),
  "Augmentation shifts in semitones, e.g. -2,-1,1,2.",
  flag_values=FLAGS,
)
flags.DEFINE_integer(
  "min_notes",
  _DEFAULTS.min_notes,
  "Shorter songs are dropped.",
  flag_values=FLAGS,
)
flags.DEFINE_integer(
  "max_notes",
  _DEFAULTS.max_notes,
  "Longer songs are dropped (0: no limit).",
  flag_values=FLAGS,
)
flags.DEFINE_integer(
  "min_count",
  _DEFAULTS.min_count,
  "Rarer training tokens map to unk.",
  flag_values=FLAGS,
)
flags.DEFINE_integer(
  "min_label_songs",
  _DEFAULTS.min_label_songs,
  "Rarer labels (time signature, mode, style) are unknown.",
  flag_values=FLAGS,
)
flags.DEFINE_float(
  "valid_fraction",
  _DEFAULTS.valid_fraction,
  "Share of songs in validation.",
  flag_values=FLAGS,
)
flags.DEFINE_float(
  "test_fraction",
  _DEFAULTS.test_fraction,
  "Share of songs in test.",
  flag_values=FLAGS,
)
flags.DEFINE_bool(
  "group_splits",
  _DEFAULTS.group_splits,
  "Split groups of settings and near-duplicates (--nogroup_splits: by "
  "the hash of each path).",
  flag_values=FLAGS,
)
flags.DEFINE_string(
  "exclude_test_of",
  _DEFAULTS.exclude_test_of,
  "A dataset folder: leave out every song that matches one of its test "
  "songs (identical or a near-duplicate, maybe transposed).",
  flag_values=FLAGS,
)
flags.DEFINE_bool(
  "exclude_valid",
  _DEFAULTS.exclude_valid,
  "With --exclude_test_of: its validation songs' matches too.",
  flag_values=FLAGS,
)
flags.mark_flags_as_required(["out"], flag_values=FLAGS)


def corpus_config() -> data_config_lib.CorpusConfig:
  """The data options of the flags."""
  try:
    shifts = tuple(int(x) for x in FLAGS.transpositions)
  except ValueError:
    raise errors.UsageError(
      "--transpositions: expected semitones such as -2,-1,1,2, got "
      f"{','.join(FLAGS.transpositions)!r}"
    ) from None
  values = {
    field.name: FLAGS[field.name].value
    for field in dataclasses.fields(data_config_lib.CorpusConfig)
  }
  return data_config_lib.CorpusConfig(**{**values, "transpositions": shifts})


def main(argv: Sequence[str] | None = None) -> int:
  """Builds or loads the dataset and prints its report; the exit status."""
  prog = cli.tool_prog(PROG, argv)
  cli.parse_flags(cli.tool_argv(prog, argv), FLAGS)
  with cli.user_errors(prog, FLAGS):
    start = time.perf_counter()
    try:
      midi_dir = _midi_dir()
      dataset = build.build_dataset(
        midi_dir,
        FLAGS.out,
        corpus_config(),
        workers=FLAGS.workers,
        check_roundtrip=FLAGS.check_roundtrip,
        force=FLAGS.force,
        progress=not FLAGS.no_progress,
      )
      seconds = time.perf_counter() - start
      if FLAGS.export_jsonl:
        build.export_jsonl(dataset, FLAGS.export_jsonl)
    except OSError as e:
      raise errors.CorpusError(f"{e.filename}: {e.strerror}") from None
  print(build_report.format_report(dataset.report))
  print(f"dataset: {dataset.path} (ready in {seconds:.2f} s)")
  if FLAGS.export_jsonl:
    print(f"export: {FLAGS.export_jsonl}")
  return 0


def _midi_dir() -> str:
  """--midi_dir, or the MIDI folder --abc is converted into.

  Raises:
    errors.UsageError: both or neither of --midi_dir and --abc.
  """
  if (FLAGS.midi_dir is None) == (FLAGS.abc is None):
    raise errors.UsageError("give --midi_dir or --abc (one of them)")
  if FLAGS.midi_dir is not None:
    return FLAGS.midi_dir
  midi_dir, summary = abc_source.convert_for_dataset(
    FLAGS.abc,
    FLAGS.out,
    repeats=FLAGS.repeats,
    workers=FLAGS.workers,
    progress=not FLAGS.no_progress,
    force=FLAGS.force,
  )
  print(convert_summary.format_summary(summary))
  return midi_dir


if __name__ == "__main__":
  sys.exit(main())
