"""`python -m melodyjax.evaluate`: score a run and write its report."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from melodyjax import cli
from melodyjax.evaluation import report as evaluation


def run(argv: Sequence[str] | None = None) -> None:
  """Entry point of `python -m melodyjax.evaluate`."""
  parser = argparse.ArgumentParser(
    prog="python -m melodyjax.evaluate", description=__doc__.splitlines()[0]
  )
  parser.add_argument("--workdir", required=True)
  parser.add_argument(
    "--step", default="latest", help="'latest', 'best' or a step number"
  )
  parser.add_argument("--output_dir", help="default: the workdir")
  parser.add_argument("--num_samples", type=int, default=100)
  parser.add_argument("--num_notes", type=int, default=256)
  parser.add_argument("--temperature", type=float, default=1.0)
  parser.add_argument("--max_order", type=int, default=8)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)

  with cli.user_errors(parser.prog):
    result = evaluation.evaluate_run(
      args.workdir,
      step=args.step,
      output_dir=args.output_dir,
      num_samples=args.num_samples,
      num_notes=args.num_notes,
      temperature=args.temperature,
      max_order=args.max_order,
      seed=args.seed,
      log=lambda m: print(m, file=sys.stderr),
    )
  m, n = result["model"], result["ngram"]
  print(
    f"test bits/note: model {m['bits_per_note']:.3f} (pitch "
    f"{m['bits_per_note_pitch']:.3f}, duration "
    f"{m['bits_per_note_duration']:.3f}); n-gram {n['bits_per_note']:.3f} "
    f"(pitch {n['bits_per_note_pitch']:.3f}, duration "
    f"{n['bits_per_note_duration']:.3f})"
  )
  print(f"report: {result['report']}")


if __name__ == "__main__":
  sys.exit(run())
