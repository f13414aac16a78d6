"""Dataset build and input pipeline at 1x, 4x and 16x a corpus.

  .venv/bin/python -m benchmarks.bench_scale \
      [--midi_dir CACHE/folk_midi] [--scales 1,4,16] [--grid 24]

Copy k of a song (k = 1 .. scale - 1) is the song transposed by one of
-5..+6 semitones with one note moved by two semitones (a note that
depends on k), under a new name in a folder of its own: a near-duplicate
that the grouping of `data.groups` must find through its MinHash bands and
shingle check, as a real corpus's variants, not by the digest of identical
notes (a transposed copy alone would be). Each scale's build runs in a
process of its own (`melodyjax-corpus`'s `build.build_dataset`, all cores,
fresh), then the input pipeline in another: the training windows of 64
events (`windows.make_windows`) and 2,000 batches of 64 from
`windows.BatchIterator`. The table gives wall seconds, CPU seconds (the
process and its workers: what a busy shared machine moves least) and CPU
milliseconds per song, which stay flat when the path is linear in the
corpus, the grouping's seconds, peak memory (resident set: the main
process; the largest worker), and the pipeline's framing seconds and
batches per second.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time

from melodyjax import files
from melodyjax.data import tokenize
from melodyjax.music import midi_io, tonality
from melodyjax.music.events import Event

RESULT = "@@RESULT "
SEQ_LEN, BATCH, BATCHES = 64, 64, 2000


def _copy_events(events, k: int):
  """Copy k: transposed by one of -5..+6 and one note moved 2 semitones."""
  shift = (k % 12) - 5 or 6
  moved = tonality.transpose(events, shift) or list(events)
  notes = [i for i, e in enumerate(moved) if e.pitches]
  if notes:
    i = notes[(k * 7919) % len(notes)]
    pitches = tuple(min(127, p + 2) for p in moved[i].pitches)
    moved[i] = Event(pitches, moved[i].quarters)
  return moved


def _write_copies(job) -> int:
  midi_dir, relpath, scale, out, grid = job
  try:
    song = midi_io.read_midi(os.path.join(midi_dir, relpath), grid=grid)
  except midi_io.MidiError:
    return 0
  for k in range(1, scale):
    path = os.path.join(out, f"copy{k:02d}", relpath)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    midi_io.write_midi(song._replace(events=_copy_events(song.events, k)), path)
  return scale - 1


def make_corpus(midi_dir: str, scale: int, out: str, grid: int) -> int:
  """Links every file of `midi_dir` into `out` and writes `scale - 1`
  near-copies of each (under copy<k>/, in worker processes); returns the
  file count."""
  relpaths = tokenize.list_midi_files(midi_dir)
  for relpath in relpaths:
    target = os.path.join(out, "orig", relpath)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.symlink(os.path.join(midi_dir, relpath), target)
  if scale == 1:
    return len(relpaths)
  jobs = [(midi_dir, r, scale, out, grid) for r in relpaths]
  with multiprocessing.get_context("fork").Pool() as pool:
    return len(relpaths) + sum(pool.imap_unordered(_write_copies, jobs, 16))


def _peaks() -> dict:
  """Peak resident memory in MiB (this process, its largest child) and the
  CPU seconds of both (less moved by a busy machine than wall time)."""
  own = resource.getrusage(resource.RUSAGE_SELF)
  child = resource.getrusage(resource.RUSAGE_CHILDREN)
  cpu = own.ru_utime + own.ru_stime + child.ru_utime + child.ru_stime
  return {
    "peak_mib": round(own.ru_maxrss / 1024, 1),
    "worker_peak_mib": round(child.ru_maxrss / 1024, 1),
    "cpu_seconds": round(cpu, 2),
  }


def measure_build(midi_dir: str, out: str, grid: int) -> dict:
  from melodyjax.data import build
  from melodyjax.data import config as data_config_lib

  start = time.perf_counter()
  dataset = build.build_dataset(
    midi_dir,
    out,
    data_config_lib.CorpusConfig(grid=grid),
    force=True,
    progress=False,
  )
  seconds = time.perf_counter() - start
  report = dataset.report
  groups = report["split_groups"]
  return {
    "seconds": round(seconds, 2),
    "songs": report["songs"],
    "events": sum(s["events"] for s in report["splits"].values()),
    "groups": groups["groups"],
    "checked_pairs": groups["links"].get("checked_pairs", 0),
    "group_seconds": report["phase_seconds"]["exclude_and_group"],
    **_peaks(),
  }


def measure_pipeline(out: str) -> dict:
  import numpy as np

  from melodyjax.data import dataset as dataset_lib
  from melodyjax.data import windows

  start = time.perf_counter()
  dataset = dataset_lib.load_dataset(out)
  loaded = time.perf_counter() - start
  start = time.perf_counter()
  train = windows.make_windows(dataset.train, SEQ_LEN, "all")
  framed = time.perf_counter() - start
  batches = windows.BatchIterator(train, BATCH, seed=0)
  start = time.perf_counter()
  checksum = 0
  for _ in range(BATCHES):
    checksum += int(np.sum(next(batches).target_pitch))
  seconds = time.perf_counter() - start
  return {
    "load_seconds": round(loaded, 2),
    "windows_seconds": round(framed, 2),
    "windows": len(train),
    "batches_per_second": round(BATCHES / seconds, 1),
    "checksum": checksum,
    **_peaks(),
  }


def _in_process(*args: str) -> dict:
  """Runs this module with `args` in a fresh process; its result."""
  result = subprocess.run(
    [sys.executable, "-m", "benchmarks.bench_scale", *args],
    capture_output=True,
    text=True,
    check=False,
  )
  for line in result.stdout.splitlines():
    if line.startswith(RESULT):
      return json.loads(line[len(RESULT) :])
  raise RuntimeError(f"no result from {args}: {result.stderr[-2000:]}")


def _table(rows: list[dict]) -> str:
  head = (
    "| scale | songs | events | groups | build s | build CPU s | CPU ms/song "
    "| group s | build peak MiB (worker) | windows s | batches/s | pipeline "
    "peak MiB |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
  )
  lines = [head]
  for r in rows:
    b, p = r["build"], r["pipeline"]
    lines.append(
      f"| {r['scale']}x | {b['songs']:,} | {b['events']:,} | "
      f"{b['groups']:,} | {b['seconds']:.1f} | {b['cpu_seconds']:.1f} | "
      f"{1000 * b['cpu_seconds'] / b['songs']:.2f} | "
      f"{b['group_seconds']:.2f} | {b['peak_mib']:,.0f} "
      f"({b['worker_peak_mib']:,.0f}) | {p['windows_seconds']:.2f} | "
      f"{p['batches_per_second']:,.0f} | {p['peak_mib']:,.0f} |"
    )
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--midi_dir", default=files.cache_dir("folk_midi"))
  parser.add_argument("--scales", default="1,4,16")
  parser.add_argument("--grid", type=int, default=24)
  parser.add_argument("--measure", choices=("build", "pipeline"))
  parser.add_argument("--out")
  args = parser.parse_args()
  if args.measure == "build":
    print(
      RESULT + json.dumps(measure_build(args.midi_dir, args.out, args.grid))
    )
    return
  if args.measure == "pipeline":
    print(RESULT + json.dumps(measure_pipeline(args.out)))
    return
  midi_dir = os.path.abspath(os.path.expanduser(args.midi_dir))
  rows = []
  with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
    for scale in (int(s) for s in args.scales.split(",")):
      corpus = os.path.join(tmp, f"midi_{scale}")
      start = time.perf_counter()
      count = make_corpus(midi_dir, scale, corpus, args.grid)
      print(
        f"{scale}x: {count} files written in "
        f"{time.perf_counter() - start:.0f} s",
        flush=True,
      )
      out = os.path.join(tmp, f"data_{scale}")
      common = ["--midi_dir", corpus, "--out", out, "--grid", str(args.grid)]
      build_result = _in_process("--measure", "build", *common)
      pipeline = _in_process("--measure", "pipeline", *common)
      rows.append({"scale": scale, "build": build_result, "pipeline": pipeline})
      print(json.dumps(rows[-1]), flush=True)
  print(f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs")
  print(_table(rows))


if __name__ == "__main__":
  main()
