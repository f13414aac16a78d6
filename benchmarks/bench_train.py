"""Training throughput and sampling speed: melodyjax against PyTorch eager.

  .venv/bin/python -m benchmarks.bench_train [--steps 20] [--rounds 2]
      [--breakdown] [--profile] [--no_sample] [--out benchmarks/results.json]

Measures in one process, on this machine:

  1. Machine peak: a 2048 x 2048 float32 matmul (numpy, jax, torch's MKL
     and oneDNN), median of several, in GFLOP/s; the best is the peak.
  2. melodyjax's train step (`train.make_steps`, 'jit' mode, a mesh of one
     CPU device) on the seed's model (ESAC vocabularies: 49 pitch, 42
     duration ids), batch 64 x 64 events, float32, random ids >= 4 (no
     padding), objectives 'all' and 'last'. Compiled and warmed up first,
     then the median step time (each step blocked on). tokens/s is
     batch * seq_len / step time; for 'last' too (input tokens, although
     only the last position of each window is a target).
  3. The PyTorch reference of the same model (benchmarks/torch_reference.py)
     on the same data, eager, Adam with gradient clipping, 2 threads. JAX and
     PyTorch blocks of `--steps` steps alternate `--rounds` times, so drift
     of the shared machine hits both; the ratio is JAX / PyTorch tokens/s.
  4. Sampling, 256 notes for 1 and 64 melodies: `sample.sample` against a
     PyTorch loop carrying (h, c), notes/s, blocks alternated the same way.
     The reference counts at its fastest of four forms: LSTM cells
     (`torch._VF.lstm_cell`) or nn.LSTM on one step, 1 or 2 threads.

`--breakdown` also times forward and forward + backward alone (alternated
the same way) and the LSTM's in-loop matmul; `--profile` traces the JAX step
and prints where XLA:CPU spends it. Each timed block prints the share of the
machine's CPU that other processes used meanwhile (from /proc/stat): on a
shared 2-core machine, a figure measured while others ran is not a figure of
the code (PyTorch's OpenMP threads suffer most).

FLOPs are counted as issue 6 says: an LSTM layer with input d and hidden h
costs 8h(d + h) per event forward, a dense layer 2 * d * out; training is
3x forward. Needs the `bench` extra for PyTorch (`pip install -e
'.[bench]'`); without it the JAX figures are still measured. Figures are
printed and merged by name into benchmarks/results.json.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

if __name__ == "__main__":
  from melodyjax.cli import runtime

  # Before JAX allocates anything; MELODYJAX_MALLOC=system opts out.
  runtime.reexec_with_fast_malloc()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import results  # noqa: E402
from melodyjax.data import windows as windows_lib  # noqa: E402
from melodyjax.model import lstm  # noqa: E402
from melodyjax.model import model as model_lib  # noqa: E402
from melodyjax.sampling import sampler  # noqa: E402
from melodyjax.training import parallel  # noqa: E402
from melodyjax.training import state as state_lib  # noqa: E402
from melodyjax.training import steps as steps_lib  # noqa: E402

try:
  import torch

  from benchmarks import torch_reference
except ImportError:  # the `bench` extra is not installed
  torch = None

PITCH_VOCAB, DURATION_VOCAB = 49, 42  # ESAC's vocabularies
FIRST_REAL_ID = 4  # ids below are reserved (pad, bos, eos, unk)
OBJECTIVES = ("all", "last")
SAMPLE_BATCHES = (1, 64)
TORCH_THREADS = 2
# Issue 6: (comparison, bound) per result name; the rest have none.
TARGETS = {
  "train_all_jax_vs_torch": (">=", 1.25),
  "train_last_jax_vs_torch": (">=", 1.25),
  "sample_vs_torch_1_melodies_ratio": (">=", 10.0),
  "sample_vs_torch_64_melodies_ratio": (">=", 2.0),
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


def load_average() -> float:
  return os.getloadavg()[0]


def _cpu_ticks() -> tuple[int, int] | None:
  """(busy, total) CPU ticks of the machine so far, from /proc/stat."""
  try:
    with open("/proc/stat") as f:
      ticks = [int(x) for x in f.readline().split()[1:9]]
  except (OSError, ValueError):
    return None
  return sum(ticks) - ticks[3] - ticks[4], sum(ticks)


class OthersMeter:
  """Share of the machine's CPU time used by other processes meanwhile.

  0 means this process had the cores to itself; 0.5 on 2 cores means
  another program kept one core busy the whole time. None off Linux.
  """

  def __init__(self):
    self.start = _cpu_ticks()
    self.own = sum(os.times()[:2])

  def share(self) -> float | None:
    end = _cpu_ticks()
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


def median_ms(times) -> float:
  return statistics.median(times) * 1000


# FLOPs ---------------------------------------------------------------------


def forward_flops_per_event(config: model_lib.ModelConfig) -> tuple[int, int]:
  """(LSTM stack, dense + heads) forward FLOPs per event."""
  lstm = 0
  d = config.input_dim
  for h in config.lstm_sizes:
    lstm += 8 * h * (d + h)
    d = h
  heads = 2 * d * config.dense_size + 2 * config.dense_size * (
    config.pitch_vocab_size + config.duration_vocab_size
  )
  return lstm, heads


def step_flops(
  config: model_lib.ModelConfig, batch: int, seq_len: int, objective: str
) -> float:
  """FLOPs of one training step: 3x forward; 'last' runs the heads once."""
  lstm, heads = forward_flops_per_event(config)
  head_events = batch * seq_len if objective == "all" else batch
  return 3.0 * (lstm * batch * seq_len + heads * head_events)


# Machine peak --------------------------------------------------------------


def matmul_gflops(n: int, repeats: int) -> dict[str, float]:
  """GFLOP/s of an n x n float32 matmul per library (median of repeats)."""
  flops = 2.0 * n**3
  rng = np.random.default_rng(0)
  a = rng.standard_normal((n, n), np.float32)
  b = rng.standard_normal((n, n), np.float32)
  out = {}
  np.dot(a, b)
  out["numpy"] = flops / statistics.median(
    timed(lambda i: np.dot(a, b), repeats)
  )
  ja, jb = jnp.asarray(a), jnp.asarray(b)
  dot = jax.jit(jnp.dot)
  dot(ja, jb).block_until_ready()
  out["jax"] = flops / statistics.median(
    timed(lambda i: dot(ja, jb).block_until_ready(), repeats)
  )
  if torch is not None:
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    torch.mm(ta, tb)
    out["torch"] = flops / statistics.median(
      timed(lambda i: torch.mm(ta, tb), repeats)
    )
    # oneDNN's AVX-512 kernels (what torch's nn.LSTM runs on CPU) reach
    # about twice MKL's sgemm on AMD; the machine peak is the best of all.
    da, db = ta.to_mkldnn(), tb.t().contiguous().to_mkldnn()
    linear = torch._C._nn.mkldnn_linear
    linear(da, db)
    out["onednn"] = flops / statistics.median(
      timed(lambda i: linear(da, db), repeats)
    )
  return {k: v / 1e9 for k, v in out.items()}


def recurrent_matmul_gflops(
  batch: int, hidden: int, steps: int, repeats: int
) -> dict[str, float]:
  """GFLOP/s of the LSTM's in-loop product, h [batch, hidden] @ W [hidden,
  4 hidden], `steps` times in sequence (each h depends on the last), in a
  jitted `lax.scan` and in a PyTorch eager loop."""
  flops = 2.0 * batch * hidden * 4 * hidden * steps
  rng = np.random.default_rng(0)
  w = rng.standard_normal((hidden, 4 * hidden), np.float32) / hidden**0.5
  h0 = rng.standard_normal((batch, hidden), np.float32)
  out = {}

  @jax.jit
  def scan(h, w):
    def body(h, _):
      return jnp.tanh(jnp.dot(h, w)[:, :hidden]), None

    return jax.lax.scan(body, h, None, length=steps)[0]

  jh, jw = jnp.asarray(h0), jnp.asarray(w)
  scan(jh, jw).block_until_ready()
  out["jax"] = flops / statistics.median(
    timed(lambda i: scan(jh, jw).block_until_ready(), repeats)
  )
  if torch is not None:
    th, tw = torch.from_numpy(h0), torch.from_numpy(w)

    def loop(i):
      h = th
      for _ in range(steps):
        h = torch.tanh(torch.mm(h, tw)[:, :hidden])
      return h

    loop(0)
    out["torch"] = flops / statistics.median(timed(loop, repeats))
  return {k: v / 1e9 for k, v in out.items()}


# Data ----------------------------------------------------------------------


def random_batch(
  batch: int, seq_len: int, objective: str, seed: int = 0
) -> windows_lib.Batch:
  """Random windows of real ids (no padding), as the pipeline lays them."""
  rng = np.random.default_rng(seed)
  pitch = rng.integers(FIRST_REAL_ID, PITCH_VOCAB, (batch, seq_len + 1))
  duration = rng.integers(FIRST_REAL_ID, DURATION_VOCAB, (batch, seq_len + 1))
  pitch, duration = pitch.astype(np.int32), duration.astype(np.int32)
  if objective == "all":
    targets = pitch[:, 1:], duration[:, 1:]
  else:
    targets = pitch[:, -1], duration[:, -1]
  return windows_lib.Batch(
    pitch=np.ascontiguousarray(pitch[:, :-1]),
    duration=np.ascontiguousarray(duration[:, :-1]),
    target_pitch=np.ascontiguousarray(targets[0]),
    target_duration=np.ascontiguousarray(targets[1]),
    rows=np.arange(batch, dtype=np.int32),
  )


# Training ------------------------------------------------------------------


class JaxTrainer:
  """melodyjax's jitted train step on one CPU device, state carried."""

  def __init__(self, model, batch: windows_lib.Batch, objective: str):
    self.model = model
    self.objective = objective
    mesh = parallel.create_mesh(jax.devices()[:1])
    tx = state_lib.create_optimizer(TRAIN_CONFIG)
    runner = parallel.create("jit", mesh)
    self.train_step, _ = steps_lib.make_steps(model, tx, objective, runner)
    init_key, self.dropout_key = jax.random.split(jax.random.key(0))
    self.state = runner.put_state(
      state_lib.create_train_state(init_key, model, tx, batch.pitch.shape[1])
    )
    self.batch = runner.put_batch(batch.as_dict())
    self.local_batch = {k: jnp.asarray(v) for k, v in batch.as_dict().items()}

  def step(self, i=0):
    del i
    self.state, sums = self.train_step(self.state, self.batch, self.dropout_key)
    jax.block_until_ready((self.state, sums))

  def phase_fns(self):
    """Forward (loss) and forward + backward (gradients) alone, compiled."""
    model, objective, batch = self.model, self.objective, self.local_batch
    config = model.config
    mask = model_lib.spatial_dropout_mask(
      self.dropout_key, batch["rows"], config.input_dim, config.spatial_dropout
    )

    def loss_fn(params):
      sums = steps_lib.compute_sums(model, params, batch, objective, mask)
      return (sums["nll_pitch"] + sums["nll_duration"]) / sums["count"]

    forward = jax.jit(loss_fn)
    gradients = jax.jit(jax.grad(loss_fn))
    params = jax.tree.map(jnp.copy, self.state.params)  # the step donates
    fns = {
      "forward": lambda i: jax.block_until_ready(forward(params)),
      "forward_backward": lambda i: jax.block_until_ready(gradients(params)),
    }
    for fn in fns.values():
      fn(0)
    return fns


