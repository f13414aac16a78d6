"""What the framework benchmarks share: worker processes, timing, FLOPs.

Every contender runs in its own process (`benchmarks/jax_worker.py`,
`benchmarks/torch_worker.py`), one process per contender per round, the
contenders alternated (A B, then B A, ...), so that neither framework's
threads, allocator or environment touch the other's and drift of a shared
machine hits both. A worker prints progress lines, then one line
`@@RESULT <json>`; `run_worker` returns that JSON. This module imports
neither JAX nor PyTorch.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT_PREFIX = "@@RESULT "
PITCH_VOCAB, DURATION_VOCAB = 49, 42  # ESAC's vocabularies
FIRST_REAL_ID = 4  # ids below are reserved (pad, bos, eos, unk)
# The reference model (configs/default.py): input 128 + 32, LSTMs, dense.
SEED_MODEL = {"input_dim": 160, "lstm_sizes": (256, 128, 128), "dense": 128}
# The melody Transformer of configs/transformer.py, unconditioned, with
# independent heads (benchmarks/torch_transformer.py builds the same).
TRANSFORMER_MODEL = {
  "transformer_width": 128,
  "transformer_layers": 4,
  "transformer_heads": 4,
  "transformer_ff": 512,
  "transformer_position": "rope",
  "transformer_dropout": 0.1,
}
TRAIN_CONFIG = {  # configs/default.py
  "learning_rate": 2e-3,
  "warmup_steps": 500,
  "decay": "cosine",
  "num_train_steps": 20_000,
  "end_lr_fraction": 0.05,
  "weight_decay": 0.0,
  "grad_clip_norm": 1.0,
}
_ISA_FLAGS = (
  "avx2",
  "fma",
  "avx512f",
  "avx512_bf16",
  "avx512_fp16",
  "amx_bf16",
)


# Machine ------------------------------------------------------------------


def cpu_description() -> str:
  """'<model name>, N CPUs, avx2 fma avx512f ...' from /proc/cpuinfo."""
  name, flags = "unknown CPU", set()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name") and name == "unknown CPU":
          name = line.split(":", 1)[1].strip()
        elif line.startswith("flags") and not flags:
          flags = set(line.split(":", 1)[1].split())
  except OSError:
    pass
  isa = " ".join(f for f in _ISA_FLAGS if f in flags)
  return f"{name}, {os.cpu_count()} CPUs, {isa or 'no AVX2'}"


def load_average() -> float:
  return os.getloadavg()[0]


def _cpu_ticks(nice: bool = True) -> tuple[int, int] | None:
  """(busy, total) CPU ticks of the machine so far, from /proc/stat;
  nice=False leaves out the time of niced processes (they yield)."""
  try:
    with open("/proc/stat") as f:
      ticks = [int(x) for x in f.readline().split()[1:9]]
  except (OSError, ValueError):
    return None
  busy = sum(ticks) - ticks[3] - ticks[4] - (0 if nice else ticks[1])
  return busy, sum(ticks)


class OthersMeter:
  """Share of the machine's CPU time used by other processes meanwhile.

  0 means this process had the cores to itself; 0.5 on 2 cores means
  another program kept one core busy the whole time. None off Linux.
  """

  def __init__(self, nice: bool = True):
    self.nice = nice
    self.start = _cpu_ticks(nice)
    self.own = sum(os.times()[:2])

  def share(self) -> float | None:
    end = _cpu_ticks(self.nice)
    if self.start is None or end is None or end[1] == self.start[1]:
      return None
    own = (sum(os.times()[:2]) - self.own) * os.sysconf("SC_CLK_TCK")
    busy = end[0] - self.start[0]
    return min(max((busy - own) / (end[1] - self.start[1]), 0.0), 1.0)


def share_text(share: float | None) -> str:
  return "n/a" if share is None else f"{100 * share:.0f}%"


def timed(fn, repeats: int) -> list[float]:
  """Seconds of each of `repeats` calls of fn(i) (fn blocks itself)."""
  times = []
  for i in range(repeats):
    start = time.perf_counter()
    fn(i)
    times.append(time.perf_counter() - start)
  return times


def timed_block(fn, repeats: int) -> dict:
  """{'times': seconds of each call, 'others': others' CPU share}."""
  meter = OthersMeter()
  times = timed(fn, repeats)
  return {"times": times, "others": meter.share()}


def median_ms(times) -> float:
  return statistics.median(times) * 1000


# FLOPs --------------------------------------------------------------------


def lstm_forward_flops(input_dim: int, sizes) -> int:
  """Forward FLOPs per event of stacked LSTMs: 8h(d + h) per layer."""
  flops, d = 0, input_dim
  for h in sizes:
    flops += 8 * h * (d + h)
    d = h
  return flops


def step_flops(batch: int, seq_len: int, objective: str, model=None) -> float:
  """FLOPs of one training step: 3x forward; 'last' runs the heads once."""
  model = model or SEED_MODEL
  lstm = lstm_forward_flops(model["input_dim"], model["lstm_sizes"])
  top, dense = model["lstm_sizes"][-1], model["dense"]
  heads = 2 * top * dense + 2 * dense * (PITCH_VOCAB + DURATION_VOCAB)
  head_events = batch * seq_len if objective == "all" else batch
  return 3.0 * (lstm * batch * seq_len + heads * head_events)


def transformer_step_flops(batch: int, seq_len: int) -> float:
  """FLOPs of one training step of `TRANSFORMER_MODEL` (objective 'all'):
  3x forward; per event the input projection, per block q, k, v, out and
  the MLP (2 * d * out each) and causal attention (scores and mixing,
  half of 4 * T * width), the heads."""
  model = TRANSFORMER_MODEL
  width, ff = model["transformer_width"], model["transformer_ff"]
  input_dim, dense = SEED_MODEL["input_dim"], SEED_MODEL["dense"]
  block = 2 * width * 4 * width + 4 * width * ff + 2 * seq_len * width
  per_event = (
    2 * input_dim * width
    + model["transformer_layers"] * block
    + 2 * width * dense
    + 2 * dense * (PITCH_VOCAB + DURATION_VOCAB)
  )
  return 3.0 * per_event * batch * seq_len


# Data ----------------------------------------------------------------------


def random_ids(batch: int, seq_len: int, objective: str, seed: int = 0):
  """Random windows of real ids (no padding): a dict of int32 arrays
  pitch, duration [batch, seq_len], target_pitch, target_duration
  ([batch, seq_len] for 'all', [batch] for 'last'), rows [batch]."""
  import numpy as np

  rng = np.random.default_rng(seed)
  pitch = rng.integers(FIRST_REAL_ID, PITCH_VOCAB, (batch, seq_len + 1))
  duration = rng.integers(FIRST_REAL_ID, DURATION_VOCAB, (batch, seq_len + 1))
  pitch, duration = pitch.astype(np.int32), duration.astype(np.int32)
  if objective == "all":
    targets = pitch[:, 1:], duration[:, 1:]
  else:
    targets = pitch[:, -1], duration[:, -1]
  return {
    "pitch": np.ascontiguousarray(pitch[:, :-1]),
    "duration": np.ascontiguousarray(duration[:, :-1]),
    "target_pitch": np.ascontiguousarray(targets[0]),
    "target_duration": np.ascontiguousarray(targets[1]),
    "rows": np.arange(batch, dtype=np.int32),
  }


def run_blocks(fns: dict, steps: int, blocks: int, warmup: int) -> dict:
  """Compiles and warms each fn, then `blocks` rounds of `steps` calls of
  each, alternated; {name: {'times', 'others', 'warmup_s'}}."""
  out = {}
  for name, fn in fns.items():
    start = time.perf_counter()
    for i in range(warmup):
      fn(i)
    out[name] = {
      "times": [],
      "others": [],
      "warmup_s": time.perf_counter() - start,
    }
  for _ in range(blocks):
    for name, fn in fns.items():
      block = timed_block(fn, steps)
      out[name]["times"] += block["times"]
      out[name]["others"].append(block["others"])
      print(
        f"{name}: median {median_ms(block['times']):.1f} ms over "
        f"{steps} (others' CPU {share_text(block['others'])})",
        flush=True,
      )
  for figures in out.values():
    shares = [s for s in figures["others"] if s is not None]
    figures["others"] = max(shares) if shares else None
  return out


# Workers -------------------------------------------------------------------


def emit(result: dict) -> None:
  """A worker's last line: its result for the driver."""
  print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_worker(
  module: str, task: dict, env: dict | None = None, quiet: bool = False
) -> dict:
  """Runs `python -m benchmarks.<module> '<task json>'` in a fresh process.

  Progress lines are echoed (unless quiet); returns the worker's result.
  Raises RuntimeError with the end of its output if it fails.
  """
  command = [sys.executable, "-m", f"benchmarks.{module}", json.dumps(task)]
  process = subprocess.Popen(
    command,
    cwd=ROOT,
    env=env if env is not None else dict(os.environ),
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
  )
  result, tail = None, []
  for line in process.stdout:
    if line.startswith(RESULT_PREFIX):
      result = json.loads(line[len(RESULT_PREFIX) :])
      continue
    tail = (tail + [line])[-40:]
    if not quiet:
      print(f"  {module}: {line}", end="", flush=True)
  code = process.wait()
  if code != 0 or result is None:
    raise RuntimeError(f"{module} {task} failed ({code}):\n{''.join(tail)}")
  return result


def wait_quiet(max_share: float, timeout_s: float, probe_s: float = 2.0):
  """Waits until other processes use at most `max_share` of the machine's
  CPU over `probe_s` (this process sleeps meanwhile), at most `timeout_s`.
  Niced processes do not count: they soak up idle cores but yield them.

  Returns the last share measured (None off Linux).
  """
  deadline = time.monotonic() + timeout_s
  while True:
    meter = OthersMeter(nice=False)
    time.sleep(probe_s)
    share = meter.share()
    if share is None or share <= max_share or time.monotonic() > deadline:
      return share


# Set by the drivers' --quiet flags: (max others' share, seconds to wait).
QUIET = {"max_share": 1.0, "timeout_s": 0.0}


def alternate(contenders: dict, rounds: int, pause_s: float = 1.0) -> dict:
  """Runs each contender once per round in its own process, alternated.

  Args:
    contenders: {name: zero-argument function returning a result dict}.
    rounds: how many times each runs; odd rounds reverse the order (A B,
      B A, ...), so that neither always follows the other.
    pause_s: idle time between processes (spinning threads of the last
      one end, the page cache settles).

  Returns:
    {name: [result of each round]}.
  """
  names = list(contenders)
  out = {name: [] for name in names}
  for r in range(rounds):
    for name in names if r % 2 == 0 else names[::-1]:
      time.sleep(pause_s)
      if QUIET["timeout_s"] > 0:
        share = wait_quiet(QUIET["max_share"], QUIET["timeout_s"])
        print(f"  (others' CPU before {name}: {share_text(share)})", flush=True)
      out[name].append(contenders[name]())
  return out


def add_quiet_flags(parser) -> None:
  parser.add_argument(
    "--quiet_share",
    type=float,
    default=0.1,
    help="before each process, wait until other processes use at most "
    "this share of the CPU (over 2 s) ...",
  )
  parser.add_argument(
    "--quiet_wait_s",
    type=float,
    default=0.0,
    help="... for at most this long (0: do not wait)",
  )


def set_quiet(args) -> None:
  QUIET.update(max_share=args.quiet_share, timeout_s=args.quiet_wait_s)


def torch_env(allocator: str = "system") -> dict:
  """The environment of a PyTorch worker: the user's own, as it is.

  allocator 'system' drops an allocator a parent may have set (a PyTorch
  user gets glibc malloc); 'fast' gives it what the melodyjax mains pick
  (`cli/runtime.py`: tcmalloc, else glibc's huge pages).
  """
  from melodyjax.cli import runtime

  env = dict(os.environ)
  if allocator == "fast":
    chosen = runtime.allocator_env(env, "auto")
    return chosen[1] if chosen else env
  env.pop("LD_PRELOAD", None)
  env.pop(runtime.ENV_ACTIVE, None)
  env[runtime.ENV_CHOICE] = "system"
  return env


def allocator_name(env: dict) -> str:
  from melodyjax.cli import runtime

  return env.get(runtime.ENV_ACTIVE) or "glibc malloc"


def pooled(results: list[dict], key: str = "times") -> list[float]:
  """All timings of `key` over the rounds' results, in order."""
  return [t for r in results for t in r[key]]


def others_max(results: list[dict], key: str = "others") -> float | None:
  shares = [r[key] for r in results if r.get(key) is not None]
  return max(shares) if shares else None
