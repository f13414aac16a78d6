"""`lstm_impl='auto'` on a CPU: the faster of 'kernel' and 'onednn', measured.

  python -m melodyjax.model.kernels.calibrate '[T, B, D, [H1, H2, ...]]'

`choose(shape)` times the whole LSTM stack, forward + backward, of each
candidate at the run's shapes (time, batch, input width, hidden sizes) in
a fresh process (so the caller's threads, and any trace it is in, stay out
of it), alternated in rounds, and keeps the one with the lower median. The
answer is cached per machine and shape in the kernel cache
(`calibration.json` beside the built libraries; the folder's name hashes
the sources, the compiler, JAX and the CPU's flags), so a machine measures
each shape once. Shapes too small to matter (under `MIN_TRAIN_FLOPS` per
pass) take the kernel without measuring; so does everything when
MELODYJAX_LSTM_CALIBRATE=0. A measurement during which other programs used
more than a quarter of the machine's CPU is used but not cached.
"""

from __future__ import annotations

import fcntl
import json
import os
import statistics
import subprocess
import sys
import time

from melodyjax.model.kernels import build

CANDIDATES = ("kernel", "onednn")
# A forward + backward pass of fewer FLOPs than this (the reference
# model's stack at B = 8, T = 64) is not measured: the kernel is faster
# there on every CPU measured (BENCHMARKS.md), and a measurement costs
# seconds.
MIN_TRAIN_FLOPS = 2e9
ROUNDS, CALLS = 3, 3
MAX_OTHERS_SHARE = 0.25  # of the machine's CPU, used by other programs


def train_flops(shape) -> float:
  t, b, d, sizes = shape
  flops = 0
  for h in sizes:
    flops += 8 * h * (d + h)
    d = h
  return 3.0 * flops * t * b


def _cache_file():
  folder = build.build("kernel").parent
  return folder / "calibration.json", folder.name + "/" + build.build(
    "onednn"
  ).parent.name


def _key(shape) -> str:
  t, b, d, sizes = shape
  return f"T{t} B{b} D{d} H{'-'.join(map(str, sizes))}"


def _measure_here(shape) -> dict[str, float]:
  """Median ms of each candidate's stack (forward + backward), here."""
  import jax
  import jax.numpy as jnp

  from melodyjax.model.kernels import ops

  t, b, d, sizes = shape
  key = jax.random.key(0)
  x = jax.random.normal(key, (t, b, d), jnp.float32)
  params, width = [], d
  for h in sizes:
    k1, k2, key = jax.random.split(key, 3)
    wi = jax.random.normal(k1, (width, 4 * h)) / width**0.5
    wh = jax.random.normal(k2, (h, 4 * h)) / h**0.5
    zeros = jnp.zeros((b, h))
    params.append((wi, wh, jnp.zeros(4 * h), zeros, zeros))
    width = h

  def make(impl):
    def loss(x, params):
      for p in params:
        x, _ = ops.lstm_layer(x, *p, impl=impl)
      return jnp.sum(x)

    fn = jax.jit(jax.grad(loss, argnums=(0, 1)))
    jax.block_until_ready(fn(x, params))
    return lambda: jax.block_until_ready(fn(x, params))

  fns = {impl: make(impl) for impl in CANDIDATES}
  times = {impl: [] for impl in CANDIDATES}
  start_ticks, own = _cpu_ticks(), sum(os.times()[:2])
  for r in range(ROUNDS):
    for impl in CANDIDATES if r % 2 == 0 else CANDIDATES[::-1]:
      fns[impl]()  # one untimed call after the switch
      for _ in range(CALLS):
        start = time.perf_counter()
        fns[impl]()
        times[impl].append(time.perf_counter() - start)
  out = {impl: 1e3 * statistics.median(ts) for impl, ts in times.items()}
  end_ticks = _cpu_ticks()
  if start_ticks and end_ticks and end_ticks[1] > start_ticks[1]:
    own = (sum(os.times()[:2]) - own) * os.sysconf("SC_CLK_TCK")
    busy = end_ticks[0] - start_ticks[0] - own
    out["others"] = max(0.0, busy / (end_ticks[1] - start_ticks[1]))
  return out


def _cpu_ticks() -> tuple[int, int] | None:
  """(busy, total) CPU ticks of the machine so far, from /proc/stat."""
  try:
    with open("/proc/stat") as f:
      ticks = [int(x) for x in f.readline().split()[1:9]]
  except (OSError, ValueError):
    return None
  return sum(ticks) - ticks[3] - ticks[4], sum(ticks)


def _measure_in_process(shape) -> dict[str, float]:
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  done = subprocess.run(
    [
      sys.executable,
      "-m",
      "melodyjax.model.kernels.calibrate",
      json.dumps(shape),
    ],
    capture_output=True,
    text=True,
    env=env,
    timeout=900,
  )
  if done.returncode != 0:
    raise RuntimeError(build._one_line(done.stderr or done.stdout))
  return json.loads(done.stdout.strip().splitlines()[-1])


def choose(shape) -> tuple[str, str]:
  """(the faster candidate at `shape`, a note saying how it was chosen).

  Args:
    shape: (time, batch, input width, hidden sizes) of the stack.
  """
  shape = (int(shape[0]), int(shape[1]), int(shape[2]), tuple(shape[3]))
  if os.environ.get("MELODYJAX_LSTM_CALIBRATE", "1") == "0":
    return "kernel", "not measured: MELODYJAX_LSTM_CALIBRATE=0"
  if train_flops(shape) < MIN_TRAIN_FLOPS:
    return "kernel", "not measured: a small stack"
  path, machine = _cache_file()
  key = _key(shape)
  with open(path.with_suffix(".lock"), "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # one measurement per machine at once
    table = json.loads(path.read_text()) if path.exists() else {}
    entry = table.get(key)
    if entry is None:
      try:
        entry = _measure_in_process(list(shape[:3]) + [list(shape[3])])
      except (RuntimeError, subprocess.SubprocessError, ValueError) as e:
        return "kernel", f"measuring failed ({e})"
      entry["machine"] = machine
      # Other programs on the cores skew the choice: such a measurement
      # serves this process only, and the next one measures again.
      if entry.get("others", 0.0) <= MAX_OTHERS_SHARE:
        table[key] = entry
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(table, indent=1, sort_keys=True))
        os.replace(tmp, path)
  ms = {impl: entry[impl] for impl in CANDIDATES}
  pick = min(ms, key=ms.get)
  measured = ", ".join(f"{impl} {ms[impl]:.1f} ms" for impl in CANDIDATES)
  load = entry.get("others", 0.0)
  loaded = "" if load <= MAX_OTHERS_SHARE else ", under load: not cached"
  return pick, (
    f"measured at {key}, fwd+bwd: {measured} (others' CPU "
    f"{100 * load:.0f}%{loaded})"
  )


if __name__ == "__main__":
  t, b, d, sizes = json.loads(sys.argv[1])
  print(json.dumps(_measure_here((t, b, d, tuple(sizes)))))