class TorchTrainer:
  """The PyTorch reference's eager train step on the same data."""

  def __init__(self, config, batch: windows_lib.Batch, objective: str):
    torch.manual_seed(0)
    self.model = torch_reference.TorchMelodyModel(
      config.pitch_vocab_size,
      config.duration_vocab_size,
      config.pitch_embed_dim,
      config.duration_embed_dim,
      config.spatial_dropout,
      config.lstm_sizes,
      config.dense_size,
    )
    self.objective = objective
    self.train_step = torch_reference.make_train_step(
      self.model,
      objective,
      TRAIN_CONFIG["learning_rate"],
      TRAIN_CONFIG["grad_clip_norm"],
    )
    self.batch = {
      k: torch.from_numpy(v.astype(np.int64))
      for k, v in batch.as_dict().items()
    }

  def step(self, i=0):
    del i
    self.train_step(self.batch)

  def phase_fns(self):
    """Forward (recording for autograd) and forward + backward alone."""
    model, batch = self.model, self.batch
    model.train()
    nll = torch.nn.functional.cross_entropy
    last_only = self.objective == "last"

    def forward():
      pitch_logits, duration_logits = model(
        batch["pitch"], batch["duration"], last_only=last_only
      )
      return (
        nll(pitch_logits.reshape(-1, pitch_logits.shape[-1]),
            batch["target_pitch"].reshape(-1))
        + nll(duration_logits.reshape(-1, duration_logits.shape[-1]),
              batch["target_duration"].reshape(-1))
      )  # fmt: skip

    def forward_backward():
      model.zero_grad(set_to_none=True)
      forward().backward()

    fns = {
      "forward": lambda i: forward(),
      "forward_backward": lambda i: forward_backward(),
    }
    for fn in fns.values():
      fn(0)
    return fns


