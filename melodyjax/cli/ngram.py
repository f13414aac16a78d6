"""`melodyjax-ngram` (also `python -m melodyjax.cli.ngram`): fit and score
the Kneser-Ney baseline.

  melodyjax-ngram --dataset DIR [--max_order 8] [--split test]

Fits one model per stream on the training split, chooses each order on the
validation split and reports the chosen split.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from absl import flags

from melodyjax import cli
from melodyjax.data import dataset as dataset_lib
from melodyjax.evaluation import ngram

PROG = "melodyjax-ngram"
FLAGS = cli.tool_flags()
flags.DEFINE_string("dataset", None, "Dataset folder.", flag_values=FLAGS)
flags.DEFINE_integer(
  "max_order", 12, "Highest order tried.", lower_bound=1, flag_values=FLAGS
)
flags.DEFINE_enum(
  "discounting",
  "modified",
  ngram.DISCOUNTING,
  "Kneser-Ney variant.",
  flag_values=FLAGS,
)
flags.DEFINE_enum(
  "split", "test", ["valid", "test"], "Split to score.", flag_values=FLAGS
)
flags.mark_flags_as_required(["dataset"], flag_values=FLAGS)


def main(argv: Sequence[str] | None = None) -> int:
  """Fits, scores and prints; the exit status."""
  prog = cli.tool_prog(PROG, argv)
  cli.parse_flags(cli.tool_argv(prog, argv), FLAGS)
  with cli.user_errors(prog, FLAGS):
    dataset = dataset_lib.load_dataset(FLAGS.dataset)
    fitted = ngram.fit_streams(dataset, FLAGS.max_order, FLAGS.discounting)
    results = ngram.evaluate_streams(dataset, fitted, FLAGS.split)
  print(ngram.format_results(fitted, results))
  return 0


if __name__ == "__main__":
  sys.exit(main())
