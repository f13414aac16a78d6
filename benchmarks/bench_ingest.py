"""Benchmark: MIDI folder to tokens, melodyjax against music21.

Measures in one run, on this machine:

  a) music21: `music21.converter.parse` of N MIDI files spread evenly over
     the folder, plus flattening each stream to (pitches, quarter length)
     per note, chord and rest, which is what a music21-based tokenizer does.
     One process. The parse is forced from the MIDI source
     (`forceSource=True`), so music21's pickle cache neither helps nor is
     written.
  b) melodyjax, one worker: `build.build_dataset` of the whole folder
     (read, tokenize, split, vocabularies, write), the per-core comparison.
  c) melodyjax, one worker per CPU core: the same build.
  d) cache reload: `build_dataset` again on the same folder (a fresh cache is
     found and loaded), and `dataset_lib.load_dataset` alone.

The files are read once before any timing, so every measurement sees a warm
page cache. With `--repeats R` each part runs R times, the parts taking turns,
and its fastest run counts. On Linux the share of the CPUs that other
processes used during each part is printed as well: on a shared machine the
figures are only meaningful when it is near 0 (R = 3 makes that likelier).
The figures are printed as a table and merged by name into a JSON list of
{"name", "value", "unit"} entries (entries of other benchmarks already in the
file are kept).

Usage: `python -m benchmarks.bench_ingest [--midi_dir DIR] [--music21_files N]
[--out benchmarks/results.json] [--repeats R]`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence

from melodyjax import files
from melodyjax.data import build, tokenize
from melodyjax.data import dataset as dataset_lib
from melodyjax.data.corpora import builtin

DEFAULT_OUT = os.path.join(
  os.path.dirname(os.path.abspath(__file__)), "results.json"
)
# Targets: (comparison, bound) per result name; the rest have none.
TARGETS = {
  "ingest_all_cores_seconds": ("<", 10.0),
  "ingest_cache_reload_seconds": ("<", 1.0),
  "ingest_speedup_all_cores_vs_music21": (">=", 30.0),
}


def cpu_snapshot() -> tuple[float, float, float] | None:
  """CPU seconds so far: (all cores busy, all cores total, this process tree).

  Linux only (/proc/stat); None elsewhere. Child processes count once they
  have been waited for, as the worker pools of `build_dataset` are.
  """
  try:
    with open("/proc/stat") as f:
      ticks = [int(x) for x in f.readline().split()[1:9]]
    hz = os.sysconf("SC_CLK_TCK")
  except (OSError, ValueError, AttributeError):
    return None
  idle = ticks[3] + ticks[4]  # idle, iowait
  own = os.times()
  return (
    (sum(ticks) - idle) / hz,
    sum(ticks) / hz,
    own.user + own.system + own.children_user + own.children_system,
  )


def others_share(before, after) -> float | None:
  """Share of all CPU time used by other processes between two snapshots."""
  if before is None or after is None or after[1] <= before[1]:
    return None
  busy, total, own = (a - b for a, b in zip(after, before, strict=True))
  return min(1.0, max(0.0, (busy - own) / total))


def spread(items: Sequence[str], n: int) -> list[str]:
  """Returns `n` items spread evenly over `items` (all of them if fewer)."""
  if n >= len(items):
    return list(items)
  return [items[i * len(items) // n] for i in range(n)]


def warm_page_cache(midi_dir: str, relpaths: Sequence[str]) -> int:
  """Reads every file once; returns the number of bytes read."""
  total = 0
  for relpath in relpaths:
    with open(os.path.join(midi_dir, relpath), "rb") as f:
      total += len(f.read())
  return total


def music21_events(path: str) -> list[tuple[tuple[int, ...], float]]:
  """Parses a MIDI file with music21; (MIDI pitches, quarters) per event."""
  from music21 import converter

  stream = converter.parse(path, forceSource=True)
  return [
    (tuple(p.midi for p in element.pitches), float(element.quarterLength))
    for element in stream.flatten().notesAndRests
  ]


def parse_with_music21(midi_dir: str, relpaths: Sequence[str]) -> None:
  """Parses and flattens `relpaths` with music21, one process."""
  for relpath in relpaths:
    music21_events(os.path.join(midi_dir, relpath))


def build_once(midi_dir: str, out_dir: str, workers: int) -> None:
  """A forced `build.build_dataset` with `workers` processes."""
  build.build_dataset(
    midi_dir, out_dir, workers=workers, force=True, progress=False
  )


def time_call(fn, *args, **kwargs) -> tuple[float, float | None]:
  """Calls `fn(*args, **kwargs)` once.

  Returns:
    Its seconds, and the share of the CPUs other processes used meanwhile
    (None if unknown).
  """
  before = cpu_snapshot()
  start = time.perf_counter()
  fn(*args, **kwargs)
  seconds = time.perf_counter() - start
  return seconds, others_share(before, cpu_snapshot())


def best_of(
  repeats: int, parts: dict[str, tuple]
) -> dict[str, tuple[float, float | None]]:
  """Times each part `repeats` times, in turns, and keeps its fastest call.

  Taking turns spreads each part's calls over the whole run, so that a burst
  of load from other processes does not spoil every call of one part.

  Args:
    repeats: calls per part.
    parts: name -> (function, *arguments).

  Returns:
    name -> (seconds, share of the CPUs other processes used meanwhile) of
    the part's fastest call.
  """
  best = {}
  for _ in range(max(1, repeats)):
    for name, (fn, *args) in parts.items():
      print(f"  {name}...", flush=True)
      seconds, others = time_call(fn, *args)
      if name not in best or seconds < best[name][0]:
        best[name] = (seconds, others)
  return best


def read_results(path: str) -> list[dict]:
  """The JSON list of results at `path`, or [] when there is no file.

  Raises:
    ValueError: the file cannot be read or holds no JSON list.
  """
  if not os.path.exists(path):
    return []
  try:
    with open(path) as f:
      existing = json.load(f)
  except (OSError, ValueError) as e:
    raise ValueError(f"cannot read {path} ({e}); fix or remove it") from None
  if not isinstance(existing, list) or not all(
    isinstance(e, dict) for e in existing
  ):
    raise ValueError(f"{path} does not hold a JSON list of objects")
  return existing


def merge_results(path: str, entries: Sequence[dict]) -> list[dict]:
  """Merges `entries` into the JSON list at `path` by name (atomically).

  Entries already in the file keep their place; one with the name of a new
  entry is replaced by it, and the other new entries are appended.

  Returns:
    The merged list, as written.
  """
  new = {entry["name"]: entry for entry in entries}
  merged = [new.pop(e.get("name"), e) for e in read_results(path)]
  merged.extend(new.values())
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  files.write_json(path, merged)
  return merged


def target_text(name: str, value: float) -> tuple[str, str]:
  """The target of a result as text, and whether it is met ('' if none)."""
  if name not in TARGETS:
    return "", ""
  op, bound = TARGETS[name]
  met = value < bound if op == "<" else value >= bound
  return f"{op} {bound:g}", "yes" if met else "NO"


def format_table(entries: Sequence[dict]) -> str:
  """The results as an aligned text table."""
  rows = [("name", "value", "unit", "target", "met")]
  for entry in entries:
    value = entry["value"]
    text = f"{value:,.0f}" if value >= 1000 else f"{value:.3g}"
    rows.append(
      (entry["name"], text, entry["unit"], *target_text(entry["name"], value))
    )
  widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
  lines = []
  for row in rows:
    cells = [
      cell.rjust(w) if i == 1 else cell.ljust(w)
      for i, (cell, w) in enumerate(zip(row, widths, strict=True))
    ]
    lines.append("  ".join(cells).rstrip())
  lines.insert(1, "-" * len(lines[0]))
  return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the benchmark; returns the exit status."""
  parser = argparse.ArgumentParser(
    description="MIDI ingest speed: melodyjax-corpus against music21."
  )
  parser.add_argument(
    "--midi_dir",
    default=str(builtin.default_midi_dir()),
    help="folder of MIDI files (default: the converted ESAC corpus)",
  )
  parser.add_argument(
    "--music21_files",
    type=int,
    default=200,
    help="files parsed with music21, spread evenly over the folder",
  )
  parser.add_argument(
    "--out", default=DEFAULT_OUT, help="JSON results file (merged by name)"
  )
  parser.add_argument(
    "--repeats",
    type=int,
    default=1,
    help="time each part this many times and keep the fastest",
  )
  args = parser.parse_args(argv)

  try:
    read_results(args.out)  # fail now, not after the measurements
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  midi_dir = os.path.abspath(os.path.expanduser(args.midi_dir))
  relpaths = (
    tokenize.list_midi_files(midi_dir) if os.path.isdir(midi_dir) else []
  )
  if not relpaths:
    problem = "holds no MIDI file" if os.path.isdir(midi_dir) else "not found"
    print(
      f"error: MIDI folder {midi_dir} {problem}; run `make run` (or "
      "`melodyjax-convert`) first to convert the ESAC corpus",
      file=sys.stderr,
    )
    return 1
  cores = os.cpu_count() or 1
  num_files = len(relpaths)
  size = warm_page_cache(midi_dir, relpaths)
  print(
    f"{num_files} MIDI files ({size / 2**20:.1f} MiB) in {midi_dir}; "
    f"{cores} CPU cores",
    flush=True,
  )
  before = cpu_snapshot()
  time.sleep(1.0)
  busy = others_share(before, cpu_snapshot())
  if busy is not None and busy > 0.1:
    print(
      f"warning: other processes keep the CPUs {100 * busy:.0f}% busy; "
      "the figures will be low",
      flush=True,
    )

  entries = [
    {"name": "ingest_files", "value": num_files, "unit": "files"},
    {"name": "ingest_cores", "value": cores, "unit": "cores"},
  ]

  def add(name: str, value: float, unit: str, digits: int) -> None:
    entries.append({"name": name, "value": round(value, digits), "unit": unit})

  sample = spread(relpaths, max(1, args.music21_files))
  try:
    import music21
  except ImportError:
    print("music21 is not installed: its part is skipped", flush=True)
    music21 = None
  else:
    print(f"music21 {music21.__version__}, {len(sample)} files", flush=True)
  with tempfile.TemporaryDirectory(prefix="bench_ingest_") as tmp:
    out_dir = os.path.join(tmp, "all")
    parts = {}
    if music21:
      parts["music21"] = (parse_with_music21, midi_dir, sample)
    parts["1 worker"] = (build_once, midi_dir, os.path.join(tmp, "one"), 1)
    parts[f"{cores} workers"] = (build_once, midi_dir, out_dir, cores)
    timings = best_of(args.repeats, parts)
    # The cache is fresh now: build_dataset finds it and loads it.
    cached = best_of(
      args.repeats,
      {
        "cache reload": (build.build_dataset, midi_dir, out_dir),
        "load_dataset": (dataset_lib.load_dataset, out_dir),
      },
    )
  reload = cached["cache reload"][0]
  load = cached["load_dataset"][0]
  one = timings["1 worker"][0]
  every = timings[f"{cores} workers"][0]
  music21_rate = None
  if "music21" in timings:
    music21_rate = len(sample) / timings["music21"][0]
    add("ingest_music21_files_per_s", music21_rate, "files/s", 2)
  add("ingest_1_worker_files_per_s", num_files / one, "files/s", 1)
  add("ingest_1_worker_seconds", one, "s", 3)
  add("ingest_all_cores_files_per_s", num_files / every, "files/s", 1)
  add("ingest_all_cores_seconds", every, "s", 3)
  add("ingest_cache_reload_seconds", reload, "s", 4)
  add("ingest_load_dataset_seconds", load, "s", 4)
  if music21_rate:
    add(
      "ingest_speedup_1_worker_vs_music21",
      num_files / one / music21_rate,
      "x",
      1,
    )
    add(
      "ingest_speedup_all_cores_vs_music21",
      num_files / every / music21_rate,
      "x",
      1,
    )
  shares = {name: t[1] for name, t in timings.items() if t[1] is not None}
  if shares:  # the most of any part: near 0 for meaningful figures
    add("ingest_others_cpu_share", 100 * max(shares.values()), "%", 1)
  print()
  print(format_table(entries))
  if shares:
    print(
      "\nCPU share used by other processes meanwhile: "
      + ", ".join(f"{part} {100 * s:.0f}%" for part, s in shares.items())
    )
    if max(shares.values()) > 0.1:
      print("warning: the machine was busy; the figures above are low")
  merge_results(args.out, entries)
  print(f"results merged into {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
