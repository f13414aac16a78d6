"""Training killed with SIGKILL again and again loses at most an interval,
never leaves an unreadable checkpoint, and ends where an uninterrupted run
ends; a second run on the workdir is refused meanwhile, and SIGKILL leaves
no stale lock. Also: damaged checkpoints are skipped with a warning."""

import json
import os
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from configs import tiny
from melodyjax import errors
from melodyjax.training import checkpoints, loop
from melodyjax.training import start as start_lib
from melodyjax.training import workdir as workdir_lib
from tests.helpers import PROJECT, abstract_state, write_tunes

INTERVAL = 5  # checkpoint_every_steps in these runs


@pytest.fixture(scope="module")
def corpus_dirs(tmp_path_factory):
  """A corpus and its dataset, built once (the runs only load it)."""
  root = tmp_path_factory.mktemp("crash")
  midi = root / "midi"
  write_tunes(midi, 32, 11)
  config = make_config(midi, root / "data", 10)
  start_lib.load_dataset(config)
  return midi, root / "data"


def make_config(midi, data, num_steps):
  config = tiny.get_config()
  config.data.midi_dir = str(midi)
  config.data.dataset_dir = str(data)
  config.data.valid_fraction = 0.15
  config.train.num_train_steps = num_steps
  config.train.log_every_steps = 1
  config.train.eval_every_steps = INTERVAL
  config.train.checkpoint_every_steps = INTERVAL
  config.checkpoint.async_save = True
  config.checkpoint.max_to_keep = 3
  return config


def start_run(midi, data, workdir, num_steps):
  overrides = {
    "data.midi_dir": midi,
    "data.dataset_dir": data,
    "data.valid_fraction": 0.15,
    "train.num_train_steps": num_steps,
    "train.log_every_steps": 1,
    "train.eval_every_steps": INTERVAL,
    "train.checkpoint_every_steps": INTERVAL,
    "checkpoint.async_save": True,
    "checkpoint.max_to_keep": 3,
  }
  return subprocess.Popen(
    [
      sys.executable,
      "train_main.py",
      "--config=configs/tiny.py",
      f"--workdir={workdir}",
      *(f"--config.{k}={v}" for k, v in overrides.items()),
    ],
    cwd=PROJECT,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
    text=True,
  )


def logged_step(workdir) -> int:
  """The last training step in metrics.jsonl (0 before the first)."""
  step = 0
  try:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      for line in f:
        try:
          record = json.loads(line)
        except ValueError:
          continue  # a line cut by the kill
        if "train/loss" in record:
          step = max(step, record["step"])
  except FileNotFoundError:
    pass
  return step


def count_lines(workdir) -> int:
  try:
    with open(os.path.join(workdir, "metrics.jsonl"), "rb") as f:
      return f.read().count(b"\n")
  except FileNotFoundError:
    return 0


def in_flight(workdir) -> list[str]:
  """Checkpoint folders orbax is still writing (renamed when complete)."""
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    return []
  return [name for name in os.listdir(directory) if "tmp" in name]


def read_all(workdir) -> dict[int, tuple]:
  """Every checkpoint of the workdir, restored (a failure fails the test)."""
  manager = checkpoints.create_manager(
    str(workdir), max_to_keep=1, keep_best=0, enable_async=False, read_only=True
  )
  try:
    abstract = abstract_state(workdir)
    return {
      step: checkpoints.restore(manager, step, abstract)
      for step in manager.all_steps()
    }
  finally:
    manager.close()


