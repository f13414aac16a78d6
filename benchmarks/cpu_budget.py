"""Runs a command until it has used a budget of process CPU seconds.

  .venv/bin/python -m benchmarks.cpu_budget --cpu_seconds 1200 \
      --log runs/x/cpu.jsonl -- python train_main.py --config=... --workdir=...

Equal training time on a machine shared with other work: wall time depends
on the neighbours, the CPU seconds a process and its threads use much less.
Every `--every` seconds the command's user + system time (its process tree,
read from /proc) and the newest step in `<workdir>/metrics.jsonl` (when
`--workdir` is given) go to `--log` as one JSON line; at the budget the
command gets SIGTERM (training saves a checkpoint and stops) and the
script waits for it. Linux only.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

_TICKS = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
  try:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
      return [int(child) for child in f.read().split()]
  except OSError:
    return []


def tree_cpu_seconds(pid: int) -> float:
  """User + system seconds of `pid` and its live descendants (and the
  children they have waited for)."""
  total = 0.0
  try:
    with open(f"/proc/{pid}/stat") as f:
      fields = f.read().rsplit(")", 1)[1].split()
    total = sum(int(value) for value in fields[11:15]) / _TICKS
  except OSError:
    return 0.0
  return total + sum(tree_cpu_seconds(child) for child in _children(pid))


def _last_step(workdir: str | None) -> int | None:
  if not workdir:
    return None
  try:
    with open(os.path.join(workdir, "metrics.jsonl"), "rb") as f:
      lines = f.read().splitlines()
  except OSError:
    return None
  for line in reversed(lines):
    try:
      return int(json.loads(line)["step"])
    except (ValueError, KeyError):
      continue
  return None


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--cpu_seconds", type=float, required=True)
  parser.add_argument("--log", required=True)
  parser.add_argument("--workdir", default=None)
  parser.add_argument("--every", type=float, default=5.0)
  parser.add_argument("command", nargs=argparse.REMAINDER)
  args = parser.parse_args(argv)
  command = args.command[1:] if args.command[:1] == ["--"] else args.command
  start = time.time()
  process = subprocess.Popen(command)
  stopped = False
  with open(args.log, "a") as log:
    while process.poll() is None:
      cpu = tree_cpu_seconds(process.pid)
      row = {
        "wall_seconds": round(time.time() - start, 1),
        "cpu_seconds": round(cpu, 1),
        "step": _last_step(args.workdir),
      }
      log.write(json.dumps(row) + "\n")
      log.flush()
      if cpu >= args.cpu_seconds and not stopped:
        process.send_signal(signal.SIGTERM)
        stopped = True
      time.sleep(args.every)
    row = {
      "wall_seconds": round(time.time() - start, 1),
      "exit": process.wait(),
    }
    log.write(json.dumps({**row, "stopped_at_budget": stopped}) + "\n")
  return process.returncode


if __name__ == "__main__":
  sys.exit(main())
