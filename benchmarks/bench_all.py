"""Every benchmark in sequence, then one table of benchmarks/results.json.

  .venv/bin/python -m benchmarks.bench_all [--midi_dir DIR] [--only NAMES]
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
import json
import os
import subprocess
import sys
import time

from benchmarks import results

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

BENCHMARKS = {
  "ingest": "bench_ingest.py",
  "sample": "bench_sample.py",
  "train": "bench_train.py",
  "quality": "bench_quality.py",
}


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
    targets.update(results.read_targets(script))
    if name not in names:
      continue
    module = "benchmarks." + BENCHMARKS[name].removesuffix(".py")
    command = [sys.executable, "-m", module, "--out", args.out]
    if name in ("ingest", "quality") and args.midi_dir:
      command += ["--midi_dir", args.midi_dir]
    print(f"=== {name}: {' '.join(command)}", flush=True)
    start = time.perf_counter()
    code = subprocess.call(command, cwd=ROOT)
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
    print(results.format_table(entries, targets))
  if failed:
    print(f"\nFailed: {', '.join(failed)}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  main()
