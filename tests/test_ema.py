"""The parameters' moving average (`train.ema_decay`): its math in the
jitted step (jit and pmap), resume, and that every reader of a run gets it.
"""

import os
import shutil

import jax
import numpy as np
import pytest

from configs import tiny
from melodyjax import errors
from melodyjax.cli import export
from melodyjax.data import windows as windows_lib
from melodyjax.listening import hook
from melodyjax.model import config as model_config_lib
from melodyjax.model import model as model_lib
from melodyjax.sampling import generate
from melodyjax.sampling import request as request_lib
from melodyjax.training import checkpoints, loop, model_file, parallel, runs
from melodyjax.training import metrics as metrics_lib
from melodyjax.training import start as start_lib
from melodyjax.training import state as state_lib
from melodyjax.training import steps as steps_lib
from melodyjax.training import workdir as workdir_lib
from tests.helpers import (
  assert_trees_equal,
  final_params,
  resume_after_step_10,
  small_dataset,
  tiny_config,
  write_tunes,
)


@pytest.fixture(scope="module")
def midi_dir(tmp_path_factory):
  return write_tunes(tmp_path_factory.mktemp("ema") / "midi", 40, 9)


@pytest.fixture(scope="module")
def dataset(midi_dir, tmp_path_factory):
  return small_dataset(midi_dir, tmp_path_factory.mktemp("ema_data"))


class Recorder:
  """A hook that keeps the parameters it is handed at each step."""

  def __init__(self):
    self.params = {}

  def due(self, step):
    return step % 10 == 0

  def __call__(self, step, params, run):
    self.params[step] = jax.tree.map(np.array, params)


@pytest.fixture(scope="module")
def ema_run(midi_dir, tmp_path_factory):
  """A tiny run with a short average (0.8), trained for 20 steps, and the
  parameters its hooks (the samples of training) were handed."""
  root = tmp_path_factory.mktemp("ema_run")
  config = tiny_config(midi_dir, root / "data", ema_decay=0.8)
  recorder = Recorder()
  loop.train_and_evaluate(
    config, str(root / "run"), hooks=[hook.AuditionHook(config), recorder]
  )
  return root / "run", recorder.params


def run_steps(dataset, mode, num_devices, steps, **train_overrides):
  """(raw parameters after each step, the final train state) on host."""
  config = tiny.get_config()
  config.train.update(train_overrides)
  model = model_lib.MelodyModel(
    model_config_lib.get_model_config(
      config.model, len(dataset.pitch_vocab), len(dataset.duration_vocab)
    )
  )
  tx = state_lib.create_optimizer(config.train)
  runner = parallel.create(
    mode, parallel.create_mesh(jax.devices()[:num_devices])
  )
  ema = state_lib.ema_settings(config.train)
  train_step, _ = steps_lib.make_steps(model, tx, "all", runner, ema=ema)
  state = runner.put_state(
    state_lib.create_train_state(
      jax.random.key(0), model, tx, 16, ema=ema[0] > 0
    )
  )
  batches = windows_lib.BatchIterator(
    windows_lib.make_windows(dataset.train, 16, "all"), 8, seed=0
  )
  history = [jax.device_get(runner.saved_state(state).params)]
  for _ in range(steps):
    batch = runner.put_batch(next(batches).as_dict())
    state, _ = train_step(state, batch, jax.random.key(1))
    history.append(jax.device_get(runner.saved_state(state).params))
  return history, jax.device_get(runner.saved_state(state))


def assert_trees_close(a, b, **tolerance):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(x, y, **tolerance)


def differs(a, b) -> bool:
  return any(
    not np.array_equal(x, y)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
  )


@pytest.mark.parametrize("start", [0, 2])
def test_the_average_is_the_hand_computed_one(dataset, start):
  decay = 0.7
  history, state = run_steps(
    dataset, "jit", 4, 5, ema_decay=decay, ema_start_step=start
  )
  # By hand: the parameters themselves until step `start`, then
  # ema <- decay * ema + (1 - decay) * params after each step.
  expected = history[0]
  for step, params in enumerate(history[1:], start=1):
    if step <= start:
      expected = params
    else:
      expected = jax.tree.map(
        lambda e, p: decay * e + (1 - decay) * p, expected, params
      )
  assert int(state.step) == 5
  assert_trees_close(state.ema, expected, rtol=1e-5, atol=1e-7)
  assert differs(state.ema, state.params)
  # The average does not change training: the raw parameters are those of
  # a run without it, bit for bit.
  off_history, off_state = run_steps(dataset, "jit", 4, 5)
  assert off_state.ema is None
  for a, b in zip(history, off_history, strict=True):
    assert not differs(a, b)


def test_jit_and_pmap_and_device_counts_give_the_same_average(dataset):
  _, jit_4 = run_steps(dataset, "jit", 4, 4, ema_decay=0.9)
  _, pmap_4 = run_steps(dataset, "pmap", 4, 4, ema_decay=0.9)
  _, jit_1 = run_steps(dataset, "jit", 1, 4, ema_decay=0.9)
  assert_trees_close(jit_4.ema, pmap_4.ema, rtol=1e-4, atol=5e-6)
  assert_trees_close(jit_4.ema, jit_1.ema, rtol=1e-4, atol=5e-6)
  assert differs(jit_4.ema, jit_4.params)


