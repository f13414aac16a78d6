"""Time to quality: CPU minutes of training until the model beats the n-gram.

  .venv/bin/python -m benchmarks.bench_quality [--configs default,seed]
      [--max_steps 1500,4000] [--every 100,250] [--midi_dir DIR]

For each config (`configs/<name>.py`, as it is: same schedule, batch and
seed), trains with `train_main.py` in a subprocess on ESAC, saving a
checkpoint every `--every` steps (each save also evaluates), until
`--max_steps` (then SIGTERM, which saves and stops) or until the trainer's
own validation loss is below the baseline's (objective 'all' only; then one
more checkpoint interval). Off the clock, each checkpoint is scored on the
validation songs exactly as the n-gram baseline is
(`evaluation.predict.model_distributions` and `scoring.score_distributions`:
every event and eos of each song, from its start), and the first checkpoint
below the baseline's bits per note gives the time to quality: the training
time logged up to that step (`train/steps_per_second` of each log window in
metrics.jsonl, so evaluation and checkpoint writes are not counted).

The baseline is `ngram.fit_streams` (modified Kneser-Ney per stream, order
chosen on validation from 1 to 8, which if anything flatters it), scored on
the validation split. Targets: none; the figures go to results.json as
quality_<config>_minutes, quality_<config>_steps and quality_ngram_valid_bits.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

if __name__ == "__main__":
  from melodyjax.cli import runtime

  runtime.reexec_with_fast_malloc()

import numpy as np  # noqa: E402

from benchmarks import results  # noqa: E402
from melodyjax import files  # noqa: E402
from melodyjax.data import build  # noqa: E402
from melodyjax.evaluation import predict  # noqa: E402
from melodyjax.training import metrics as metrics_lib  # noqa: E402
from melodyjax.training import runs as runs_lib  # noqa: E402


def training_seconds(rows: list[dict]) -> dict[int, float]:
  """Cumulative training time at each logged step (evaluation excluded)."""
  elapsed, previous, out = 0.0, 0, {}
  for row in rows:
    if "train/steps_per_second" not in row:
      continue
    elapsed += (row["step"] - previous) / row["train/steps_per_second"]
    previous = row["step"]
    out[row["step"]] = elapsed
  return out


def train_until(
  name: str,
  workdir: str,
  max_steps: int,
  every: int,
  overrides: list[str],
  stop_below: float | None,
) -> float:
  """Runs train_main.py until max_steps (or the early stop); wall seconds."""
  command = [
    sys.executable,
    os.path.join(ROOT, "train_main.py"),
    f"--config={os.path.join(ROOT, 'configs', name + '.py')}",
    f"--workdir={workdir}",
    f"--config.train.checkpoint_every_steps={every}",
    f"--config.train.eval_every_steps={every}",
    "--config.train.progress=False",
    "--config.checkpoint.max_to_keep=1000",
    "--config.checkpoint.async_save=False",
    *overrides,
  ]
  print(" ".join(command[1:]), flush=True)
  start = time.perf_counter()
  process = subprocess.Popen(command, cwd=ROOT)
  stop_at = max_steps
  try:
    while process.poll() is None:
      time.sleep(1.0)
      rows = metrics_lib.read_metrics(workdir)
      steps = [r["step"] for r in rows]
      last = max(steps, default=0)
      if stop_below is not None and stop_at == max_steps:
        below = [
          r["step"]
          for r in rows
          if r.get("eval/bits_per_note", np.inf) < stop_below
        ]
        if below:
          stop_at = min(max_steps, below[0] + every)
      if last >= stop_at:
        process.send_signal(signal.SIGTERM)
        process.wait()
  finally:
    if process.poll() is None:
      process.kill()
  return time.perf_counter() - start


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--configs", default="default,seed")
  parser.add_argument(
    "--max_steps", default="1500,4000", help="per config, comma-separated"
  )
  parser.add_argument(
    "--every", default="100,250", help="checkpoint interval per config"
  )
  parser.add_argument("--midi_dir", default=files.cache_dir("esac_midi"))
  parser.add_argument(
    "--dataset_dir", default=files.cache_dir("datasets", "esac")
  )
  parser.add_argument("--workdir", default=None, help="default: a temp dir")
  parser.add_argument("--out", default=results.DEFAULT_PATH)
  args = parser.parse_args()
  names = args.configs.split(",")
  max_steps = [int(s) for s in args.max_steps.split(",")]
  every = [int(s) for s in args.every.split(",")]
  if not len(names) == len(max_steps) == len(every):
    parser.error("--max_steps and --every need one value per config")

  import jax

  from configs import default
  from melodyjax.evaluation import ngram

  jax.config.update("jax_platforms", "cpu")
  config = default.get_config()
  config.data.midi_dir = args.midi_dir
  config.data.dataset_dir = args.dataset_dir
  dataset = build.prepare_dataset(config.data)
  start = time.perf_counter()
  fitted = ngram.fit_streams(dataset)
  baseline = ngram.evaluate_streams(dataset, fitted, "valid")
  target = baseline["bits_per_note"]
  print(
    f"n-gram baseline on {int(np.sum(dataset.valid.transpositions == 0))} "
    f"validation songs: {target:.3f} bits per note (orders "
    f"{baseline['order_pitch']} / {baseline['order_duration']}; "
    f"{time.perf_counter() - start:.0f} s)",
    flush=True,
  )
  rows = [("quality_ngram_valid_bits", target, "bits/note")]
  overrides = [
    f"--config.data.midi_dir={args.midi_dir}",
    f"--config.data.dataset_dir={args.dataset_dir}",
  ]
  root = args.workdir or tempfile.mkdtemp(prefix="melodyjax_quality_")
  summary = []
  for name, limit, interval in zip(names, max_steps, every, strict=True):
    workdir = os.path.join(root, name)
    # The trainer's own validation loss is per window; it only stops the
    # run early for 'all', where windows cover the songs from their start.
    objective = "last" if name == "seed" else "all"
    wall = train_until(
      name,
      workdir,
      limit,
      interval,
      overrides,
      target if objective == "all" else None,
    )
    logged = training_seconds(metrics_lib.read_metrics(workdir))
    steps = sorted(
      int(d)
      for d in os.listdir(os.path.join(workdir, "checkpoints"))
      if d.isdigit()
    )
    crossed, curve = None, []
    for step in steps:
      run = runs_lib.from_workdir(workdir, step)
      bits = predict.score_split(run, "valid", dataset)["bits_per_note"]
      seconds = logged.get(step, np.nan)
      curve.append((step, seconds, bits))
      print(
        f"[{name}] step {step:5d}: {seconds / 60:5.2f} min of training, "
        f"{bits:.3f} bits per note on validation songs",
        flush=True,
      )
      if bits < target and crossed is None:
        crossed = (step, seconds, bits)
    summary.append((name, objective, crossed, curve, wall))
    if crossed is not None:
      rows += [
        (f"quality_{name}_minutes", crossed[1] / 60, "min"),
        (f"quality_{name}_steps", crossed[0], "steps"),
      ]

  print(
    f"\nTime to quality on ESAC: validation bits per note below the n-gram "
    f"baseline's {target:.3f} (training time only, load average "
    f"{os.getloadavg()[0]:.1f} at the end)"
  )
  print("config   objective  steps  minutes  bits/note")
  for name, objective, crossed, curve, wall in summary:
    if crossed is None:
      step, seconds, bits = min(curve, key=lambda c: c[2])
      print(
        f"{name:8s} {objective:9s}  not below after {curve[-1][0]} steps "
        f"({curve[-1][1] / 60:.1f} min); best {bits:.3f} at step {step}"
      )
    else:
      step, seconds, bits = crossed
      print(
        f"{name:8s} {objective:9s}  {step:5d}  {seconds / 60:7.2f}  "
        f"{bits:.3f}   (wall {wall / 60:.1f} min with evaluations)"
      )
  results.merge(args.out, rows)


if __name__ == "__main__":
  main()
