"""Peak memory of a training step: melodyjax against PyTorch eager.

  .venv/bin/python -m benchmarks.bench_memory [--shapes 16x64,64x64,...]
      [--lstm_impl auto] [--objective all] [--out benchmarks/results.json]
  .venv/bin/python -m benchmarks.bench_memory --model transformer

`--model transformer`: the melody Transformer (`harness.TRANSFORMER_MODEL`
against benchmarks/torch_transformer.py), by default 16 windows of 128 to
1,024 events, with each figure per event and against T/128 so that the
length where it stops being linear shows (attention's scores are
[batch, heads, T, T]); figures as transformer_memory_*.

Each measurement runs in a fresh process (one framework, one shape), with
glibc's malloc told to map every block of 64 KiB or more on its own and to
give it back when freed (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_),
so the resident set follows the buffers alive, the same way for both
frameworks (tcmalloc, the mains' allocator, keeps freed memory and would
hide the peak). The process builds the reference model and its optimizer on
random ids (the trainers of benchmarks/jax_worker.py and torch_worker.py,
task 'memory': the same data, Adam with clipping), resets the kernel's
high-water mark (/proc/self/clear_refs) and runs three steps:

  step peak = highest resident set during those steps - resident set
              before them

the memory a step needs above what stays (parameters, optimizer state,
code). PyTorch is measured from its second step (its first makes Adam's
moments; its CPU allocator keeps nothing). For melodyjax the figure is
XLA's own plan for the compiled step (`memory_analysis()`: temporaries and
outputs not aliased to the donated state), the buffers it allocates; its
resident set is measured too, from the first run of the step compiled
ahead (XLA keeps buffers between runs, which would hide them later): an
upper bound, as it also counts code and one-time buffers first touched
there. Memory does not depend on the machine's load, unlike time.
"""

from __future__ import annotations

import argparse
import os

from benchmarks import results

KIB = 1024
SHAPES = {
  "lstm": "16x64,64x32,64x64,64x256,256x64,1024x64",
  "transformer": "16x128,16x256,16x512,16x768,16x1024",
}
ENV = {
  "MELODYJAX_MALLOC": "system",  # not tcmalloc: see the docstring
  "MALLOC_MMAP_THRESHOLD_": str(64 * KIB),
  "MALLOC_TRIM_THRESHOLD_": str(128 * KIB),
  "MALLOC_TOP_PAD_": "0",
}


def _status_kib(field: str) -> int:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1])
  raise RuntimeError(f"no {field} in /proc/self/status")


def _tree_bytes(tree) -> int:
  import jax

  return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))


def _measure_steps(step, figures: dict) -> dict:
  """Runs `step` three times from a reset high-water mark."""
  with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # high-water mark := current resident set
  before = _status_kib("VmRSS")
  for _ in range(3):
    step()
  figures["step_peak_kib"] = _status_kib("VmHWM") - before
  figures["retained_kib"] = _status_kib("VmRSS") - before
  figures["resident_kib"] = before
  return figures


def measure_jax(task: dict, trainer_class, make_config) -> dict:
  """In a jax_worker process: XLA's plan and the first run's peak."""
  import jax

  from benchmarks import harness

  ids = harness.random_ids(task["batch"], task["seq_len"], task["objective"])
  trainer = trainer_class(make_config(task), ids, task["objective"])
  compiled = trainer.train_step.lower(
    trainer.state, trainer.batch, trainer.dropout_key
  ).compile()
  analysis = compiled.memory_analysis()
  figures = {
    "xla_temp_kib": analysis.temp_size_in_bytes / KIB,
    "xla_argument_kib": analysis.argument_size_in_bytes / KIB,
    "xla_output_kib": analysis.output_size_in_bytes / KIB,
    "xla_alias_kib": analysis.alias_size_in_bytes / KIB,
    "state_kib": _tree_bytes(trainer.state) / KIB,
  }
  state = trainer.state

  def step():
    nonlocal state
    state, sums = compiled(state, trainer.batch, trainer.dropout_key)
    jax.block_until_ready((state, sums))

  # Compiled ahead, never run: the first run's buffers are in the peak
  # even if XLA keeps them for the next runs.
  return _measure_steps(step, figures)


