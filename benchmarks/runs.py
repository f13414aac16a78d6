"""Training runs the benchmarks launch and score.

`train_main` runs `train_main.py` in a subprocess (as a user would, so its
allocator, flags and checks are the product's); `test_bits` scores a
finished run's best step as `melodyjax-evaluate` does.
"""

import os
import subprocess
import sys
import time

from melodyjax.training import runs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train_main(config: str, workdir: str, overrides: dict) -> float:
  """Runs `train_main.py --config=configs/CONFIG.py` with the given
  `--config.FIELD=VALUE` overrides, quietly; returns its minutes."""
  command = [
    sys.executable,
    os.path.join(ROOT, "train_main.py"),
    f"--config={os.path.join(ROOT, 'configs', config + '.py')}",
    f"--workdir={workdir}",
    "--config.train.progress=False",
    *(f"--config.{k}={v}" for k, v in overrides.items()),
  ]
  start = time.perf_counter()
  subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
  return (time.perf_counter() - start) / 60


def best_run(workdir: str):
  """The run's best validation step (`generate.load_run`)."""

  return runs.from_workdir(workdir, "best")


def test_bits(workdir: str) -> dict[str, float]:
  """The test split's scores of the run's best validation step (every
  event and eos of every test song, from its start)."""
  from melodyjax.evaluation import predict

  return predict.score_split(best_run(workdir), "test")