def wait_for(process, condition, timeout=240):
  """Polls `condition` until true; False if the process ended first."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if condition():
      return True
    if process.poll() is not None:
      return False
    time.sleep(0.002)
  raise AssertionError("the run made no progress")


def kill_loop(midi, data, workdir, num_steps, num_kills, seed):
  """Kills runs on `workdir` at random steps or during checkpoint writes.

  Returns:
    (kills, kills during a write, the largest number of steps lost).
  """
  rng = np.random.default_rng(seed)
  kills = kills_in_write = most_lost = 0
  while kills < num_kills:
    resumed = logged_step(workdir)
    lines = count_lines(workdir)
    # A few steps past the furthest point so far, so that every kill (not
    # only the first few) lands inside the run.
    target = resumed + int(rng.integers(1, 2 * INTERVAL + 1))
    if target >= num_steps:
      break
    process = start_run(midi, data, workdir, num_steps)
    try:
      if kills % 2:  # during an asynchronous checkpoint write of this run
        # (a folder left by an earlier kill is removed before step 1)
        hit = wait_for(
          process,
          lambda lines=lines: (
            count_lines(workdir) > lines and bool(in_flight(workdir))
          ),
        )
      else:  # at a random step, a few milliseconds into the next one
        hit = wait_for(
          process,
          lambda target=target: logged_step(workdir) >= target,
        )
        if hit and kills == 0:
          check_second_run_refused(midi, data, workdir)
        time.sleep(float(rng.uniform(0, 0.03)))
    finally:
      process.kill()
      _, stderr = process.communicate()
    if process.returncode == 0 or not hit:
      assert process.returncode in (0, -9), stderr
      break  # it finished first; that run is the last one
    assert process.returncode == -9
    kills += 1
    writing = in_flight(workdir)
    kills_in_write += bool(writing)
    steps = read_all(workdir)  # every checkpoint is readable
    killed_at = logged_step(workdir)
    saved = max(steps, default=0)
    lost = killed_at - saved
    most_lost = max(most_lost, lost)
    # One interval, plus one more when the newest save was still in flight.
    assert lost <= INTERVAL * (2 if writing else 1), (killed_at, saved)
  return kills, kills_in_write, most_lost


def final_state(workdir):
  steps = read_all(workdir)
  return steps[max(steps)]


def check_kills(corpus_dirs, tmp_path, num_steps, num_kills, seed):
  midi, data = corpus_dirs
  reference = tmp_path / "reference"
  loop.train_and_evaluate(make_config(midi, data, num_steps), str(reference))
  workdir = tmp_path / "killed"
  kills, kills_in_write, most_lost = kill_loop(
    midi, data, workdir, num_steps, num_kills, seed
  )
  print(
    f"kills: {kills}, during a checkpoint write: {kills_in_write}, "
    f"most steps lost: {most_lost}"
  )
  assert kills >= num_kills - 1
  process = start_run(midi, data, workdir, num_steps)  # to the end
  _, stderr = process.communicate(timeout=300)
  assert process.returncode == 0, stderr
  assert not (workdir / workdir_lib.DAMAGED_DIR).exists()
  (state, data_state), (expected, expected_data) = (
    final_state(workdir),
    final_state(reference),
  )
  assert data_state == expected_data
  assert int(state.step) == num_steps
  for a, b in zip(
    jax.tree.leaves(state), jax.tree.leaves(expected), strict=True
  ):
    np.testing.assert_array_equal(a, b)


def test_sigkill_twice_then_resume_equals_uninterrupted(corpus_dirs, tmp_path):
  check_kills(corpus_dirs, tmp_path, num_steps=20, num_kills=2, seed=0)


@pytest.mark.slow
def test_sigkill_many_times_then_resume_equals_uninterrupted(
  corpus_dirs, tmp_path
):
  check_kills(corpus_dirs, tmp_path, num_steps=120, num_kills=16, seed=1)


def damage(step_dir, how):
  files = [
    os.path.join(root, name)
    for root, _, names in os.walk(step_dir)
    for name in names
  ]
  largest = max(files, key=os.path.getsize)
  if how == "truncate":
    with open(largest, "r+b") as f:
      f.truncate(os.path.getsize(largest) // 2)
  else:
    os.remove(largest)


def test_damaged_latest_checkpoints_are_skipped_and_announced(
  corpus_dirs, tmp_path
):
  midi, data = corpus_dirs
  config = make_config(midi, data, 15)
  config.checkpoint.async_save = False
  workdir = tmp_path / "run"
  loop.train_and_evaluate(config, str(workdir))
  expected_5 = read_all(workdir)[5][1]
  damage(workdir / "checkpoints" / "15", "delete")
  damage(workdir / "checkpoints" / "10", "truncate")
  config.train.num_train_steps = 6  # resume from 5, one step, save
  said = []
  loop.train_and_evaluate(config, str(workdir), announce=said.append)
  # said[0]: the launch, said[1]: how the training songs fit the windows.
  assert said[1].startswith("training songs: ")
  lines = "\n".join(said[2:]).splitlines()
  assert [line.split(":")[0] for line in lines] == [
    "skipped damaged checkpoint at step 15",
    "skipped damaged checkpoint at step 10",
    f"resuming from step 5 ({workdir}/checkpoints/5)",
  ], lines
  for line, step in zip(lines, (15, 10), strict=False):
    assert f"checkpoints/{step} " in line, line
    assert f"moved to {workdir}/{workdir_lib.DAMAGED_DIR}/{step}-" in line
  moved = sorted(os.listdir(workdir / workdir_lib.DAMAGED_DIR))
  assert [name.split("-")[0] for name in moved] == ["10", "15"]
  steps = read_all(workdir)  # all readable again, 6 saved after 5
  assert sorted(steps) == [5, 6]
  state, data_state = steps[6]
  assert int(state.step) == 6 and data_state["step"] == expected_5["step"] + 1
  # (That a resumed run equals an uninterrupted one is the kill loop's
  # test above and test_train's.)


def check_second_run_refused(midi, data, workdir):
  """While a run holds the workdir, another is refused and writes nothing."""
  before = {
    name: os.path.getmtime(os.path.join(workdir, name))
    for name in ("config.json", "vocab_pitch.json", "vocab_duration.json")
  }
  with pytest.raises(errors.CheckpointError, match="in use by"):
    loop.train_and_evaluate(make_config(midi, data, 10), str(workdir))
  for name, mtime in before.items():
    assert os.path.getmtime(os.path.join(workdir, name)) == mtime, name