def measure_torch(task: dict, trainer_class) -> dict:
  """In a torch_worker process: the peak from the second step on."""
  from benchmarks import harness

  ids = harness.random_ids(task["batch"], task["seq_len"], task["objective"])
  trainer = trainer_class(task, ids)
  trainer.step()  # Adam's moments are made at the first step; no pool on CPU
  state = sum(p.numel() * 4 for p in trainer.model.parameters()) * 3 / KIB
  return _measure_steps(trainer.step, {"state_kib": state})


def measure(framework, batch, seq_len, objective, impl, model) -> dict:
  from benchmarks import harness

  env = dict(os.environ, **ENV)
  env.pop("LD_PRELOAD", None)  # a parent's tcmalloc would keep freed memory
  task = {
    "task": "memory",
    "batch": batch,
    "seq_len": seq_len,
    "objective": objective,
    "lstm_impl": impl,
    "model": model,
  }
  return harness.run_worker(f"{framework}_worker", task, env, quiet=True)


def _mib(kib: float) -> str:
  return f"{kib / KIB:,.1f}"


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="lstm", choices=tuple(SHAPES))
  parser.add_argument("--shapes", default=None, help="BxT,BxT,...")
  parser.add_argument("--objective", default="all", choices=("all", "last"))
  parser.add_argument("--lstm_impl", default="auto")
  parser.add_argument("--no_torch", action="store_true")
  parser.add_argument("--out", default=results.DEFAULT_PATH)
  args = parser.parse_args()
  shapes = [
    tuple(int(n) for n in s.split("x"))
    for s in (args.shapes or SHAPES[args.model]).split(",")
  ]
  try:
    import torch  # noqa: F401

    frameworks = ("jax",) if args.no_torch else ("jax", "torch")
  except ImportError:
    print("PyTorch is not installed: melodyjax only", flush=True)
    frameworks = ("jax",)
  print(
    f"{args.model}, objective '{args.objective}', float32, melodyjax "
    f"lstm_impl {args.lstm_impl!r}; MiB; each figure in a fresh worker "
    "process",
    flush=True,
  )
  header = (
    "| B x T | melodyjax: XLA's plan (temp + out - alias) | melodyjax "
    "first run, measured | PyTorch step peak, measured | PyTorch / XLA plan "
    "| state (params + Adam) | plan KiB per event | plan / first plan, "
    "against T / first T |"
  )
  lines = [header, "|---|---|---|---|---|---|---|---|"]
  rows, first = [], None
  prefix = "" if args.model == "lstm" else f"{args.model}_"
  for batch, seq_len in shapes:
    got = {f: measure(f, batch, seq_len, args.objective, args.lstm_impl,
                      args.model)
           for f in frameworks}  # fmt: skip
    jax_fig = got["jax"]
    plan = (
      jax_fig["xla_temp_kib"]
      + jax_fig["xla_output_kib"]
      - jax_fig["xla_alias_kib"]
    )
    first = first or (plan, batch * seq_len)
    name = f"{prefix}memory_{args.objective}_{batch}x{seq_len}"
    rows += [
      (f"{name}_jax_step_peak_mib", jax_fig["step_peak_kib"] / KIB, "MiB"),
      (f"{name}_jax_xla_plan_mib", plan / KIB, "MiB"),
    ]
    torch_text = ratio = "-"
    if "torch" in got:
      peak = got["torch"]["step_peak_kib"]
      torch_text = _mib(peak)
      ratio = f"{peak / max(plan, 1):.2f}x"
      rows.append((f"{name}_torch_step_peak_mib", peak / KIB, "MiB"))
    line = (
      f"| {batch} x {seq_len} | {_mib(plan)} | "
      f"{_mib(jax_fig['step_peak_kib'])} | {torch_text} | {ratio} | "
      f"{_mib(jax_fig['state_kib'])} | {plan / (batch * seq_len):.1f} | "
      f"{plan / first[0]:.2f}x against {batch * seq_len / first[1]:.2f}x |"
    )
    lines.append(line)
    print(line, flush=True)
  print("\n".join(lines))
  results.merge(args.out, rows)


if __name__ == "__main__":
  main()
