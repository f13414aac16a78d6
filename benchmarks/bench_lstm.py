"""Benchmark: the seed's three LSTM layers, forward + backward, float32.

  .venv/bin/python -m benchmarks.bench_lstm [--batch 64 --time 64] [--forward]

Contenders (one process, alternated in rounds: A B C D A B C D ...):
  scan     model.lstm_impl='scan' (XLA: one scan, autodiff)
  fused    'fused' (XLA: a scan per layer, hand-written backward)
  kernel   'kernel': our compiled kernel, threads automatic
  kernel1  the same, one thread
  onednn   'onednn': oneDNN's LSTM primitive through FFI
  torch    PyTorch nn.LSTM, one module per layer, torch.set_num_threads(2)

Each timed call is a whole train-style pass: forward (training) and the
gradients of x and every parameter for a fixed cotangent of the top
layer's outputs. `--forward` also times the forward alone (inference for
JAX, grad-enabled for PyTorch). Prints ms per call: median and min over all
calls of all rounds.

It re-executes under tcmalloc, as the mains do (`cli/runtime.py`).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

SIZES = (256, 128, 128)
INPUT_DIM = 160


def _parse():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--time", type=int, default=64)
  p.add_argument("--rounds", type=int, default=7)
  p.add_argument("--iters", type=int, default=5, help="calls per round")
  p.add_argument(
    "--contenders",
    default="scan,fused,kernel,onednn,torch",
    help="comma-separated subset of scan,fused,kernel,kernel1,onednn,torch",
  )
  p.add_argument("--forward", action="store_true", help="also forward only")
  p.add_argument(
    "--pause_ms",
    type=float,
    default=20.0,
    help="sleep between contenders, so spinning OpenMP/Eigen threads of the "
    "previous one go idle",
  )
  return p.parse_args()


def _jax_contender(name, batch, steps, cot_np, x_np, params_np):
  import jax
  import jax.numpy as jnp

  from melodyjax.model import lstm

  impl = {"kernel1": "kernel"}.get(name, name)
  ran, line = lstm.resolve_impl(impl)
  if ran != impl:
    print(f"  {name}: skipped ({line})")
    return None
  # The thread count is read when the call is traced.
  os.environ["MELODYJAX_LSTM_THREADS"] = "1" if name == "kernel1" else "0"
  stack_module = lstm.LSTMStack(SIZES, INPUT_DIM, jnp.float32, impl)

  x = jnp.asarray(x_np)
  cot = jnp.asarray(cot_np)
  params = [tuple(jnp.asarray(a) for a in p) for p in params_np]
  zeros = [(jnp.zeros((batch, h), jnp.float32),) * 2 for h in SIZES]

  def stack(x, params):
    variables = {
      "params": {
        f"{kind}_{i}": p
        for i, layer in enumerate(params)
        for kind, p in zip(
          ("input_kernel", "recurrent_kernel", "bias"), layer, strict=True
        )
      }
    }
    carry = tuple(zeros)
    # LSTMStack is batch-major: [B, T, D].
    out, _ = stack_module.apply(variables, jnp.swapaxes(x, 0, 1), carry)
    return jnp.swapaxes(out, 0, 1)

  def loss(x, params):
    return jnp.sum(stack(x, params) * cot)

  train = jax.jit(jax.grad(loss, argnums=(0, 1)))
  forward = jax.jit(stack)
  train(x, params)  # compile
  forward(x, params)
  os.environ.pop("MELODYJAX_LSTM_THREADS", None)

  def run_train():
    jax.block_until_ready(train(x, params))

  def run_forward():
    jax.block_until_ready(forward(x, params))

  return run_train, run_forward


def _torch_contender(cot_np, x_np, params_np):
  import torch

  torch.set_num_threads(2)
  layers = []
  d = INPUT_DIM
  for h, (wi, wh, b) in zip(SIZES, params_np, strict=True):
    m = torch.nn.LSTM(d, h)  # time-major; gates i, f, g, o like ours
    with torch.no_grad():
      m.weight_ih_l0.copy_(torch.from_numpy(wi.T.copy()))
      m.weight_hh_l0.copy_(torch.from_numpy(wh.T.copy()))
      m.bias_ih_l0.copy_(torch.from_numpy(b))
      m.bias_hh_l0.zero_()
    layers.append(m)
    d = h
  x = torch.from_numpy(x_np).requires_grad_(True)
  cot = torch.from_numpy(cot_np)

  def stack():
    y = x
    for m in layers:
      y, _ = m(y)
    return y

  def run_train():
    for m in layers:
      m.zero_grad(set_to_none=True)
    x.grad = None
    (stack() * cot).sum().backward()

  def run_forward():
    stack()

  run_train()
  return run_train, run_forward


def main():
  args = _parse()
  import jax

  from melodyjax.model.kernels import build

  maps = open("/proc/self/maps").read()
  alloc = "tcmalloc" if "tcmalloc" in maps else "glibc malloc"
  print(f"CPU: {build.cpu_description()}")
  print(
    f"jax {jax.__version__}, allocator {alloc}, B={args.batch} "
    f"T={args.time}, layers {INPUT_DIM}->{'->'.join(map(str, SIZES))}, "
    f"float32; {args.rounds} rounds x {args.iters} calls"
  )
  rng = np.random.default_rng(0)
  batch, steps = args.batch, args.time
  x_np = rng.standard_normal((steps, batch, INPUT_DIM), np.float32)
  cot_np = rng.standard_normal((steps, batch, SIZES[-1]), np.float32)
  params_np = []
  d = INPUT_DIM
  for h in SIZES:
    params_np.append(
      (
        (rng.standard_normal((d, 4 * h)) / np.sqrt(d)).astype(np.float32),
        (rng.standard_normal((h, 4 * h)) / np.sqrt(h)).astype(np.float32),
        (0.1 * rng.standard_normal(4 * h)).astype(np.float32),
      )
    )
    d = h

  runs = {}
  for name in args.contenders.split(","):
    if name == "torch":
      runs[name] = _torch_contender(cot_np, x_np, params_np)
    else:
      r = _jax_contender(name, batch, steps, cot_np, x_np, params_np)
      if r:
        runs[name] = r

  kinds = ["train"] + (["forward"] if args.forward else [])
  times = {(n, k): [] for n in runs for k in kinds}
  for _ in range(args.rounds):
    for kind in kinds:
      for name, (run_train, run_forward) in runs.items():
        fn = run_train if kind == "train" else run_forward
        time.sleep(args.pause_ms / 1000)
        fn()  # one untimed call after the switch
        for _ in range(args.iters):
          t0 = time.perf_counter()
          fn()
          times[(name, kind)].append(time.perf_counter() - t0)

  for kind in kinds:
    label = "fwd+bwd" if kind == "train" else "forward"
    print(f"\n{label}, ms per call of the 3-layer stack:")
    base = times.get(("torch", kind))
    for name in runs:
      t = np.array(times[(name, kind)]) * 1e3
      line = f"  {name:8s} median {np.median(t):8.2f}  min {t.min():8.2f}"
      if base:
        ratio = np.median(np.array(base) * 1e3) / np.median(t)
        line += f"   torch/this (median) {ratio:5.2f}x"
      print(line)


if __name__ == "__main__":
  from melodyjax.cli import runtime

  runtime.reexec_with_fast_malloc()
  main()
