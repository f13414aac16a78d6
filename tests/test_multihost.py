"""Multi-host training: 2 processes x 2 CPU devices equal 1 process x 4.

Each run is `train_main.py` in subprocesses; the two-process run talks over
localhost (coordinator plus gloo collectives on CPU).
"""

import json
import os
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from configs import tiny
from melodyjax.data import build
from melodyjax.data import config as data_config_lib
from tests.helpers import PROJECT, final_params, run_python, write_tunes

TIMEOUT_S = 240
DISTRIBUTED_VARIABLES = (
  "JAX_COORDINATOR_ADDRESS",
  "JAX_NUM_PROCESSES",
  "JAX_PROCESS_ID",
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  """(midi_dir, dataset_dir) with the dataset of configs/tiny.py built."""
  midi_dir = tmp_path_factory.mktemp("midi")
  write_tunes(midi_dir, 48, 17)
  dataset_dir = tmp_path_factory.mktemp("data")
  build.build_dataset(
    midi_dir,
    dataset_dir,
    data_config_lib.CorpusConfig.from_config(tiny.get_config().data),
    workers=1,
    progress=False,
  )
  return midi_dir, dataset_dir


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def env_with(num_devices: int, **variables: str) -> dict[str, str]:
  env = {k: v for k, v in os.environ.items() if k not in DISTRIBUTED_VARIABLES}
  env.update(
    JAX_PLATFORMS="cpu",
    XLA_FLAGS=f"--xla_force_host_platform_device_count={num_devices}",
    **variables,
  )
  return env


def start(data, workdir, log, *flags, env):
  """train_main.py on the tiny config; stdout to `log`.out, stderr .err."""
  midi_dir, dataset_dir = data
  with open(f"{log}.out", "w") as out, open(f"{log}.err", "w") as err:
    return subprocess.Popen(
      [
        sys.executable,
        "train_main.py",
        "--config=configs/tiny.py",
        f"--workdir={workdir}",
        f"--config.data.midi_dir={midi_dir}",
        f"--config.data.dataset_dir={dataset_dir}",
        *flags,
      ],
      cwd=PROJECT,
      env=env,
      stdout=out,
      stderr=err,
    )


def wait_all(procs, logs, timeout=TIMEOUT_S):
  """Waits for every process; kills them all when one fails or time runs
  out (the others would wait for it until JAX's own timeouts)."""
  deadline = time.monotonic() + timeout
  try:
    while any(p.poll() is None for p in procs):
      failed = [p for p in procs if p.poll() not in (None, 0)]
      if failed or time.monotonic() > deadline:
        break
      time.sleep(0.2)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
      p.wait()
  for p, log in zip(procs, logs, strict=True):
    if p.returncode != 0:
      err = read_log(log, "err").splitlines()[-30:]
      pytest.fail(f"{log}: exit {p.returncode}\n" + "\n".join(err))


def read_log(log, stream):
  with open(f"{log}.{stream}") as f:
    return f.read()


def read_metrics(workdir):
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  return [json.loads(line) for line in lines]


@pytest.mark.parametrize(
  "mode",
  ["jit", "pmap"],
)
def test_two_processes_equal_one_with_as_many_devices(data, tmp_path, mode):
  one, two = tmp_path / "run_one", tmp_path / "run_two"
  logs = [tmp_path / "one", tmp_path / "two_0", tmp_path / "two_1"]
  address = f"localhost:{free_port()}"
  parallel = f"--config.train.parallel={mode}"
  procs = [start(data, one, logs[0], parallel, env=env_with(4))]
  wait_all(procs, logs[:1])
  # Process 0 from flags, process 1 from the usual variables.
  procs = [
    start(
      data,
      two,
      logs[1],
      parallel,
      f"--coordinator_address={address}",
      "--num_processes=2",
      "--process_id=0",
      env=env_with(2),
    ),
    start(
      data,
      two,
      logs[2],
      parallel,
      env=env_with(
        2,
        JAX_COORDINATOR_ADDRESS=address,
        JAX_NUM_PROCESSES="2",
        JAX_PROCESS_ID="1",
      ),
    ),
  ]
  wait_all(procs, logs[1:])
  # Only process 0 reports, logs metrics and writes the run's files (a
  # process that ran alone would also say process 0 and write them).
  out_0, out_1 = (read_log(log, "out") for log in logs[1:])
  assert "validation:" in out_0 and "validation:" not in out_1
  assert len(os.listdir(two / "tensorboard")) == 1
  assert (two / "config.json").exists()

  # Restored on this process's devices, whatever topology wrote them.
  state_one, data_one = final_params(one)
  state_two, data_two = final_params(two)
  assert data_one == data_two == {"step": 20, "seed": 0, "batch_size": 8}
  for a, b in zip(
    jax.tree.leaves(state_one), jax.tree.leaves(state_two), strict=True
  ):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=5e-5)

  # One line per (step, train, eval or sample), with global sums (not
  # process 0's).
  metrics_one, metrics_two = read_metrics(one), read_metrics(two)
  keys = [(m["step"], min(m.keys() - {"step"})[:5]) for m in metrics_two]
  assert len(keys) == len(set(keys)) == len(metrics_one)
  for a, b in zip(metrics_one, metrics_two, strict=True):
    assert a.keys() == b.keys()
    for name in a:
      # Samples are discrete draws: parameters equal to 1e-4 may still
      # flip one; both runs sampled at the last step (checked above).
      if not name.endswith(("_per_second", "sample/seconds")):
        if not name.startswith("sample/"):
          assert b[name] == pytest.approx(a[name], rel=1e-4), name

  # Every process says first what it sees; process 0 alone samples.
  launch_one = read_log(logs[0], "out").splitlines()[:2]
  assert launch_one == [
    "train_main.py: process 0 of 1: 4 local of 4 global devices (cpu: cpu; "
    "local 0, 1, 2, 3)",
    "train_main.py: global batch 8 = 2 per device x 4 devices (8 per "
    f"process); compute dtype float32; parallel {mode}",
  ]
  for index, log in enumerate(logs[1:]):
    first = read_log(log, "out").splitlines()[:2]
    assert first[0].startswith(
      f"train_main.py: process {index} of 2: 2 local of 4 global devices"
    )
    assert first[1].startswith(
      "train_main.py: global batch 8 = 2 per device x 4 devices (4 per process)"
    )
  assert sorted(os.listdir(two / "samples")) == ["20"]
  assert "audition:" in out_0 and (two / "audition.html").exists()


@pytest.mark.parametrize(
  "variables, message",
  [
    (
      {"JAX_COORDINATOR_ADDRESS": "localhost:1", "JAX_PROCESS_ID": "0"},
      "needs --num_processes (or JAX_NUM_PROCESSES) as well",
    ),
    (
      {
        "JAX_COORDINATOR_ADDRESS": "localhost:1",
        "JAX_NUM_PROCESSES": "two",
        "JAX_PROCESS_ID": "0",
      },
      "must be integers",
    ),
    (
      {
        "JAX_COORDINATOR_ADDRESS": "localhost:1",
        "JAX_NUM_PROCESSES": "2",
        "JAX_PROCESS_ID": "2",
      },
      "got id 2 of 2",
    ),
  ],
)
def test_incomplete_multihost_settings_are_one_line_errors(
  tmp_path, variables, message
):
  result = run_python(
    "train_main.py",
    "--config=configs/tiny.py",
    f"--workdir={tmp_path}/w",
    env=env_with(1, **variables),
    timeout=120,
  )
  assert result.returncode == 2
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("train_main.py: error: ") and message in last
  assert "Traceback" not in result.stderr