def bench_training(args, config, peak, rows):
  batch_size, seq_len = args.batch_size, args.seq_len
  tokens = batch_size * seq_len
  model = model_lib.MelodyModel(config)
  summary = {}
  for objective in OBJECTIVES:
    batch = random_batch(batch_size, seq_len, objective)
    flops = step_flops(config, batch_size, seq_len, objective)
    trainers = {"jax": JaxTrainer(model, batch, objective)}
    if torch is not None:
      trainers["torch"] = TorchTrainer(config, batch, objective)
    for name, trainer in trainers.items():
      start = time.perf_counter()
      for i in range(args.warmup):
        trainer.step(i)
      print(
        f"[{objective}] {name} warm-up ({args.warmup} steps, compile "
        f"included): {time.perf_counter() - start:.1f} s",
        flush=True,
      )
    fns = {name: {"step": t.step} for name, t in trainers.items()}
    if args.profile and objective == "all":
      profile_jax_step(trainers["jax"], args.steps)
    if args.breakdown:
      for name, trainer in trainers.items():
        fns[name].update(trainer.phase_fns())
    times = {name: {kind: [] for kind in fns[name]} for name in fns}
    meter = OthersMeter()
    for r in range(args.rounds):
      for name in trainers:
        for kind, fn in fns[name].items():
          block_meter = OthersMeter()
          usage = resource.getrusage(resource.RUSAGE_SELF)
          block = timed(fn, args.steps)
          after = resource.getrusage(resource.RUSAGE_SELF)
          times[name][kind] += block
          # Page faults and system CPU of this process per step: what the
          # allocator changes (melodyjax/cli/runtime.py).
          faults = (after.ru_minflt - usage.ru_minflt) / len(block)
          system_ms = (after.ru_stime - usage.ru_stime) / len(block) * 1000
          print(
            f"[{objective}] round {r + 1} {name:5s} {kind:16s}: median "
            f"{median_ms(block):7.1f} ms, best {min(block) * 1000:7.1f} ms "
            f"over {len(block)}; {faults:,.0f} page faults, {system_ms:.1f} "
            f"ms system CPU per step (others' CPU "
            f"{share_text(block_meter.share())})",
            flush=True,
          )
    figures = {"others_share": meter.share()}
    for name in trainers:
      ts = times[name]["step"]
      seconds = statistics.median(ts)
      figures[name] = {
        "step_ms": seconds * 1000,
        "best_ms": min(ts) * 1000,
        "tokens_per_s": tokens / seconds,
        "gflops": flops / seconds / 1e9,
        "peak_share": 100 * flops / seconds / 1e9 / peak,
        "steps": len(ts),
      }
      prefix = f"train_{objective}_{name}"
      rows += [
        (f"{prefix}_step_ms", seconds * 1000, "ms"),
        (f"{prefix}_best_step_ms", min(ts) * 1000, "ms"),
        (f"{prefix}_tokens_per_s", tokens / seconds, "tokens/s"),
        (f"{prefix}_gflops", flops / seconds / 1e9, "GFLOP/s"),
        (f"{prefix}_peak_share", figures[name]["peak_share"], "%"),
      ]
      if args.breakdown:
        figures[name]["phases"] = {
          kind: median_ms(ts) for kind, ts in times[name].items()
        }
    if figures["others_share"] is not None:
      rows.append(
        (
          f"train_{objective}_others_cpu_share",
          100 * figures["others_share"],
          "%",
        )
      )
    rows.append((f"train_{objective}_step_gflop", flops / 1e9, "GFLOP"))
    if "torch" in figures:
      ratio = figures["jax"]["tokens_per_s"] / figures["torch"]["tokens_per_s"]
      figures["ratio"] = ratio
      rows.append((f"train_{objective}_jax_vs_torch", ratio, "x"))
    summary[objective] = (flops, figures)
    del trainers
  return summary


