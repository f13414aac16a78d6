"""A day of traffic on the generation server, in minutes: mixed requests,
then an overload.

  .venv/bin/python -m benchmarks.bench_soak [--workdir RUN] [--seconds 600]

Starts `melodyjax-serve` on a free loopback port (a bounded queue of
`--max_queue`, the answers' files kept in a temporary folder), sends the
mix for `--warm_seconds` uncounted (the shapes it needs compile), then for
`--seconds` has `--clients` threads send a random mix (`KINDS`): good
requests of different sizes (a primer, several melodies, the short-term
model), the files the answers name, bad JSON, a bad field, a body over the
limit, a body that never finishes, a path outside, the health check. Every
answer must have the status its kind expects. Prints the server's resident
memory at the start (after the warm-up), at the end and at its peak
(sampled each second), requests served, unexpected answers by kind, and
p50/p99 latency by kind. Then the overload: `--overload_clients` requests
at once, each too large to finish before the others arrive, against the
queue's bound: how many got 503 with Retry-After. Exits 1 on any
unexpected answer. Without --workdir it trains configs/default.py's model
for 2 steps first (as bench_serve does).
"""

import argparse
import collections
import concurrent.futures
import http.client
import json
import random
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time

from benchmarks import bench_serve

# kind: (share of the mix, expected status)
KINDS = {
  "small": (30, 200),
  "primer": (12, 200),
  "several": (10, 200),
  "long": (6, 200),
  "short_term": (6, 200),
  "file": (8, 200),  # a small request, then its file
  "health": (6, 200),
  "bad_json": (6, 400),
  "bad_field": (6, 400),
  "too_large": (3, 413),
  "outside": (4, 404),
  "unfinished": (3, 408),
}
BODIES = {
  "small": lambda rng: {"num_notes": rng.choice([16, 64])},
  "primer": lambda rng: {"num_notes": 32, "primer": "C4:1 D4:0.5 E4:0.5"},
  "several": lambda rng: {"num_notes": 32, "num_outputs": rng.choice([2, 4])},
  "long": lambda rng: {"num_notes": 256},
  "short_term": lambda rng: {"num_notes": 32, "short_term": 0.3},
  "bad_field": lambda rng: {"num_notes": -rng.randint(1, 99)},
}
OUTSIDE = ["/files/../config.json", "/files/%2e%2e", "/etc/passwd", "/x"]


class Client:
  """One keep-alive connection, reopened after a refusal closes it."""

  def __init__(self, port: int):
    self.port = port
    self.connection = None

  def send(self, method, path, body=None) -> tuple[int, dict, bytes]:
    # A kept connection the server closed meanwhile (its keep-alive ran
    # out) is opened again once, as browsers and HTTP libraries do.
    for attempt in range(2):
      reused = self.connection is not None
      if self.connection is None:
        self.connection = http.client.HTTPConnection(
          "127.0.0.1", self.port, timeout=120
        )
      try:
        self.connection.request(method, path, body)
        response = self.connection.getresponse()
        data = response.read()
        break
      except (OSError, http.client.HTTPException):
        self.connection.close()
        self.connection = None
        if not reused or attempt:
          return -1, {}, b""
    headers = {k.lower(): v for k, v in response.getheaders()}
    if headers.get("connection") == "close":
      self.connection.close()
      self.connection = None
    return response.status, headers, data


