"""`python -m melodyjax.esac`: convert ESAC from music21 to MIDI once."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from melodyjax.data import esac


class _ArgumentParser(argparse.ArgumentParser):
  """argparse that reports a user mistake in one line, without usage."""

  def error(self, message):
    self.exit(2, f"{self.prog}: error: {message}\n")


def _positive(text: str) -> int:
  try:
    value = int(text)
  except ValueError:
    value = 0
  if value < 1:
    raise argparse.ArgumentTypeError(f"expected a positive integer: {text!r}")
  return value


def main(argv: Sequence[str] | None = None) -> int:
  """Entry point of `python -m melodyjax.esac`; returns the exit status."""
  parser = _ArgumentParser(
    prog="python -m melodyjax.esac",
    description="Convert the ESAC folksongs shipped by music21 to MIDI files.",
  )
  parser.add_argument(
    "--out",
    default=None,
    help=f"output folder (default: {esac.default_midi_dir()})",
  )
  parser.add_argument(
    "--workers",
    type=_positive,
    default=None,
    help="processes (default: all cores)",
  )
  parser.add_argument(
    "--limit_files",
    type=_positive,
    default=None,
    help="only the first N ABC files",
  )
  parser.add_argument(
    "--limit_tunes",
    type=_positive,
    default=None,
    help="only the first N tunes of each file",
  )
  parser.add_argument(
    "--force", action="store_true", help="convert even if already done"
  )
  parser.add_argument(
    "--no_progress", action="store_true", help="no progress bar"
  )
  args = parser.parse_args(argv)
  try:
    summary = esac.convert_corpus(
      args.out or esac.default_midi_dir(),
      workers=args.workers,
      limit_files=args.limit_files,
      limit_tunes=args.limit_tunes,
      progress=not args.no_progress,
      force=args.force,
    )
  except esac.EsacError as e:
    print(f"{parser.prog}: error: {e}", file=sys.stderr)
    return 1
  print(esac.format_summary(summary))
  return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":
  sys.exit(main())