def profile_jax_step(trainer: JaxTrainer, steps: int, top: int = 12) -> None:
  """Prints where XLA:CPU spends a step: ops by time, loop vs once.

  Traces `steps` steps with jax.profiler (a Perfetto trace in a temporary
  folder) and sums the durations of the executed ops (thunks) by name; an
  op run seq_len times per step is inside the scan over time. The HLO's
  op_name metadata tells backward ops ('transpose(...)') from the rest.
  """
  import collections  # pylint: disable=g-import-not-at-top
  import glob  # pylint: disable=g-import-not-at-top
  import gzip  # pylint: disable=g-import-not-at-top
  import json  # pylint: disable=g-import-not-at-top
  import re  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top

  hlo = (
    trainer.train_step.lower(trainer.state, trainer.batch, trainer.dropout_key)
    .compile()
    .as_text()
  )
  instructions = set(re.findall(r"%(\S+) = ", hlo))
  op_names = dict(re.findall(r"%(\S+) = [^\n]*?op_name=\"([^\"]*)\"", hlo))
  with tempfile.TemporaryDirectory() as folder:
    with jax.profiler.trace(folder, create_perfetto_trace=True):
      for _ in range(steps):
        trainer.step()
    (path,) = glob.glob(f"{folder}/**/perfetto_trace.json.gz", recursive=True)
    with gzip.open(path) as f:
      trace = json.load(f)
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  total, calls = collections.Counter(), collections.Counter()
  for event in events:
    name = event.get("name", "")
    if event.get("ph") != "X" or name not in instructions:
      continue
    total[name] += event.get("dur", 0) / 1000 / steps
    calls[name] += 1 / steps
  seq_len = trainer.batch["pitch"].shape[1]
  groups = collections.Counter()
  for name, ms in total.items():
    where = "in the scan" if calls[name] >= seq_len else "once per step"
    # YNNPACK fusions are the matmuls (with what XLA fused into them).
    kind = "matmul" if name.startswith(("ynn", "dot")) else "other"
    way = "backward" if "transpose(" in op_names.get(name, "") else "rest"
    groups[(where, way, kind)] += ms
  op_ms, op_calls = sum(total.values()), sum(calls.values())
  print(
    f"\nXLA:CPU profile of the 'all' step ({steps} steps): {op_ms:.1f} ms "
    f"of op time per step, {op_calls:,.0f} ops per step"
  )
  print("  (rest: forward, loss and optimizer)")
  for (where, way, kind), ms in sorted(groups.items()):
    print(f"  {where:13s} {way:8s} {kind:6s} {ms:7.1f} ms")
  print(f"  top {top} ops (ms/step, calls/step, HLO op_name):")
  for name, ms in total.most_common(top):
    print(
      f"  {ms:7.2f} {calls[name]:5.0f}  {name}: "
      f"{op_names.get(name, '?').split('/', 1)[-1][:70]}"
    )


