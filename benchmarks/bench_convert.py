"""Benchmark: every built-in ABC corpus converted to MIDI by the abc reader.

For each corpus (`data.corpora.builtin.CORPORA`: esac, oneills, ryans,
airds, misc and the combined folk), a fresh process runs
`convert.convert_corpus(force=True)` into a temporary folder with all
cores (the conversion `melodyjax-convert --corpus NAME` does) and reports
the wall seconds, tunes read and failed, events written (notes and rests),
events per second and the peak resident memory of the process and of its
worker processes (the larger one; Linux `ru_maxrss`). The load average
before each corpus is printed too: on a shared machine the seconds mean
little when it is above the number of cores. The CPU seconds are the main
process's (`time.process_time`): with `--workers 1` that is all the work,
a measure that other processes' load does not inflate (much); two workers
on a quiet machine take about half of it, plus their start-up.

Usage: `python -m benchmarks.bench_convert [--corpus NAME ...]
[--workers N] [--repeats once|play]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

from benchmarks import harness

_CHILD = """
import json, resource, sys, time
from melodyjax.data.corpora import convert
corpus, out, workers, repeats = sys.argv[1:5]
start = time.perf_counter()
summary = convert.convert_corpus(
  out, corpus=corpus, repeats=repeats, workers=int(workers) or None,
  progress=False, force=True,
)
seconds = time.perf_counter() - start
cpu = time.process_time()
peak = max(
  resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
  resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
)
print(json.dumps({
  "corpus": corpus, "seconds": seconds, "tunes": summary["tunes"],
  "duplicates": summary.get("duplicates", 0),
  "written": summary["written"], "failed": summary["failed"],
  "events": summary["notes"] + summary["rests"],
  "workers": summary["workers"], "peak_mib": peak / 1024,
  "cpu_seconds": cpu,
}))
"""


def measure(corpus: str, workers: int, repeats: str) -> dict:
  """One corpus converted in a fresh process (see the module docstring)."""
  with tempfile.TemporaryDirectory() as out:
    load = harness.load_average()
    found = subprocess.run(
      [sys.executable, "-c", _CHILD, corpus, out, str(workers), repeats],
      check=True,
      capture_output=True,
      text=True,
    )
  result = json.loads(found.stdout.strip().splitlines()[-1])
  result["load_before"] = load
  return result


def format_row(r: dict) -> str:
  return (
    f"| {r['corpus']} | {r['seconds']:.1f} | {r['tunes']:,} | "
    f"{r['written']:,} | {r['failed']} | {r['events']:,} | "
    f"{r['events'] / r['seconds']:,.0f} | {r['peak_mib']:.0f} | "
    f"{r['workers']} | {r['load_before']:.1f} | {r['cpu_seconds']:.1f} |"
  )


def main(argv=None) -> int:
  from melodyjax.data.corpora import builtin

  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    "--corpus",
    nargs="*",
    default=list(builtin.CORPORA),
    choices=builtin.CORPORA,
  )
  parser.add_argument("--workers", type=int, default=0, help="0: all cores")
  parser.add_argument("--repeats", default="once", choices=builtin.REPEATS)
  args = parser.parse_args(argv)
  print(f"CPU: {harness.cpu_description()}, {os.cpu_count()} cores")
  print(
    "| corpus | seconds | tunes | written | failed | events | events/s | "
    "peak MiB | workers | load before | CPU s of the main process |"
  )
  print("|---|---|---|---|---|---|---|---|---|---|---|")
  for corpus in args.corpus:
    print(format_row(measure(corpus, args.workers, args.repeats)), flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