@pytest.mark.parametrize("parallel_mode", ["jit", "pmap"])
def test_resume_with_the_average_equals_uninterrupted(
  midi_dir, tmp_path, parallel_mode
):
  config = tiny_config(
    midi_dir, tmp_path / "data", ema_decay=0.9, parallel=parallel_mode
  )
  (state_full, data_full), (state_cut, data_cut) = resume_after_step_10(
    config, tmp_path
  )
  assert data_full == data_cut and int(state_cut.step) == 20
  assert state_cut.ema is not None and differs(state_cut.ema, state_cut.params)
  assert_trees_equal(state_full, state_cut)


def test_switched_on_at_resume_the_average_starts_there(midi_dir, tmp_path):
  config = tiny_config(midi_dir, tmp_path / "data")
  config.train.num_train_steps = 10
  loop.train_and_evaluate(config, str(tmp_path / "run"))
  before, _ = final_params(tmp_path / "run")
  assert before.ema is None
  config = tiny_config(midi_dir, tmp_path / "data", ema_decay=0.5)
  config.train.num_train_steps = 11
  lines = []
  loop.train_and_evaluate(config, str(tmp_path / "run"), announce=lines.append)
  assert "no parameter average" in lines[-1]
  after, _ = final_params(tmp_path / "run")
  # One step: half the step-10 parameters, half the step-11 ones.
  expected = jax.tree.map(
    lambda a, b: 0.5 * a + 0.5 * b, before.params, after.params
  )
  assert_trees_close(after.ema, expected, rtol=1e-5, atol=1e-7)


def strip_average(workdir, target):
  """A copy of the run whose checkpoints lack the average (as before it)."""
  shutil.copytree(workdir, target)
  for step in os.listdir(target / "checkpoints"):
    shutil.rmtree(target / "checkpoints" / step / checkpoints.EMA)
  return target


def test_validation_and_every_reader_get_the_average(ema_run, tmp_path):
  ema_run, handed = ema_run
  state, _ = final_params(ema_run)
  assert differs(state.ema, state.params)
  run = runs.from_workdir(str(ema_run), "latest")
  assert not differs(run.params, state.ema)
  # Validation scored the average: the logged bits are the average's.
  raw = runs.from_workdir(str(strip_average(ema_run, tmp_path / "raw")))
  assert not differs(raw.params, state.params)
  logged = [
    r["eval/bits_per_note"]
    for r in metrics_lib.read_metrics(str(ema_run))
    if r.get("step") == 20 and "eval/bits_per_note" in r
  ]
  model = run.model
  valid = start_lib.load_dataset(workdir_lib.read_config(str(ema_run))).valid
  windows = windows_lib.make_windows(valid, 16, "all")
  runner = parallel.create("jit", parallel.create_mesh())
  _, eval_step = steps_lib.make_steps(model, None, "all", runner)
  bits = {
    name: steps_lib.summarize(
      steps_lib.evaluate(eval_step, runner, params, windows, 16), "eval"
    )["eval/bits_per_note"]
    for name, params in (("ema", run.params), ("raw", raw.params))
  }
  assert logged[-1] == pytest.approx(bits["ema"], rel=1e-5)
  assert bits["raw"] != pytest.approx(bits["ema"], rel=1e-5)
  # The hooks (training's samples) were handed the average too.
  assert not differs(handed[20], jax.device_get(state.ema))


def test_samples_and_export_use_the_average(ema_run, tmp_path):
  ema_run, _ = ema_run
  # Enough draws that two sets of parameters this close (20 steps, decay
  # 0.8) still give different melodies somewhere: 3 x 16 notes gave the
  # same ones after a change of the training songs.
  request = request_lib.Request(num_outputs=8, num_notes=64, seed=3)
  with_ema = generate.generate(runs.from_workdir(str(ema_run)), request)
  raw_run = runs.from_workdir(str(strip_average(ema_run, tmp_path / "raw")))
  assert with_ema != generate.generate(raw_run, request)
  path = tmp_path / "ema.mjx"
  assert export.main([f"--workdir={ema_run}", f"--out={path}"]) == 0
  exported = model_file.read(str(path))
  state, _ = final_params(ema_run)
  assert not differs(exported.params, jax.device_get(state.ema))
  assert differs(exported.params, jax.device_get(state.params))
  assert generate.generate(runs.from_model_file(str(path)), request) == (
    with_ema
  )


def test_fine_tuning_starts_from_the_average(ema_run, monkeypatch, tmp_path):
  ema_run, _ = ema_run
  base = runs.load(str(ema_run))
  state, _ = final_params(ema_run)
  assert not differs(base.params, state.ema)
  seen = {}
  original = start_lib.init_or_restore

  def spy(*args, **kwargs):
    start = original(*args, **kwargs)
    seen["params"] = jax.device_get(start.params)
    seen["ema"] = jax.device_get(start.ema)
    return start

  monkeypatch.setattr(start_lib, "init_or_restore", spy)
  config = workdir_lib.read_config(str(ema_run))
  config.init_from = f"{ema_run}:latest"
  config.train.num_train_steps = 2
  loop.train_and_evaluate(config, str(tmp_path / "tuned"))
  assert not differs(seen["params"], jax.device_get(state.ema))
  assert not differs(seen["ema"], seen["params"])


@pytest.mark.parametrize("value", [1.0, -0.1, 1.5])
def test_a_decay_outside_0_1_names_the_field(midi_dir, tmp_path, value):
  config = tiny_config(midi_dir, tmp_path / "data")
  config.train.ema_decay = 0.0
  with config.unlocked():
    config.train.ema_decay = value
  with pytest.raises(errors.ConfigError, match="config.train.ema_decay"):
    loop.train_and_evaluate(config, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run" / "checkpoints")
