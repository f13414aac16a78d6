"""The memory of the song, option by option, against the best baseline.

  .venv/bin/python -m benchmarks.bench_song_memory \\
      --run "ESAC key-normalised=runs/esac_dgp" [--run LABEL=WORKDIR ...] \\
      [--step best] [--json FILE] [--markdown FILE]

For each run (its best validation step by default): the classical baselines
fitted on its dataset's training split (`evaluation.baselines`, settings on
validation), the memories' settings chosen on validation
(`evaluation.memory.choose_settings`), then the test split's bits per note
(both streams, pitch, duration) of every combination of the memories
(none, dynamic evaluation, neural cache, short-term model) and of the best
baseline, with the ratio to it and the seconds each scoring took. Every
row is given the same information: the events of the corpus's training
songs and of the song so far, and for a conditioned run the labels it
reads (the baselines are then `evaluation.labelled`'s).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

if __name__ == "__main__":
  from melodyjax.cli import runtime

  runtime.reexec_with_fast_malloc()

from benchmarks import harness  # noqa: E402
from melodyjax.evaluation import memory as memory_eval  # noqa: E402
from melodyjax.evaluation import predict, report  # noqa: E402
from melodyjax.training import runs  # noqa: E402


def measure(label: str, workdir: str, step: str) -> dict:
  """Every memory combination of one run, and the best baseline, on test."""
  run = runs.from_workdir(workdir, step)
  dataset = predict.load_dataset_of(run)
  start = time.perf_counter()
  both = report.fit_baselines(dataset, run.model.config.conditions)
  baseline = report.same_information_best(both)
  baseline_seconds = time.perf_counter() - start
  memory = memory_eval.score_run(
    run, dataset, both.plain, baseline["bits_per_note"]
  )
  return {
    "label": label,
    "workdir": workdir,
    "step": run.step,
    "dataset": str(dataset.path),
    "baseline": baseline,
    "baseline_labels": list(run.model.config.conditions),
    "baseline_seconds": baseline_seconds,
    "settings": memory["settings"],
    "valid_trials": memory["valid_trials"],
    "memories": memory["scores"],
  }


def _cell(scores: dict) -> str:
  return (
    f"{scores['bits_per_note']:.3f} ({scores['bits_per_note_pitch']:.3f} + "
    f"{scores['bits_per_note_duration']:.3f})"
  )


def markdown(results: list[dict]) -> str:
  """One table per run: memories, bits, ratio to the best baseline."""
  lines = []
  for result in results:
    best = result["baseline"]["bits_per_note"]
    lines += [
      f"**{result['label']}** (`{result['workdir']}`, step "
      f"{result['step']}; test split, bits per note both streams "
      f"(pitch + duration))",
      "",
      "| memory | bits per note | vs best baseline | scoring s |",
      "|---|---|---|---|",
      f"| best baseline | {_cell(result['baseline'])} | 1.000x | "
      f"{result['baseline_seconds']:.1f} |",
    ]
    for name, scores in result["memories"].items():
      lines.append(
        f"| {name} | {_cell(scores)} | "
        f"{scores['bits_per_note'] / best:.3f}x | {scores['seconds']:.1f} |"
      )
    lines.append("")
  return "\n".join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--run", action="append", required=True)
  parser.add_argument("--step", default="best")
  parser.add_argument("--json")
  parser.add_argument("--markdown")
  args = parser.parse_args(argv)
  results = []
  for spec in args.run:
    label, sep, workdir = spec.partition("=")
    if not sep:
      parser.error(f"--run {spec!r}: expected LABEL=WORKDIR")
    results.append(measure(label, workdir, args.step))
    print(markdown(results[-1:]), flush=True)
  out = {"cpu": harness.cpu_description(), "runs": results}
  if args.json:
    with open(args.json, "w") as f:
      json.dump(out, f, indent=1)
  if args.markdown:
    with open(args.markdown, "w") as f:
      f.write(markdown(results))
  return 0


if __name__ == "__main__":
  sys.exit(main())
