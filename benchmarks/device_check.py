"""The checks of a first accelerator, behind `benchmarks/device_check.sh`.

  bash benchmarks/device_check.sh [--tiny] [--out DIR] [--budget_s 450]

Stages, each in processes of its own, in this order (the time budget skips
what no longer fits, and says so):

  parity      every LSTM path that runs here (GPU: cudnn through
              jax.experimental.rnn, fused, scan; CPU: kernel, fused, scan)
              against 'scan': outputs and gradients, float32 and bfloat16
  tests       the accelerator-marked tests (`pytest --runslow -m
              accelerator`); without an accelerator they are only collected
  train       `train_main.py --config=configs/gpu.py` (bfloat16, batch
              1,024) for a few hundred steps with each path, on a
              synthetic corpus written first; then `sample_main.py` on the
              first run that finished
  throughput  tokens/s of the train step (benchmarks/jax_worker.py) with
              each path against PyTorch's nn.LSTM (cuDNN on a GPU) in the
              same dtype (benchmarks/torch_worker.py), processes alternated

`--tiny` (the default without a GPU) shrinks everything to seconds on a
CPU: configs/tiny.py, 4 steps, B = 8, T = 16. The results go to
DIR/device_check.json and a table to DIR/device_check.md (default DIR:
runs/device_check). Installs nothing: PyTorch is compared where it is
installed with CUDA, else the table says why not.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from fractions import Fraction

from benchmarks import harness

ROOT = harness.ROOT


class Budget:
  def __init__(self, seconds: float):
    self.start, self.seconds = time.perf_counter(), seconds

  def elapsed(self) -> float:
    return time.perf_counter() - self.start

  def left(self) -> float:
    return self.seconds - self.elapsed()


def _run(command, timeout, env=None) -> tuple[int, str, float]:
  """(exit code, last 2,000 characters of its output, seconds)."""
  start = time.perf_counter()
  try:
    done = subprocess.run(
      command,
      cwd=ROOT,
      env=env or dict(os.environ),
      capture_output=True,
      text=True,
      timeout=max(timeout, 1),
    )
    code, text = done.returncode, done.stdout + done.stderr
  except subprocess.TimeoutExpired as e:
    code, text = 124, f"timed out after {timeout:.0f} s: {e.stdout or ''}"
  return code, str(text)[-2000:], time.perf_counter() - start


def write_corpus(folder: str, count: int, length: int) -> None:
  """`count` random-walk tunes in C major of `length` notes each."""
  from melodyjax.music import midi_io
  from melodyjax.music.events import Event, Song

  os.makedirs(folder, exist_ok=True)
  scale = [60, 62, 64, 65, 67, 69, 71, 72, 74]
  durations = [Fraction(1, 2), Fraction(1), Fraction(1), Fraction(3, 2)]
  rng = random.Random(0)
  for i in range(count):
    step, events = 4, []
    for _ in range(length):
      step = min(max(step + rng.choice((-2, -1, 0, 1, 1, 2)), 0), 8)
      events.append(Event((scale[step],), rng.choice(durations)))
    midi_io.write_midi(
      Song(events, key_signature="C"), os.path.join(folder, f"t{i:04d}.mid")
    )


def stage_parity(args, report, budget):
  task = {
    "task": "parity",
    "impls": [i for i in args.impls if i != "scan"],
    "dtypes": args.parity_dtypes,
  }
  try:
    result = harness.run_worker("jax_worker", task, quiet=True)
  except RuntimeError as e:
    report["parity"] = {"ok": False, "error": str(e)[-1500:]}
    return
  tolerance = {"float32": 1e-2 if args.gpu else 1e-4, "bfloat16": 1e-1}
  checks = result["parity"]
  ok = all(
    "error" not in v
    and v["finite"]
    and v["max_rel_error"] <= tolerance[k.rsplit("_", 1)[1]]
    for k, v in checks.items()
  )
  report["device"] = {k: result[k] for k in ("framework", "backend", "device")}
  report["device"]["device_count"] = result.get("device_count")
  report["parity"] = {"ok": ok, "tolerance": tolerance, "checks": checks}


def stage_tests(args, report, budget):
  command = [sys.executable, "-m", "pytest", "-q", "--runslow"]
  command += ["-m", "accelerator", "tests"]
  if not args.gpu:
    command.insert(3, "--collect-only")
  allowed = min(300, budget.left())
  code, text, seconds = _run(command, allowed)
  if code == 124 and allowed < 300:
    report["tests"] = {"ok": False, "skipped": "time budget (stopped)"}
    return
  summary = text.strip().splitlines()[-1] if text.strip() else ""
  report["tests"] = {
    "ok": code in (0, 5),  # 5: nothing collected
    "ran": args.gpu,
    "summary": summary,
    "seconds": seconds,
  }
  if code not in (0, 5):
    report["tests"]["output"] = text


def _train_command(args, impl, workdir, data):
  config = "gpu" if args.gpu else "tiny"
  command = [
    sys.executable,
    "train_main.py",
    f"--config=configs/{config}.py",
    f"--workdir={workdir}",
    f"--config.data.midi_dir={data}/midi",
    f"--config.data.dataset_dir={data}/dataset",
    f"--config.model.lstm_impl={impl}",
    f"--config.train.num_train_steps={args.train_steps}",
    f"--config.train.eval_every_steps={args.train_steps}",
    f"--config.train.checkpoint_every_steps={args.train_steps}",
    "--config.train.sample_every_steps=0",
    "--config.train.progress=False",
  ]
  if args.gpu:
    command.append("--config.eval.batch_size=128")
  return command


def stage_train(args, report, budget):
  data = os.path.join(args.out, "data")
  if not os.path.isdir(os.path.join(data, "midi")):
    write_corpus(os.path.join(data, "midi"), *args.corpus)
  runs = report.setdefault("train", {})
  for impl in args.train_impls:
    if budget.left() < args.min_train_s:
      runs[impl] = {"ok": False, "skipped": "time budget"}
      continue
    workdir = os.path.join(args.out, f"run_{impl}")
    command = _train_command(args, impl, workdir, data)
    code, text, seconds = _run(command, budget.left())
    if code == 124 and budget.left() <= 0:
      runs[impl] = {"ok": False, "skipped": "time budget (stopped)"}
      continue
    entry = {"ok": code == 0, "seconds": seconds}
    lines = [ln for ln in text.splitlines() if "lstm:" in ln]
    entry["lstm"] = lines[0].split("lstm:", 1)[1].strip() if lines else None
    metrics = os.path.join(workdir, "metrics.jsonl")
    if code == 0 and os.path.exists(metrics):
      with open(metrics) as f:
        losses = [
          r["train/loss"]
          for r in map(json.loads, f.read().splitlines())
          if "train/loss" in r
        ]
      entry["loss_first_last"] = [losses[0], losses[-1]] if losses else None
    else:
      entry["output"] = text
    runs[impl] = entry
  done = [impl for impl in args.train_impls if runs[impl].get("ok")]
  if not done:
    stopped = all("skipped" in runs[impl] for impl in args.train_impls)
    report["sample"] = (
      {"ok": False, "skipped": "time budget (no run finished)"}
      if stopped
      else {"ok": False, "error": "no run finished"}
    )
    return
  if budget.left() < 15:
    report["sample"] = {"ok": False, "skipped": "time budget"}
    return
  out_dir = os.path.join(args.out, "samples")
  command = [
    sys.executable,
    "sample_main.py",
    f"--workdir={os.path.join(args.out, f'run_{done[0]}')}",
    f"--output_dir={out_dir}",
    "--num_outputs=2",
    "--num_notes=64",
    "--nowav",
    "--nopiano_roll",
  ]
  code, text, seconds = _run(command, budget.left())
  files = []
  for _, _, names in os.walk(out_dir):
    files += [n for n in names if n.endswith(".mid")]
  report["sample"] = {
    "ok": code == 0 and len(files) >= 2,
    "run": done[0],
    "midi_files": len(files),
    "seconds": seconds,
  }
  if code != 0:
    report["sample"]["output"] = text


def _torch_missing(gpu: bool) -> str | None:
  """None if PyTorch (with CUDA, on a GPU) is here, else why not."""
  code, text, _ = _run(
    [sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
    120,
  )
  if code != 0:
    return "PyTorch is not installed"
  if gpu and not text.strip().endswith("True"):
    return "PyTorch without CUDA"
  return None


def stage_throughput(args, report, budget):
  dtype = "bfloat16" if args.gpu else "float32"
  task = {
    "task": "train",
    "objective": "all",
    "batch": args.batch,
    "seq_len": args.seq_len,
    "steps": args.steps,
    "warmup": 3,
    "dtype": dtype,
  }
  runners = {}
  for impl in args.train_impls:
    jax_task = dict(task, lstm_impl=impl)
    runners[impl] = lambda t=jax_task: harness.run_worker(
      "jax_worker", t, quiet=True
    )
  why_not = _torch_missing(args.gpu)
  if why_not is None:
    torch_task = dict(task, device="cuda" if args.gpu else "cpu", adam="fused")
    runners["torch"] = lambda: harness.run_worker(
      "torch_worker", torch_task, harness.torch_env(), quiet=True
    )
  results = {name: [] for name in runners}
  for r in range(args.rounds):
    for name in list(runners) if r % 2 == 0 else list(runners)[::-1]:
      if budget.left() < 15:
        continue
      try:
        results[name].append(runners[name]())
      except RuntimeError as e:
        results[name] = [{"error": str(e)[-1500:]}]
  tokens = args.batch * args.seq_len
  table = {}
  for name, rounds in results.items():
    good = [r for r in rounds if "step" in r]
    if not good:
      failed = rounds[0] if rounds else {"skipped": "time budget"}
      table[name] = {"ok": False, **failed}
      continue
    ms = harness.median_ms(harness.pooled([r["step"] for r in good]))
    table[name] = {
      "ok": True,
      "step_ms": ms,
      "tokens_per_s": tokens / ms * 1e3,
      "others": harness.others_max([r["step"] for r in good]),
    }
    table[name]["lstm"] = good[0].get("lstm", good[0].get("device"))
  if "torch" in table and table["torch"].get("ok"):
    for name in args.train_impls:
      if table[name].get("ok"):
        table[name]["vs_torch"] = (
          table[name]["tokens_per_s"] / table["torch"]["tokens_per_s"]
        )
  report["throughput"] = {
    "dtype": dtype,
    "batch": args.batch,
    "seq_len": args.seq_len,
    "torch": why_not or "compared",
    "results": table,
  }


def write_table(report: dict, path: str) -> None:
  lines = [
    f"# Device check, {report['mode']} ({report['seconds']:.0f} s, "
    f"{'all passed' if report['ok'] else 'FAILED'}, {report['skipped']} "
    "skipped by the time budget)",
    "",
    f"device: {report.get('device', {})}; CPU: {report['cpu']}",
    "",
    "| stage | what | result |",
    "|---|---|---|",
  ]
  parity = report.get("parity", {})
  for name, check in parity.get("checks", {}).items():
    text = check.get("error") or (
      f"max rel. error {check['max_rel_error']:.2e}, finite {check['finite']}"
    )
    lines.append(f"| parity | {name} vs scan | {text} |")
  if "error" in parity:
    lines.append(f"| parity | - | failed: {parity['error'][-200:]} |")
  tests = report.get("tests", {})
  what = "accelerator tests" + ("" if tests.get("ran") else " (collected)")
  lines.append(f"| tests | {what} | {tests.get('summary', '-')} |")
  for impl, run in report.get("train", {}).items():
    text = run.get("skipped") or (
      f"loss {run['loss_first_last'][0]:.3f} -> {run['loss_first_last'][1]:.3f}"
      f", {run['seconds']:.0f} s"
      if run.get("loss_first_last")
      else f"failed: {run.get('output', '')[-200:]}"
    )
    lines.append(f"| train | {impl} ({run.get('lstm')}) | {text} |")
  sample = report.get("sample", {})
  made = f"{sample.get('midi_files')} MIDI files"
  made = sample.get("skipped") or sample.get("error") or made
  lines.append(f"| sample | {sample.get('run', '-')} | {made} |")
  thr = report.get("throughput", {})
  for name, row in thr.get("results", {}).items():
    text = (
      f"{row['tokens_per_s']:,.0f} tokens/s ({row['step_ms']:.1f} ms/step)"
      + (f", {row['vs_torch']:.2f}x PyTorch" if "vs_torch" in row else "")
      + f"; others' CPU {harness.share_text(row.get('others'))}"
      if row.get("ok")
      else str(row.get("error") or row.get("skipped"))[-200:]
    )
    what = f"{name}, B={thr['batch']} T={thr['seq_len']} {thr['dtype']}"
    lines.append(f"| throughput | {what} | {text} |")
  if thr and thr.get("torch") != "compared":
    lines.append(f"| throughput | torch | not compared: {thr['torch']} |")
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")


def _parse(argv):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--tiny", action="store_true", help="CPU-sized everything")
  p.add_argument("--out", default=os.path.join(ROOT, "runs", "device_check"))
  p.add_argument("--budget_s", type=float, default=450.0)
  p.add_argument("--rounds", type=int, default=None)
  return p.parse_args(argv)


def _has_gpu() -> bool:
  code, text, _ = _run(
    [sys.executable, "-c", "import jax; print(jax.default_backend())"], 300
  )
  return code == 0 and text.strip().splitlines()[-1] in ("gpu", "cuda", "rocm")


def main(argv=None):
  args = _parse(argv)
  args.gpu = _has_gpu()
  tiny = args.tiny or not args.gpu
  args.impls = ["cudnn", "fused", "scan"] if args.gpu else ["kernel", "fused"]
  args.train_impls = args.impls
  args.parity_dtypes = ["float32", "bfloat16"]
  args.min_train_s = 20 if tiny else 90  # left in the budget to start one
  if tiny:
    args.batch, args.seq_len, args.steps, args.train_steps = 8, 16, 3, 4
    args.corpus, args.rounds = (60, 24), args.rounds or 1
    if not args.gpu:  # each path's parity, one path's run: seconds
      args.train_impls, args.parity_dtypes = ["kernel"], ["float32"]
  else:
    args.batch, args.seq_len, args.steps, args.train_steps = 1024, 64, 20, 300
    args.corpus, args.rounds = (1200, 140), args.rounds or 2
  os.makedirs(args.out, exist_ok=True)
  budget = Budget(args.budget_s)
  report = {"mode": "gpu" if args.gpu else "cpu", "tiny": tiny}
  report["cpu"] = harness.cpu_description()
  for name, stage in (
    ("parity", stage_parity),
    ("tests", stage_tests),
    ("train", stage_train),
    ("throughput", stage_throughput),
  ):
    start = budget.elapsed()
    stage(args, report, budget)
    print(f"device_check: {name} done at {budget.elapsed():.0f} s "
          f"({budget.elapsed() - start:.0f} s)", flush=True)  # fmt: skip
  report["seconds"] = budget.elapsed()
  stages = [report.get(k, {}) for k in ("parity", "tests", "sample")]
  stages += list(report.get("train", {}).values())
  stages += list(report.get("throughput", {}).get("results", {}).values())
  # A stage the time budget skipped is listed as such, not failed.
  report["ok"] = all(s.get("ok") or "skipped" in s for s in stages)
  report["skipped"] = sum("skipped" in s for s in stages)
  with open(os.path.join(args.out, "device_check.json"), "w") as f:
    json.dump(report, f, indent=1)
  write_table(report, os.path.join(args.out, "device_check.md"))
  with open(os.path.join(args.out, "device_check.md")) as f:
    print(f.read())
  sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
  main()
