"""`python -m melodyjax.corpus`: build (or reload) a MIDI folder's dataset."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence

from melodyjax.data import build
from melodyjax.data import dataset as dataset_lib
from melodyjax.data import report as build_report
from melodyjax.music import midi_io


class _ArgumentParser(argparse.ArgumentParser):
  """argparse that reports a user mistake in one line, without usage."""

  def error(self, message):
    self.exit(2, f"{self.prog}: error: {message}\n")


def _bool(text: str) -> bool:
  if text.lower() in ("1", "true", "yes"):
    return True
  if text.lower() in ("0", "false", "no"):
    return False
  raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _ints(text: str) -> tuple[int, ...]:
  try:
    return tuple(int(x) for x in text.replace(",", " ").split())
  except ValueError:
    raise argparse.ArgumentTypeError(
      f"expected semitones such as -2,-1,1,2, got {text!r}"
    ) from None


def run(argv: Sequence[str] | None = None) -> None:
  """Entry point of `python -m melodyjax.corpus`: build or load, report."""
  defaults = dataset_lib.CorpusConfig()
  parser = _ArgumentParser(
    prog="python -m melodyjax.corpus",
    description="Build (or reload) the tokenized dataset of a MIDI folder.",
  )
  parser.add_argument(
    "--midi_dir",
    required=True,
    help="folder of MIDI files (searched recursively)",
  )
  parser.add_argument("--out", required=True, help="dataset folder")
  parser.add_argument("--export_jsonl", help="also write the tokens here")
  parser.add_argument(
    "--workers", type=int, default=None, help="processes (default: all cores)"
  )
  parser.add_argument(
    "--check_roundtrip",
    action="store_true",
    help="check events -> MIDI -> events for every song",
  )
  parser.add_argument(
    "--force", action="store_true", help="rebuild even if the cache is fresh"
  )
  parser.add_argument("--no_progress", action="store_true")
  group = parser.add_argument_group("data options (as config.data)")
  group.add_argument(
    "--grid",
    type=int,
    default=defaults.grid,
    help="quantization steps per quarter note",
  )
  group.add_argument(
    "--polyphony",
    choices=midi_io.POLYPHONY_POLICIES,
    default=defaults.polyphony,
  )
  group.add_argument(
    "--tracks", choices=midi_io.TRACK_POLICIES, default=defaults.tracks
  )
  group.add_argument(
    "--normalize_key", type=_bool, default=defaults.normalize_key
  )
  group.add_argument(
    "--transpositions",
    type=_ints,
    default=defaults.transpositions,
    help="augmentation shifts in semitones, e.g. -2,-1,1,2",
  )
  group.add_argument("--min_notes", type=int, default=defaults.min_notes)
  group.add_argument("--max_notes", type=int, default=defaults.max_notes)
  group.add_argument("--min_count", type=int, default=defaults.min_count)
  group.add_argument(
    "--valid_fraction", type=float, default=defaults.valid_fraction
  )
  group.add_argument(
    "--test_fraction", type=float, default=defaults.test_fraction
  )
  args = parser.parse_args(argv)
  names = [f.name for f in dataclasses.fields(dataset_lib.CorpusConfig)]
  try:
    config = dataset_lib.CorpusConfig(
      **{name: getattr(args, name) for name in names}
    )
    start = time.perf_counter()
    dataset = build.build_dataset(
      args.midi_dir,
      args.out,
      config,
      workers=args.workers,
      check_roundtrip=args.check_roundtrip,
      force=args.force,
      progress=not args.no_progress,
    )
    seconds = time.perf_counter() - start
    if args.export_jsonl:
      build.export_jsonl(dataset, args.export_jsonl)
  except dataset_lib.CorpusError as e:
    parser.exit(2, f"{parser.prog}: error: {e}\n")
  except OSError as e:
    parser.exit(2, f"{parser.prog}: error: {e.filename}: {e.strerror}\n")
  print(build_report.format_report(dataset.report))
  print(f"dataset: {dataset.path} (ready in {seconds:.2f} s)")
  if args.export_jsonl:
    print(f"export: {args.export_jsonl}")


if __name__ == "__main__":
  sys.exit(run())
