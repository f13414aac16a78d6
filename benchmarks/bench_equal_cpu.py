"""Test bits per note of runs trained for the same process CPU time.

  .venv/bin/python -m benchmarks.bench_equal_cpu \
      --run LSTM=/work/runs/tf_lstm --run RoPE=/work/runs/tf_rope \
      [--step latest] [--baseline 3.368]

Each `--run NAME=DIR` is a folder that `benchmarks/cpu_budget.py` filled:
`DIR/work` the training workdir, `DIR/cpu.jsonl` the CPU seconds of its
process tree over time (the budget stops training with SIGTERM, which
saves a checkpoint). For each, the checkpoint `--step` is scored on the
test split exactly as the baselines are (`evaluation.predict.score_split`:
every event and eos of each song, from its start), and the table gives the
step, the CPU seconds used, the validation bits the trainer logged last,
the test bits per stream and their ratio to `--baseline` (bits per note of
the best baseline given the same information, from `melodyjax-evaluate`).
"""

from __future__ import annotations

import argparse
import json
import os

if __name__ == "__main__":
  from melodyjax.cli import runtime

  runtime.reexec_with_fast_malloc()

from melodyjax.evaluation import predict  # noqa: E402
from melodyjax.training import runs as runs_lib  # noqa: E402


def _rows(path: str) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def cpu_used(folder: str, step: int) -> tuple[float, float]:
  """(CPU seconds, wall seconds) when the trainer had logged `step` (the
  run's last measurement if it never did: it stopped there)."""
  rows = _rows(os.path.join(folder, "cpu.jsonl"))
  rows = [r for r in rows if "cpu_seconds" in r]
  at = [r for r in rows if (r.get("step") or 0) >= step]
  row = at[0] if at else rows[-1]
  return row["cpu_seconds"], row["wall_seconds"]


def last_valid_bits(workdir: str) -> float | None:
  """The trainer's last validation bits per note (its windows)."""
  rows = _rows(os.path.join(workdir, "metrics.jsonl"))
  bits = [r["eval/bits_per_note"] for r in rows if "eval/bits_per_note" in r]
  return bits[-1] if bits else None


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--run", action="append", required=True)
  parser.add_argument("--step", default="latest")
  parser.add_argument("--baseline", type=float, default=None)
  args = parser.parse_args()
  print(
    "| run | step | CPU s (wall s) | valid bits (trainer) | test pitch | "
    "test duration | test bits per note | / best baseline |"
  )
  print("|---|---|---|---|---|---|---|---|")
  for item in args.run:
    name, folder = item.split("=", 1)
    workdir = os.path.join(folder, "work")
    run = runs_lib.from_workdir(workdir, args.step)
    bits = predict.score_split(run, "test")
    cpu, wall = cpu_used(folder, run.step)
    valid = last_valid_bits(workdir)
    total = bits["bits_per_note"]
    ratio = f"{total / args.baseline:.3f}x" if args.baseline else "-"
    valid_text = "-" if valid is None else f"{valid:.3f}"
    print(
      f"| {name} | {run.step} | {cpu:.0f} ({wall:.0f}) | {valid_text} | "
      f"{bits['bits_per_note_pitch']:.3f} | "
      f"{bits['bits_per_note_duration']:.3f} | {total:.3f} | {ratio} |",
      flush=True,
    )


if __name__ == "__main__":
  main()
