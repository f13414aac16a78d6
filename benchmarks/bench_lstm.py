"""Benchmark: the reference model's three LSTM layers alone, forward and
backward, float32.

  .venv/bin/python -m benchmarks.bench_lstm [--batch 64 --time 64]
      [--contenders kernel,onednn,torch] [--rounds 3] [--forward]

A driver: each contender runs in its own process, one per round, the
contenders alternated (A B C, C B A, ...), through the benchmark workers
(`benchmarks/jax_worker.py` 'stack', `benchmarks/torch_worker.py`
'stack'), each set up as its users run it (see bench_train.py):

  scan         model.lstm_impl='scan' (XLA: one scan, autodiff)
  fused        'fused' (XLA: a scan per layer, hand-written backward)
  kernel       'kernel': our compiled kernel, the widest ISA this CPU has
  kernel_avx2  the same, its AVX2 + FMA tiles (MELODYJAX_LSTM_ISA=avx2)
  kernel_proj  the previous kernel layer, XLA's input projection around
               the recurrence (MELODYJAX_LSTM_FOLD=0)
  kernel1      'kernel', one thread
  onednn       'onednn': oneDNN 3.2's LSTM primitive through FFI
  torch        PyTorch nn.LSTM (three modules, batch first), its defaults

Each timed call is a whole train-style pass: forward (training) and the
gradients of x and every parameter for a fixed cotangent of the top
layer's outputs. `--forward` also times the forward alone (inference for
JAX, grad-enabled for PyTorch). Prints ms per call (median and min over
all calls of all rounds), the ratio PyTorch / contender, and the largest
share of the CPU other processes used during a block. On a shared machine,
`--quiet_wait_s 600` makes the driver wait before each process until
others use at most `--quiet_share` (10%) of the CPU (or the wait ends).
"""

from __future__ import annotations

import argparse
import os
import statistics

from benchmarks import harness

_VARIANTS = {  # name: (lstm_impl, extra environment, threads)
  "scan": ("scan", {}, None),
  "fused": ("fused", {}, None),
  "kernel": ("kernel", {}, None),
  "kernel_avx2": ("kernel", {"MELODYJAX_LSTM_ISA": "avx2"}, None),
  "kernel_proj": ("kernel", {"MELODYJAX_LSTM_FOLD": "0"}, None),
  "kernel1": ("kernel", {}, 1),
  "onednn": ("onednn", {}, None),
}


def _parse():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--time", type=int, default=64)
  p.add_argument("--rounds", type=int, default=3, help="processes each")
  p.add_argument("--iters", type=int, default=8, help="calls per process")
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument(
    "--contenders",
    default="fused,kernel,kernel_avx2,onednn,torch",
    help=f"comma-separated subset of {','.join([*_VARIANTS, 'torch'])}",
  )
  p.add_argument("--forward", action="store_true", help="also forward only")
  harness.add_quiet_flags(p)
  args = p.parse_args()
  harness.set_quiet(args)
  return args


def _runner(name: str, task: dict):
  if name == "torch":
    env = harness.torch_env("system")
    return lambda: harness.run_worker("torch_worker", task, env, quiet=True)
  impl, extra, threads = _VARIANTS[name]
  env = dict(os.environ, **extra)
  task = dict(task, lstm_impl=impl, threads=threads)
  return lambda: harness.run_worker("jax_worker", task, env, quiet=True)


def main():
  args = _parse()
  names = args.contenders.split(",")
  unknown = set(names) - set(_VARIANTS) - {"torch"}
  if unknown:
    raise SystemExit(f"unknown contenders {sorted(unknown)}")
  task = {
    "task": "stack",
    "batch": args.batch,
    "seq_len": args.time,
    "steps": args.iters,
    "warmup": args.warmup,
    "forward": args.forward,
  }
  print(f"CPU: {harness.cpu_description()}")
  print(
    f"B={args.batch} T={args.time}, layers 160->256->128->128, float32; "
    f"{args.rounds} rounds x {args.iters} calls, one process each; load "
    f"{harness.load_average():.2f}",
    flush=True,
  )
  runs = harness.alternate({n: _runner(n, task) for n in names}, args.rounds)
  for name in names:
    print(f"  {name}: {runs[name][0].get('lstm', runs[name][0]['framework'])}")
  kinds = ["stack"] + (["stack_forward"] if args.forward else [])
  for kind in kinds:
    label = "fwd+bwd" if kind == "stack" else "forward"
    print(f"\n{label}, ms per call of the 3-layer stack:")
    medians = {
      n: 1e3 * statistics.median(harness.pooled([r[kind] for r in runs[n]]))
      for n in names
    }
    for name in names:
      times = harness.pooled([r[kind] for r in runs[name]])
      others = harness.others_max([r[kind] for r in runs[name]])
      line = (
        f"  {name:12s} median {medians[name]:8.2f}  min {1e3 * min(times):8.2f}"
      )
      if "torch" in medians:
        line += f"   torch/this {medians['torch'] / medians[name]:5.2f}x"
      print(line + f"   (others' CPU up to {harness.share_text(others)})")
  print(f"load at end {harness.load_average():.2f}")


if __name__ == "__main__":
  main()