# Sampling ------------------------------------------------------------------


def bench_sampling(args, config, rows):
  model = model_lib.MelodyModel(config)
  dummy = jnp.zeros((1, 4), jnp.int32)
  params = model.init(jax.random.key(0), dummy, dummy)
  settings = sampler.make_settings(1.0)
  num_notes = args.num_notes
  summary = {}
  if torch is not None:
    torch.manual_seed(0)
    torch_model = torch_reference.TorchMelodyModel(
      config.pitch_vocab_size, config.duration_vocab_size
    )
    generator = torch.Generator().manual_seed(0)
  for batch in SAMPLE_BATCHES:
    primer = (jnp.zeros((batch, 1), jnp.int32),) * 2 + (
      jnp.zeros(batch, jnp.int32),
    )

    def run_jax(i, primer=primer):
      jax.block_until_ready(
        sampler.sample(
          model,
          params,
          *primer,
          jax.random.key(i),
          settings,
          num_notes=num_notes,
        )
      )

    runners = {"jax": run_jax}
    if torch is not None:
      # The reference gets its best: LSTM cells or nn.LSTM on one step
      # (oneDNN), 1 or 2 threads; the fastest counts.
      for cell in (True, False):
        for threads in (1, TORCH_THREADS):

          def run_torch(i, batch=batch, threads=threads, cell=cell):
            torch.set_num_threads(threads)
            torch_reference.sample(
              torch_model,
              batch,
              num_notes,
              generator=generator,
              use_cell=cell,
            )

          kind = "cell" if cell else "lstm"
          runners[f"torch_{kind}_{threads}t"] = run_torch
    for fn in runners.values():
      fn(0)  # compile, warm up
    times = {name: [] for name in runners}
    meter = OthersMeter()
    for _ in range(args.rounds):
      for name, fn in runners.items():
        times[name] += timed(fn, args.sample_repeats)
    if torch is not None:
      torch.set_num_threads(TORCH_THREADS)
    rates = {
      name: batch * num_notes / statistics.median(ts)
      for name, ts in times.items()
    }
    others = meter.share()
    prefix = f"sample_vs_torch_{batch}_melodies"
    summary[batch] = rates
    if others is not None:
      rows.append((f"{prefix}_others_cpu_share", 100 * others, "%"))
    rows.append((f"{prefix}_jax_notes_per_s", rates["jax"], "notes/s"))
    if torch is not None:
      best = max((r, n) for n, r in rates.items() if n != "jax")
      rates["torch_best"] = best[0]
      rates["torch_best_name"] = best[1]
      rows += [
        (f"{prefix}_torch_notes_per_s", best[0], "notes/s"),
        (f"{prefix}_ratio", rates["jax"] / best[0], "x"),
      ]
    print(
      f"sampling {batch:2d} melodies x {num_notes} notes: "
      + ", ".join(
        f"{n} {r:,.0f}" for n, r in rates.items() if isinstance(r, float)
      )
      + f" notes/s (others' CPU {share_text(others)})",
      flush=True,
    )
  return summary