def unfinished(port: int) -> int:
  """A body that stops halfway: the status the server answers."""
  with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
    sock.sendall(
      b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Length: 64\r\n\r\n{"
    )
    reply = sock.recv(4096)
  return int(reply.split()[1]) if reply.startswith(b"HTTP/1.1") else -1


def one(client: Client, kind: str, rng: random.Random) -> int:
  """Sends one request of `kind`; its status."""
  if kind in BODIES:
    body = {**BODIES[kind](rng), "seed": rng.randrange(1 << 30)}
    return client.send("POST", "/generate", json.dumps(body))[0]
  if kind == "file":  # the file an answer names, fetched right after it
    status, _, data = client.send("POST", "/generate", b'{"num_notes": 16}')
    if status != 200:
      return status
    return client.send("GET", json.loads(data)["melodies"][0]["midi_url"])[0]
  if kind == "health":
    return client.send("GET", "/health")[0]
  if kind == "bad_json":
    return client.send("POST", "/generate", b'{"num_notes": 1')[0]
  if kind == "too_large":
    return client.send("POST", "/generate", b" " * (70 << 10))[0]
  if kind == "outside":
    return client.send("GET", rng.choice(OUTSIDE))[0]
  return unfinished(client.port)


def soak(port: int, seconds: float, clients: int, seed: int, names) -> list:
  """(kind, status, seconds) of every request of `clients` threads, each
  of a kind in `names`."""
  deadline = time.monotonic() + seconds
  weights = [KINDS[k][0] for k in names]

  def loop(index: int) -> list:
    rng = random.Random(seed * 1000 + index)
    client, done = Client(port), []
    while time.monotonic() < deadline:
      kind = rng.choices(names, weights)[0]
      start = time.perf_counter()
      status = one(client, kind, rng)
      done.append((kind, status, time.perf_counter() - start))
    return done

  with concurrent.futures.ThreadPoolExecutor(clients) as pool:
    return [r for part in pool.map(loop, range(clients)) for r in part]


class MemoryWatch(threading.Thread):
  """The server's resident memory each second: start, peak, last."""

  def __init__(self, pid: int):
    super().__init__(daemon=True)
    self.pid, self.samples, self.stop = pid, [], threading.Event()

  def run(self) -> None:
    while not self.stop.is_set():
      self.samples.append(bench_serve.rss_mib(self.pid))
      self.stop.wait(1.0)


def percentile(values, q: float) -> float:
  values = sorted(values)
  return values[min(len(values) - 1, int(q * len(values)))] if values else 0


def print_soak(results, memory: list[float], seconds: float) -> int:
  """Prints the soak's tables; the number of unexpected answers."""
  by_kind = collections.defaultdict(list)
  for kind, status, took in results:
    by_kind[kind].append((status, took))
  print(
    f"\n{len(results):,} requests in {seconds:.0f} s "
    f"({len(results) / seconds:.1f} per second)\n"
  )
  print("| kind | expected | sent | unexpected | p50 ms | p99 ms |")
  print("|---|---|---|---|---|---|")
  unexpected = 0
  for kind, (_, expected) in KINDS.items():
    rows = by_kind.get(kind, [])
    if not rows:
      continue
    wrong = collections.Counter(s for s, _ in rows if s != expected)
    unexpected += sum(wrong.values())
    took = [1000 * t for _, t in rows]
    wrong_text = ", ".join(f"{n} x {s}" for s, n in sorted(wrong.items()))
    print(
      f"| {kind} | {expected} | {len(rows):,} | {wrong_text or 0} | "
      f"{percentile(took, 0.5):.1f} | {percentile(took, 0.99):.1f} |"
    )
  good = [1000 * t for k, s, t in results if KINDS[k][1] == 200 and s == 200]
  print(
    f"\nanswered as expected: {len(results) - unexpected:,} of "
    f"{len(results):,}; good requests p50 {statistics.median(good):.1f} ms, "
    f"p99 {percentile(good, 0.99):.1f} ms"
  )
  print(
    f"server resident memory: start {memory[0]:.1f} MiB, end "
    f"{memory[-1]:.1f} MiB, peak {max(memory):.1f} MiB "
    f"({len(memory)} samples, one a second)"
  )
  minutes = " ".join(f"{m:.0f}" for m in memory[::60])
  print(f"memory each minute (MiB): {minutes} {memory[-1]:.0f}")
  return unexpected


def overload(port: int, clients: int, max_queue: int) -> int:
  """`clients` heavy requests at once; prints the table; unexpected ones."""
  body = json.dumps({"num_notes": 1024, "num_outputs": 16})
  with concurrent.futures.ThreadPoolExecutor(clients) as pool:
    answers = list(
      pool.map(
        lambda _: Client(port).send("POST", "/generate", body), range(clients)
      )
    )
  served = sum(1 for s, _, _ in answers if s == 200)
  told = sum(1 for s, h, _ in answers if s == 503 and "retry-after" in h)
  other = clients - served - told
  print(
    "\n| queue bound | clients at once | 200 | 503 with Retry-After | other |"
  )
  print("|---|---|---|---|---|")
  print(f"| {max_queue} | {clients} | {served} | {told} | {other} |")
  return other + (told == 0)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", help="a trained run (default: a new one)")
  parser.add_argument("--seconds", type=float, default=600)
  parser.add_argument(
    "--warm_seconds",
    type=float,
    default=120,
    help="the same mix first, uncounted (compiles the shapes it needs)",
  )
  parser.add_argument("--clients", type=int, default=8)
  parser.add_argument("--max_queue", type=int, default=16)
  parser.add_argument("--overload_clients", type=int, default=64)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument(
    "--max_batch", type=int, default=8, help="the server's requests per call"
  )
  parser.add_argument(
    "--kinds",
    default=",".join(KINDS),
    help="the kinds of request in the mix (default: all)",
  )
  args = parser.parse_args(argv)
  kinds = args.kinds.split(",")
  if not set(kinds) <= set(KINDS):
    parser.error(f"--kinds: one of {', '.join(KINDS)}")
  if args.max_queue < args.clients:
    parser.error("--max_queue must be at least --clients (the soak's load)")
  with tempfile.TemporaryDirectory() as folder:
    workdir = args.workdir or bench_serve.make_workdir(folder)
    extra = [
      f"--max_queue={args.max_queue}",
      "--read_seconds=2",
      f"--files_dir={folder}/files",
      "--max_files=256",
    ]
    process, port = bench_serve.start_server(
      workdir, "16,32,64,256", args.max_batch, extra
    )
    try:
      soak(port, args.warm_seconds, args.clients, args.seed + 1, kinds)
      watch = MemoryWatch(process.pid)
      watch.start()
      start = time.monotonic()
      results = soak(port, args.seconds, args.clients, args.seed, kinds)
      seconds = time.monotonic() - start
      watch.stop.set()
      watch.join()
      unexpected = print_soak(results, watch.samples, seconds)
      unexpected += overload(port, args.overload_clients, args.max_queue)
    finally:
      process.send_signal(signal.SIGTERM)
      process.wait(timeout=60)
  return 1 if unexpected or process.returncode != 0 else 0


if __name__ == "__main__":
  sys.exit(main())
