"""Training throughput and sampling speed: melodyjax against PyTorch eager.

  .venv/bin/python -m benchmarks.bench_train [--steps 20] [--rounds 2]
      [--batch_size 64 --seq_len 64] [--breakdown] [--no_sample]
      [--lstm_impl auto] [--out benchmarks/results.json]
  .venv/bin/python -m benchmarks.bench_train --model transformer

`--model transformer` measures the melody Transformer instead (issue 27;
`harness.TRANSFORMER_MODEL`, configs/transformer.py's sizes without its
conditions, batch 32 windows of 128, objective 'all') against the same
Transformer in PyTorch (benchmarks/torch_transformer.py), and sampling
with its key/value cache against PyTorch's cached loop; its figures go to
results.json as transformer_*.

A driver: each contender runs in its own process (`benchmarks/jax_worker.py`,
`benchmarks/torch_worker.py`), one process per contender per round, the
two alternated (jax torch, torch jax, ...), each set up as its users run
it: melodyjax as the mains (`cli/runtime.py`'s allocator, XLA's threads),
PyTorch with its defaults (its thread count, OpenMP and glibc malloc
untouched; `--torch_allocator fast` gives it melodyjax's allocator too),
fused Adam (`--adam`).

  1. Machine peak: a 2048^3 float32 matmul in each framework's process
     (XLA, numpy, MKL's sgemm, oneDNN); the best is the peak.
  2. The train step on the reference model (ESAC vocabularies), random ids
     (no padding), float32, objectives 'all' and 'last': melodyjax's
     jitted step on one CPU device against the PyTorch reference
     (benchmarks/torch_reference.py), eager, Adam with clipping. Blocks of
     `--steps` steps, warmed up (compile included) first; median step
     time; tokens/s = batch * seq_len / step time (for 'last' too).
     `--breakdown` also times, in the same processes, forward alone,
     forward + backward, and the LSTM stack alone (forward + backward of
     the three layers at the step's shapes), so that the stack's share of
     the step is measured where the step is.
  3. Sampling, 256 notes for 1 and 64 melodies: `sampler.sample` against
     the reference's loop at its fastest of four forms (LSTM cells or
     nn.LSTM on one step, 1 or 2 threads), notes/s, alternated the same way.

Each block reports the share of the machine's CPU other processes used
meanwhile (from /proc/stat); the report gives the largest. On a shared
machine, `--quiet_wait_s 600` makes the driver wait before each process
until others use at most `--quiet_share` (10%) of the CPU (or the wait
ends). FLOPs: an LSTM layer with input d and hidden h costs 8h(d + h) per
event forward, a dense layer 2 * d * out; training is 3x forward. Figures
are printed and merged by name into benchmarks/results.json.
"""

from __future__ import annotations

import argparse
import statistics

from benchmarks import harness, results

OBJECTIVES = ("all", "last")
# --model's defaults: configs/default.py's windows, configs/transformer.py's.
MODELS = {
  "lstm": {"batch_size": 64, "seq_len": 64, "objectives": "all,last"},
  "transformer": {"batch_size": 32, "seq_len": 128, "objectives": "all"},
}
SAMPLE_BATCHES = (1, 64)
# Issue 25: (comparison, bound) per result name; the rest have none.
# Issue 27: the melody Transformer's (`--model transformer`).
TARGETS = {
  "transformer_train_all_jax_vs_torch": (">=", 1.25),
  "transformer_sample_vs_torch_1_melodies_ratio": (">=", 2.0),
  "transformer_sample_vs_torch_64_melodies_ratio": (">=", 2.0),
  "train_all_jax_vs_torch": (">=", 1.25),
  "train_last_jax_vs_torch": (">=", 1.25),
  "sample_vs_torch_1_melodies_ratio": (">=", 10.0),
  "sample_vs_torch_64_melodies_ratio": (">=", 2.0),
}


def _has_torch() -> bool:
  import importlib.util

  return importlib.util.find_spec("torch") is not None


def _runners(args, task: dict, with_torch: bool) -> dict:
  """{name: function running `task` in a fresh worker process}."""
  task = dict(task, model=args.model)
  jax_task = dict(task, lstm_impl=args.lstm_impl)
  torch_task = dict(task, adam=args.adam, sample_threads=args.torch_threads)
  env = harness.torch_env(args.torch_allocator)
  runners = {"jax": lambda: harness.run_worker("jax_worker", jax_task)}
  if with_torch:
    runners["torch"] = lambda: harness.run_worker(
      "torch_worker", torch_task, env=env
    )
  return runners


def measure_peak(args, with_torch: bool) -> dict[str, float]:
  task = {"task": "peak", "repeats": args.peak_repeats}
  out = {}
  for result in harness.alternate(_runners(args, task, with_torch), 1).values():
    out.update(result[0]["gflops"])
  return out


