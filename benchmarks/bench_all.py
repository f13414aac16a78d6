"""Every benchmark in sequence, then one table of benchmarks/results.json.

  .venv/bin/python benchmarks/bench_all.py [--midi_dir DIR] [--only NAMES]
      [--out benchmarks/results.json]

Runs bench_ingest.py (MIDI to tokens against music21), bench_sample.py
(sampling speed), bench_train.py (training throughput and sampling
against the PyTorch reference) and bench_quality.py (minutes of training
until the model beats the n-gram baseline; about 20 minutes) one after
another, each in its own process,
so none shares threads or memory with the next. Each merges its figures by
name into the results file; the combined table printed at the end shows
every figure there with the target it has in its benchmark (the `TARGETS`
dict of the script, read without importing it). The exit status is 1 when
a benchmark failed.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from benchmarks import results  # noqa: E402

BENCHMARKS = {
  "ingest": "bench_ingest.py",
  "sample": "bench_sample.py",
  "train": "bench_train.py",
  "quality": "bench_quality.py",
}


def read_targets(script: str) -> dict[str, tuple[str, float]]:
  """The literal `TARGETS = {...}` of a benchmark script ({} if none)."""
  try:
    with open(script) as f:
      tree = ast.parse(f.read())
  except (OSError, SyntaxError):
    return {}
  for node in tree.body:
    if isinstance(node, ast.Assign) and any(
      isinstance(t, ast.Name) and t.id == "TARGETS" for t in node.targets
    ):
      try:
        return dict(ast.literal_eval(node.value))
      except ValueError:
        return {}
  return {}


def target_text(targets, name: str, value: float) -> tuple[str, str]:
  if name not in targets:
    return "", ""
  op, bound = targets[name]
  met = value < bound if op == "<" else value >= bound
  return f"{op} {bound:g}", "yes" if met else "NO"


def format_table(entries, targets) -> str:
  """The figures as an aligned text table, grouped by benchmark prefix."""
  rows = [("name", "value", "unit", "target", "met")]
  for entry in sorted(entries, key=lambda e: e["name"].split("_")[0]):
    value = entry["value"]
    text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    rows.append(
      (
        entry["name"],
        text,
        entry["unit"],
        *target_text(targets, entry["name"], value),
      )
    )
  widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
  lines = []
  for i, row in enumerate(rows):
    cells = [
      cell.rjust(w) if j == 1 else cell.ljust(w)
      for j, (cell, w) in enumerate(zip(row, widths, strict=True))
    ]
    lines.append("  ".join(cells).rstrip())
    if i == 0:
      lines.append("  ".join("-" * w for w in widths))
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    "--midi_dir",
    help="folder of MIDI files for bench_ingest.py and bench_quality.py",
  )
  parser.add_argument(
    "--only",
    default=",".join(BENCHMARKS),
    help=f"comma-separated subset of {','.join(BENCHMARKS)}",
  )
  parser.add_argument("--out", default=results.DEFAULT_PATH)
  args = parser.parse_args()
  names = [n.strip() for n in args.only.split(",") if n.strip()]
  unknown = sorted(set(names) - set(BENCHMARKS))
  if unknown:
    parser.error(f"unknown benchmarks {unknown}; known: {list(BENCHMARKS)}")
  failed = []
  targets = {}
  for name in BENCHMARKS:
    script = os.path.join(HERE, BENCHMARKS[name])
    targets.update(read_targets(script))
    if name not in names:
      continue
    command = [sys.executable, script, "--out", args.out]
    if name in ("ingest", "quality") and args.midi_dir:
      command += ["--midi_dir", args.midi_dir]
    print(f"=== {name}: {' '.join(command)}", flush=True)
    start = time.perf_counter()
    code = subprocess.call(command)
    print(
      f"=== {name}: exit {code} after {time.perf_counter() - start:.0f} s\n",
      flush=True,
    )
    if code:
      failed.append(name)
  if os.path.exists(args.out):
    with open(args.out) as f:
      entries = json.load(f)
    print(f"All figures in {args.out}:")
    print(format_table(entries, targets))
  if failed:
    print(f"\nFailed: {', '.join(failed)}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  main()
