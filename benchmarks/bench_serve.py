"""Load on the generation server: throughput, latency and memory per round.

  .venv/bin/python -m benchmarks.bench_serve [--workdir RUN] [--rounds 3]

Starts `melodyjax-serve` on a free loopback port, then in each
round sends `--requests` requests (200) from `--clients` threads (20), each
with keep-alive, every request 1 melody of `--num_notes` (64) notes with
its own seed; with `--mix`, the requests cycle through `MIXES` (sampling
settings, key, metre, bars, ending on the tonic, best-of: the controls
that share a call and those that change its shape). Prints per round the
requests per second, the p50 and p99
latency, failures, and the server's resident memory after the round; the
memory must not grow across rounds (after the first) and no request may
fail. Without --workdir it first trains configs/default.py's model (the
reference architecture) for 2 steps on synthetic tunes in a temporary
folder.
"""

import argparse
import concurrent.futures
import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGETS = {"serve/failed_requests": ("<", 1)}
# --mix: the controls of the requests, in turn. The first four share a
# call shape with the plain request (traced settings, the key moved after
# sampling); bars and the ending feed controls and keep their own buffer
# length; best-of samples 2 rows per melody.
MIXES = (
  {},
  {"temperature": 0.8, "top_p": 0.95},
  {"key": "D", "top_k": 8},
  {"temperature": [0.9, 1.1], "key": "G"},
  {"time_signature": "3/4", "bars": 8},
  {"end_on_tonic": True},
  {"best_of": 2},
)


def make_workdir(folder: str) -> str:
  """A run of the reference architecture, trained for 2 steps."""
  from configs import default
  from melodyjax.music import midi_io
  from melodyjax.music.events import Event
  from melodyjax.training import loop

  midi_dir = os.path.join(folder, "midi")
  os.makedirs(midi_dir)
  scale = [60, 62, 64, 65, 67, 69, 71, 72, 74]
  for i in range(60):
    events = [
      Event(
        (scale[(i * 3 + j * (i % 5 + 1)) % 9],), Fraction(1 + (i + j) % 3, 2)
      )
      for j in range(40 + i % 20)
    ]
    midi_io.write_midi(events, os.path.join(midi_dir, f"t{i}.mid"))
  config = default.get_config()
  config.data.midi_dir = midi_dir
  config.data.dataset_dir = os.path.join(folder, "data")
  config.train.num_train_steps = 2
  config.train.batch_size = 16
  config.eval.batch_size = 16
  config.train.seq_len = 32
  config.train.progress = False
  workdir = os.path.join(folder, "run")
  loop.train_and_evaluate(config, workdir)
  return workdir


def start_server(workdir: str, num_notes: int, max_batch: int, extra=()):
  """(process, port) of a server of `workdir` on a free loopback port."""
  process = subprocess.Popen(
    [
      sys.executable,
      "-m",
      "melodyjax.cli.serve",
      f"--workdir={workdir}",
      "--port=0",
      f"--warm_notes={num_notes}",
      f"--max_batch={max_batch}",
      *extra,
    ],
    cwd=PROJECT,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )
  while True:
    line = process.stdout.readline()
    if not line:
      raise SystemExit("server did not start: " + process.stderr.read()[-2000:])
    found = re.search(r"serving on http://127\.0\.0\.1:(\d+)", line)
    if found:
      return process, int(found.group(1))


def client(port: int, bodies) -> list[tuple[float, int]]:
  """(seconds, status) of each body, sent in order on one connection."""
  connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
  times = []
  for body in bodies:
    start = time.perf_counter()
    try:
      connection.request(
        "POST", "/generate", body, {"Content-Type": "application/json"}
      )
      response = connection.getresponse()
      data = response.read()
      ok = response.status == 200 and b'"melodies"' in data
      status = response.status if ok else -response.status
    except (OSError, http.client.HTTPException):
      connection.close()
      connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
      status = -1
    times.append((time.perf_counter() - start, status))
  connection.close()
  return times


def rss_mib(pid: int) -> float:
  with open(f"/proc/{pid}/status") as f:
    for line in f:
      if line.startswith("VmRSS:"):
        return int(line.split()[1]) / 1024
  return float("nan")


def run_round(port, requests, clients, num_notes, round_index, mix=False):
  bodies = [
    json.dumps(
      {
        "num_notes": num_notes,
        "seed": round_index * requests + i,
        **(MIXES[i % len(MIXES)] if mix else {}),
      }
    )
    for i in range(requests)
  ]
  shares = [bodies[i::clients] for i in range(clients)]
  start = time.perf_counter()
  with concurrent.futures.ThreadPoolExecutor(clients) as pool:
    results = [
      r for part in pool.map(lambda b: client(port, b), shares) for r in part
    ]
  seconds = time.perf_counter() - start
  latencies = sorted(t for t, _ in results)
  failed = sum(1 for _, status in results if status != 200)
  return {
    "requests_per_second": len(results) / seconds,
    "p50_ms": 1000 * statistics.median(latencies),
    "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
    "failed": failed,
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", help="a trained run (default: a new one)")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--requests", type=int, default=200)
  parser.add_argument("--clients", type=int, default=20)
  parser.add_argument("--num_notes", type=int, default=64)
  parser.add_argument(
    "--max_batch", type=int, default=8, help="the server's requests per call"
  )
  parser.add_argument(
    "--mix", action="store_true", help="requests with a mix of controls"
  )
  parser.add_argument("--no_save", action="store_true")
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as folder:
    workdir = args.workdir or make_workdir(folder)
    process, port = start_server(workdir, args.num_notes, args.max_batch)
    try:
      rows = []
      print(
        f"{args.requests} requests of 1 melody x {args.num_notes} notes "
        f"from {args.clients} clients per round"
        + (f", controls in turn: {len(MIXES)} mixes" if args.mix else "")
      )
      print("round  req/s   p50 ms   p99 ms  failed  server RSS MiB")
      for i in range(args.rounds):
        row = run_round(
          port, args.requests, args.clients, args.num_notes, i, args.mix
        )
        row["rss_mib"] = rss_mib(process.pid)
        rows.append(row)
        print(
          f"{i + 1:5d} {row['requests_per_second']:6.1f} "
          f"{row['p50_ms']:8.1f} {row['p99_ms']:8.1f} {row['failed']:7d} "
          f"{row['rss_mib']:15.1f}"
        )
      connection = http.client.HTTPConnection("127.0.0.1", port)
      connection.request("GET", "/health")
      health = json.loads(connection.getresponse().read())
      connection.close()
      print(
        f"sampler calls: {health['sampler_calls']} for {health['requests']} "
        f"requests ({health['requests'] / health['sampler_calls']:.1f} per "
        "call)"
      )
    finally:
      process.send_signal(signal.SIGTERM)
      process.wait(timeout=60)
  last = rows[-1]
  growth = rows[-1]["rss_mib"] - rows[1 if len(rows) > 1 else 0]["rss_mib"]
  print(f"memory growth after round 1: {growth:+.1f} MiB")
  if not args.no_save and args.max_batch == 8 and not args.mix:
    from benchmarks import results

    results.merge(
      results.DEFAULT_PATH,
      [
        ("serve/requests_per_second", last["requests_per_second"], "req/s"),
        ("serve/p50_latency", last["p50_ms"], "ms"),
        ("serve/p99_latency", last["p99_ms"], "ms"),
        ("serve/failed_requests", sum(r["failed"] for r in rows), "requests"),
        ("serve/rss_growth", growth, "MiB"),
      ],
    )
  return 1 if any(r["failed"] for r in rows) else 0


if __name__ == "__main__":
  sys.exit(main())
