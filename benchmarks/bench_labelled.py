"""The baselines without labels and given the labels of a conditioned run,
on one dataset's test split.

  .venv/bin/python -m benchmarks.bench_labelled [--dataset DIR]
      [--labels time_signature,bar_position,mode,style]

Prints each baseline's test bits per note (both streams, pitch, duration)
without labels (`evaluation.baselines`) and given each set of labels
(`evaluation.labelled`: what `melodyjax-evaluate` compares a run
conditioned on them with), the mixture weights chosen on validation and
the fitting time. `configs/best_cpu.py` reads all four kinds.
"""

from __future__ import annotations

import argparse
import os
import time

from melodyjax import files
from melodyjax.data import dataset as dataset_lib
from melodyjax.evaluation import baselines, labelled

LABEL_SETS = (
  ("time_signature", "bar_position"),
  ("mode",),
  ("style",),
  labelled.KINDS,
)


def _cells(scores) -> str:
  return (
    f"{scores['bits_per_note']:.3f} (pitch {scores['bits_per_note_pitch']:.3f}"
    f", duration {scores['bits_per_note_duration']:.3f})"
  )


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument(
    "--dataset", default=os.path.join(files.cache_dir("datasets"), "esac")
  )
  parser.add_argument(
    "--labels",
    action="append",
    help="comma-separated label kinds (repeatable; default: "
    "metre, mode, style, and all four)",
  )
  args = parser.parse_args(argv)
  dataset = dataset_lib.load_dataset(os.path.expanduser(args.dataset))
  start = time.perf_counter()
  plain = baselines.fit(dataset)
  scores = baselines.score(dataset, plain)
  print(f"{dataset.path}: {len(dataset.test.originals())} test songs")
  print(f"without labels ({time.perf_counter() - start:.0f} s):")
  for name, s in scores.items():
    print(f"  {name:10s} {_cells(s)}")
  sets = [tuple(s.split(",")) for s in args.labels] if args.labels else None
  for kinds in sets or LABEL_SETS:
    start = time.perf_counter()
    fitted = labelled.fit(dataset, plain, kinds)
    given = labelled.score(dataset, fitted)
    settings = fitted.settings()
    print(
      f"given {', '.join(fitted.kinds)} "
      f"({time.perf_counter() - start:.0f} s; weights "
      f"{settings['weights']}, components {settings['components']}, "
      f"best of stream {settings['best_of_stream']}):"
    )
    for name, s in given.items():
      print(f"  {name:10s} {_cells(s)}")


if __name__ == "__main__":
  main()