def summarize(blocks: list[dict], kind: str, tokens: int, flops: float,
              peak: float) -> dict:  # fmt: skip
  times = harness.pooled([b[kind] for b in blocks])
  seconds = statistics.median(times)
  return {
    "step_ms": seconds * 1000,
    "best_ms": min(times) * 1000,
    "tokens_per_s": tokens / seconds,
    "gflops": flops / seconds / 1e9,
    "peak_share": 100 * flops / seconds / 1e9 / peak,
    "steps": len(times),
    "others": harness.others_max([b[kind] for b in blocks]),
  }


def bench_training(args, peak: float, rows: list, with_torch: bool) -> dict:
  batch, seq_len = args.batch_size, args.seq_len
  summary = {}
  for objective in args.objectives.split(","):
    task = {
      "task": "train",
      "objective": objective,
      "batch": batch,
      "seq_len": seq_len,
      "steps": args.steps,
      "warmup": args.warmup,
      "breakdown": args.breakdown,
    }
    print(f"[{objective}] {args.rounds} rounds, one process each", flush=True)
    runs = harness.alternate(_runners(args, task, with_torch), args.rounds)
    flops = harness.step_flops(batch, seq_len, objective)
    if args.model == "transformer":
      flops = harness.transformer_step_flops(batch, seq_len)
    figures = {"lstm": runs["jax"][0]["lstm"]}
    for name, blocks in runs.items():
      figures[name] = summarize(blocks, "step", batch * seq_len, flops, peak)
      if args.breakdown:
        figures[name]["phases"] = {
          kind: harness.median_ms(harness.pooled([b[kind] for b in blocks]))
          for kind in ("step", "forward", "forward_backward", "stack")
          if kind in blocks[0]
        }
      prefix = f"{args.prefix}train_{objective}_{name}"
      f = figures[name]
      rows += [
        (f"{prefix}_step_ms", f["step_ms"], "ms"),
        (f"{prefix}_best_step_ms", f["best_ms"], "ms"),
        (f"{prefix}_tokens_per_s", f["tokens_per_s"], "tokens/s"),
        (f"{prefix}_gflops", f["gflops"], "GFLOP/s"),
        (f"{prefix}_peak_share", f["peak_share"], "%"),
      ]
    others = harness.others_max([figures[n] for n in runs])
    if others is not None:
      name = f"{args.prefix}train_{objective}_others_cpu_share"
      rows.append((name, 100 * others, "%"))
    figures["others"] = others
    name = f"{args.prefix}train_{objective}_step_gflop"
    rows.append((name, flops / 1e9, "GFLOP"))
    if "torch" in figures:
      ratio = figures["jax"]["tokens_per_s"] / figures["torch"]["tokens_per_s"]
      figures["ratio"] = ratio
      rows.append((f"{args.prefix}train_{objective}_jax_vs_torch", ratio, "x"))
    summary[objective] = (flops, figures)
  return summary


def bench_sampling(args, rows: list, with_torch: bool) -> dict:
  task = {
    "task": "sample",
    "batches": list(SAMPLE_BATCHES),
    "num_notes": args.num_notes,
    "repeats": args.sample_repeats,
  }
  runs = harness.alternate(_runners(args, task, with_torch), args.rounds)
  summary = {}
  for batch in SAMPLE_BATCHES:
    key = str(batch)
    rates = {
      name: statistics.median(r[key]["notes_per_s"] for r in rounds)
      for name, rounds in runs.items()
    }
    others = harness.others_max([r[key] for r in runs["jax"]])
    prefix = f"{args.prefix}sample_vs_torch_{batch}_melodies"
    rows.append((f"{prefix}_jax_notes_per_s", rates["jax"], "notes/s"))
    if others is not None:
      rows.append((f"{prefix}_others_cpu_share", 100 * others, "%"))
    if "torch" in rates:
      rates["torch_form"] = runs["torch"][-1][key]["form"]
      rows += [
        (f"{prefix}_torch_notes_per_s", rates["torch"], "notes/s"),
        (f"{prefix}_ratio", rates["jax"] / rates["torch"], "x"),
      ]
    rates["others"] = others
    summary[batch] = rates
  return summary


def target_text(name: str, value: float) -> str:
  bound, met = results.target_text(TARGETS, name, value)
  return (
    f"target {bound}: {'met' if met == 'yes' else 'NOT met'}" if bound else ""
  )