# Report --------------------------------------------------------------------


def target_text(name: str, value: float) -> str:
  if name not in TARGETS:
    return ""
  op, bound = TARGETS[name]
  met = value < bound if op == "<" else value >= bound
  return f"target {op} {bound:g}: {'met' if met else 'NOT met'}"


def print_report(
  config, peak_by_lib, peak, train, sampling, loads, args, recurrent=None
):
  lstm, heads = forward_flops_per_event(config)
  batch_size, seq_len = args.batch_size, args.seq_len
  print()
  print(
    f"Load average (1 min): {loads[0]:.2f} at start, {loads[1]:.2f} at "
    f"end, on {os.cpu_count()} cores"
  )
  print(
    "Peak (2048^3 float32 matmul): "
    + ", ".join(f"{k} {v:.1f}" for k, v in peak_by_lib.items())
    + f" GFLOP/s; peak = {peak:.1f}"
  )
  print(
    f"FLOPs per event forward: LSTM stack {lstm:,}, dense + heads "
    f"{heads:,}; training = 3x forward"
  )
  header = (
    f"{'objective':9s} {'framework':9s} {'ms/step':>8s} {'tokens/s':>9s} "
    f"{'GFLOP/s':>8s} {'% peak':>7s}"
  )
  print(f"\nTraining, B={batch_size}, T={seq_len}, float32:")
  print(header)
  for objective, (_, figures) in train.items():
    for name in ("jax", "torch"):
      if name not in figures:
        continue
      f = figures[name]
      print(
        f"{objective:9s} {name:9s} {f['step_ms']:8.1f} "
        f"{f['tokens_per_s']:9,.0f} {f['gflops']:8.1f} "
        f"{f['peak_share']:6.1f}%"
      )
  for objective, (flops, figures) in train.items():
    line = f"[{objective}] {flops / 1e9:.2f} GFLOP/step"
    if "ratio" in figures:
      line += (
        f"; JAX / PyTorch tokens/s = {figures['ratio']:.2f}x ("
        + target_text(f"train_{objective}_jax_vs_torch", figures["ratio"])
        + ")"
      )
    print(line)
    if objective == "last":
      print(
        "  ('last' tokens/s counts all B*T input tokens although only B "
        "positions are targets)"
      )
    print(
      "  CPU time used by other processes meanwhile: "
      f"{share_text(figures['others_share'])} of the machine"
    )
    for name in ("jax", "torch"):
      if "phases" in figures.get(name, {}):
        ph = figures[name]["phases"]
        step_ms = ph["step"]
        fwd, fwd_bwd = ph["forward"], ph["forward_backward"]
        print(
          f"  {name:5s} forward {fwd:6.1f} ms, backward {fwd_bwd - fwd:6.1f}"
          f" ms, optimizer and the rest {step_ms - fwd_bwd:6.1f} ms"
        )
  if recurrent:
    hidden = config.lstm_sizes[0]
    print(
      f"  in-loop matmul [{args.batch_size}, {hidden}] @ [{hidden}, "
      f"{4 * hidden}], {args.seq_len} sequential: "
      + ", ".join(f"{k} {v:.1f}" for k, v in recurrent.items())
      + " GFLOP/s"
    )
  if sampling:
    print(f"\nSampling, {args.num_notes} notes per melody (notes/s):")
    for batch, rates in sampling.items():
      line = f"{batch:2d} melodies: melodyjax {rates['jax']:9,.0f}"
      if "torch_best" in rates:
        ratio = rates["jax"] / rates["torch_best"]
        name = f"sample_vs_torch_{batch}_melodies_ratio"
        line += (
          f", PyTorch {rates['torch_best']:9,.0f} "
          f"({rates['torch_best_name']}), ratio {ratio:.2f}x "
          f"({target_text(name, ratio)})"
        )
      print(line)
  if torch is None:
    print(
      "\nPyTorch is not installed: no reference figures. Install the "
      "extra with: pip install -e '.[bench]'"
    )


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--seq_len", type=int, default=64)
  parser.add_argument("--steps", type=int, default=20, help="steps per block")
  parser.add_argument("--rounds", type=int, default=2, help="blocks per side")
  parser.add_argument("--warmup", type=int, default=3)
  parser.add_argument("--num_notes", type=int, default=256)
  parser.add_argument("--sample_repeats", type=int, default=5)
  parser.add_argument("--peak_repeats", type=int, default=7)
  parser.add_argument(
    "--breakdown",
    action="store_true",
    help="also time forward and forward + backward alone",
  )
  parser.add_argument(
    "--profile",
    action="store_true",
    help="also trace the JAX 'all' step and print where its time goes",
  )
  parser.add_argument("--no_sample", action="store_true")
  parser.add_argument(
    "--lstm_impl",
    default="auto",
    help="melodyjax's LSTM: auto, kernel, onednn, fused or scan",
  )
  parser.add_argument("--out", default=results.DEFAULT_PATH)
  args = parser.parse_args()
  if torch is None:
    print(
      "PyTorch is not installed; JAX figures only. For the reference: "
      "pip install -e '.[bench]'",
      flush=True,
    )
  else:
    torch.set_num_threads(TORCH_THREADS)
  print(
    f"jax {jax.__version__} on {jax.devices()[0].platform} "
    f"({jax.device_count()} devices, using 1)"
    + (f", torch {torch.__version__}" if torch is not None else "")
    + f"; allocator {runtime.active_allocator()} for both",
    flush=True,
  )
  start_load = load_average()
  config = model_lib.ModelConfig(
    PITCH_VOCAB, DURATION_VOCAB, dtype="float32", lstm_impl=args.lstm_impl
  )
  print(f"lstm: {lstm.resolve_impl(args.lstm_impl)[1]}", flush=True)
  peak_by_lib = matmul_gflops(2048, args.peak_repeats)
  peak = max(peak_by_lib.values())
  rows = [
    ("train_peak_matmul_gflops", peak, "GFLOP/s"),
    ("train_bench_load_avg_start", start_load, "load"),
  ] + [
    (f"train_matmul_{lib}_gflops", value, "GFLOP/s")
    for lib, value in peak_by_lib.items()
  ]
  train = bench_training(args, config, peak, rows)
  recurrent = None
  if args.breakdown:
    recurrent = recurrent_matmul_gflops(
      args.batch_size, config.lstm_sizes[0], args.seq_len, args.steps
    )
  sampling = None if args.no_sample else bench_sampling(args, config, rows)
  end_load = load_average()
  rows.append(("train_bench_load_avg_end", end_load, "load"))
  print_report(
    config,
    peak_by_lib,
    peak,
    train,
    sampling,
    (start_load, end_load),
    args,
    recurrent,
  )
  results.merge(args.out, rows)


if __name__ == "__main__":
  main()