def _print_training(args, train: dict) -> None:
  print(f"\nTraining, B={args.batch_size}, T={args.seq_len}, float32:")
  print(
    f"{'objective':9s} {'framework':9s} {'ms/step':>8s} {'best':>7s} "
    f"{'tokens/s':>9s} {'GFLOP/s':>8s} {'% peak':>7s}"
  )
  for objective, (_, figures) in train.items():
    for name in ("jax", "torch"):
      if name in figures:
        f = figures[name]
        print(
          f"{objective:9s} {name:9s} {f['step_ms']:8.1f} {f['best_ms']:7.1f} "
          f"{f['tokens_per_s']:9,.0f} {f['gflops']:8.1f} "
          f"{f['peak_share']:6.1f}%"
        )
  for objective, (flops, figures) in train.items():
    line = f"[{objective}] {flops / 1e9:.2f} GFLOP/step"
    if "ratio" in figures:
      name = f"{args.prefix}train_{objective}_jax_vs_torch"
      line += (
        f"; JAX / PyTorch tokens/s = {figures['ratio']:.2f}x "
        f"({target_text(name, figures['ratio'])})"
      )
    print(line + f"; others' CPU up to {harness.share_text(figures['others'])}")
    for name in ("jax", "torch"):
      ph = figures.get(name, {}).get("phases")
      if ph and "stack" not in ph:
        print(
          f"  {name:5s} forward {ph['forward']:6.1f} ms, backward "
          f"{ph['forward_backward'] - ph['forward']:6.1f}, optimizer and "
          f"the rest {ph['step'] - ph['forward_backward']:6.1f}"
        )
      elif ph:
        print(
          f"  {name:5s} forward {ph['forward']:6.1f} ms, backward "
          f"{ph['forward_backward'] - ph['forward']:6.1f}, optimizer and "
          f"the rest {ph['step'] - ph['forward_backward']:6.1f}; LSTM stack "
          f"alone (fwd+bwd) {ph['stack']:6.1f} ms = "
          f"{100 * ph['stack'] / ph['step']:.0f}% of the step"
        )


def print_report(args, peak_by_lib, train, sampling, loads) -> None:
  print(f"\nCPU: {harness.cpu_description()}")
  print(f"Load average (1 min): {loads[0]:.2f} at start, {loads[1]:.2f} at end")
  print(
    "Peak (2048^3 float32 matmul): "
    + ", ".join(f"{k} {v:.1f}" for k, v in peak_by_lib.items())
    + f" GFLOP/s; peak = {max(peak_by_lib.values()):.1f}"
  )
  if train:
    if args.model == "lstm":
      print(f"melodyjax lstm: {next(iter(train.values()))[1]['lstm']}")
    _print_training(args, train)
  if sampling:
    print(f"\nSampling, {args.num_notes} notes per melody (notes/s):")
    for batch, rates in sampling.items():
      line = f"{batch:2d} melodies: melodyjax {rates['jax']:9,.0f}"
      if "torch" in rates:
        ratio = rates["jax"] / rates["torch"]
        name = f"{args.prefix}sample_vs_torch_{batch}_melodies_ratio"
        line += (
          f", PyTorch {rates['torch']:9,.0f} ({rates['torch_form']}), "
          f"ratio {ratio:.2f}x ({target_text(name, ratio)})"
        )
      print(line + f"; others' CPU up to {harness.share_text(rates['others'])}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="lstm", choices=MODELS)
  parser.add_argument("--batch_size", type=int, default=None)
  parser.add_argument("--seq_len", type=int, default=None)
  parser.add_argument("--steps", type=int, default=20, help="steps per block")
  parser.add_argument("--rounds", type=int, default=2, help="processes each")
  parser.add_argument("--warmup", type=int, default=3)
  parser.add_argument("--objectives", default=None)
  parser.add_argument("--num_notes", type=int, default=256)
  parser.add_argument("--sample_repeats", type=int, default=5)
  parser.add_argument("--peak_repeats", type=int, default=7)
  parser.add_argument("--breakdown", action="store_true")
  parser.add_argument("--no_sample", action="store_true")
  parser.add_argument("--no_train", action="store_true")
  parser.add_argument(
    "--torch_threads",
    type=int,
    nargs="*",
    default=None,
    help="thread counts PyTorch's sampling loop tries (default: 1 and its "
    "own); on a loaded machine its 2-thread form crawls",
  )
  parser.add_argument("--no_torch", action="store_true")
  parser.add_argument("--lstm_impl", default="auto")
  parser.add_argument("--adam", default="fused", choices=("fused", "default"))
  parser.add_argument(
    "--torch_allocator", default="system", choices=("system", "fast")
  )
  parser.add_argument("--out", default=results.DEFAULT_PATH)
  harness.add_quiet_flags(parser)
  args = parser.parse_args()
  for name, value in MODELS[args.model].items():
    if getattr(args, name) is None:
      setattr(args, name, value)
  args.prefix = "" if args.model == "lstm" else f"{args.model}_"
  harness.set_quiet(args)
  with_torch = _has_torch() and not args.no_torch
  if not with_torch:
    print("PyTorch not used (not installed or --no_torch): JAX figures only")
  start_load = harness.load_average()
  peak_by_lib = measure_peak(args, with_torch)
  peak = max(peak_by_lib.values())
  rows = [
    ("train_peak_matmul_gflops", peak, "GFLOP/s"),
    ("train_bench_load_avg_start", start_load, "load"),
  ] + [
    (f"train_matmul_{k}_gflops", v, "GFLOP/s") for k, v in peak_by_lib.items()
  ]
  train = {} if args.no_train else bench_training(args, peak, rows, with_torch)
  sampling = None if args.no_sample else bench_sampling(args, rows, with_torch)
  end_load = harness.load_average()
  rows.append(("train_bench_load_avg_end", end_load, "load"))
  print_report(args, peak_by_lib, train, sampling, (start_load, end_load))
  results.merge(args.out, rows)


if __name__ == "__main__":
  main()
