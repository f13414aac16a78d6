"""Train step, data parallelism, resume, configs, and an end-to-end tiny run."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from configs import tiny
from melodyjax import errors
from melodyjax.data import windows as windows_lib
from melodyjax.model import arch
from melodyjax.model import config as model_config_lib
from melodyjax.model import model as model_lib
from melodyjax.training import loop, parallel
from melodyjax.training import state as state_lib
from melodyjax.training import steps as steps_lib
from melodyjax.training import workdir as workdir_lib
from tests.helpers import (
  PROJECT,
  assert_trees_equal,
  resume_after_step_10,
  run_python,
  small_dataset,
  tiny_config,
  write_tunes,
)


@pytest.fixture(scope="module")
def midi_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("midi")
  write_tunes(root, 48, 17)
  return root


@pytest.fixture(scope="module")
def dataset(midi_dir, tmp_path_factory):
  return small_dataset(midi_dir, tmp_path_factory.mktemp("data"))


TRANSFORMER = dict(
  arch="transformer",
  transformer_width=32,
  transformer_layers=2,
  transformer_heads=4,
  transformer_ff=64,
)


def setup_step(
  dataset,
  mode,
  num_devices,
  objective="all",
  batch_size=8,
  model_overrides=None,
  **train_overrides,
):
  config = tiny.get_config()
  config.train.update(train_overrides)
  config.model.update(model_overrides or {})
  model = arch.create_model(
    model_config_lib.get_model_config(
      config.model, len(dataset.pitch_vocab), len(dataset.duration_vocab)
    )
  )
  tx = state_lib.create_optimizer(config.train)
  mesh = parallel.create_mesh(jax.devices()[:num_devices])
  runner = parallel.create(mode, mesh)
  train_step, eval_step = steps_lib.make_steps(model, tx, objective, runner)
  state = runner.put_state(
    state_lib.create_train_state(jax.random.key(0), model, tx, 16)
  )
  windows = windows_lib.make_windows(dataset.train, 16, objective)
  batches = windows_lib.BatchIterator(windows, batch_size, seed=0)
  return train_step, eval_step, runner, state, batches


def run_steps(
  dataset, mode, num_devices, objective="all", steps=3, model_overrides=None
):
  train_step, _, runner, state, batches = setup_step(
    dataset, mode, num_devices, objective, model_overrides=model_overrides
  )
  losses = []
  for _ in range(steps):
    state, sums = train_step(
      state, runner.put_batch(next(batches).as_dict()), jax.random.key(1)
    )
    sums = runner.fetch(sums)
    losses.append(float(sums["nll_pitch"] + sums["nll_duration"]))
  return losses, jax.device_get(runner.saved_state(state).params)


@pytest.mark.parametrize("mode", ["jit", "pmap"])
@pytest.mark.parametrize(
  "objective, model",
  [("all", None), ("last", None), ("all", TRANSFORMER)],
  ids=["all", "last", "all-transformer"],
)
def test_one_and_four_devices_agree(dataset, mode, objective, model):
  assert jax.device_count() >= 4, "conftest forces 4 CPU devices"
  losses_1, params_1 = run_steps(dataset, mode, 1, objective, 3, model)
  losses_4, params_4 = run_steps(dataset, mode, 4, objective, 3, model)
  np.testing.assert_allclose(losses_1, losses_4, rtol=1e-5)
  for a, b in zip(
    jax.tree.leaves(params_1), jax.tree.leaves(params_4), strict=True
  ):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=5e-5)


def test_jit_and_pmap_agree(dataset):
  losses_jit, params_jit = run_steps(dataset, "jit", 2)
  losses_pmap, params_pmap = run_steps(dataset, "pmap", 2)
  np.testing.assert_allclose(losses_jit, losses_pmap, rtol=1e-5)
  for a, b in zip(
    jax.tree.leaves(params_jit), jax.tree.leaves(params_pmap), strict=True
  ):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=5e-5)


def test_steps_lower_the_loss_on_a_repeated_batch(dataset):
  train_step, eval_step, runner, state, batches = setup_step(
    dataset, "jit", 4, learning_rate=1e-2, decay="constant"
  )
  batch = runner.put_batch(batches.batch_at(0).as_dict())
  loss = lambda s: (s["nll_pitch"] + s["nll_duration"]) / s["count"]  # noqa
  losses = [loss(runner.fetch(eval_step(state.params, batch)))]
  for _ in range(10):
    state, _ = train_step(state, batch, jax.random.key(1))
    losses.append(loss(runner.fetch(eval_step(state.params, batch))))
  assert losses[1] < losses[0]
  assert losses[-1] < 0.85 * losses[0]


def test_metrics_are_sums_over_real_targets(dataset):
  _, eval_step, runner, state, _ = setup_step(dataset, "jit", 4)
  windows = windows_lib.make_windows(dataset.valid, 16, "all")
  sums = steps_lib.evaluate(eval_step, runner, state.params, windows, 16)
  # Every event and one eos per song is a target, counted once.
  assert sums["count"] == dataset.valid.num_events + len(dataset.valid)
  assert sums["count"] == windows.num_targets
  metrics = steps_lib.summarize(sums, "eval")
  # An untrained model is close to uniform over each vocabulary.
  uniform = np.log2(len(dataset.pitch_vocab)) + np.log2(
    len(dataset.duration_vocab)
  )
  assert abs(metrics["eval/bits_per_note"] - uniform) < 1.0


def test_end_to_end_run_writes_a_complete_workdir(midi_dir, tmp_path):
  workdir = tmp_path / "run"
  config = tiny_config(midi_dir, tmp_path / "data")
  metrics = loop.train_and_evaluate(config, str(workdir))
  assert np.isfinite(metrics["eval/loss"])
  assert (workdir / "config.json").exists()
  assert workdir_lib.read_config(str(workdir)).train.seq_len == 16
  pitch_vocab, _ = workdir_lib.read_vocabs(str(workdir))
  assert pitch_vocab.tokens[:4] == ("<pad>", "<bos>", "<eos>", "<unk>")
  steps = sorted(
    int(p) for p in os.listdir(workdir / "checkpoints") if p.isdigit()
  )
  assert steps == [10, 20]
  lines = [
    json.loads(line)
    for line in (workdir / "metrics.jsonl").read_text().splitlines()
  ]
  assert {"train/loss", "train/tokens_per_second"} <= set(lines[0])
  assert any("eval/accuracy_duration" in line for line in lines)
  assert os.listdir(workdir / "tensorboard")


def test_resume_equals_uninterrupted(midi_dir, tmp_path):
  config = tiny_config(midi_dir, tmp_path / "data")
  (state_full, data_full), (state_cut, data_cut) = resume_after_step_10(
    config, tmp_path
  )
  assert data_full == data_cut == {"step": 20, "seed": 0, "batch_size": 8}
  assert int(state_cut.step) == 20
  assert_trees_equal(state_full, state_cut)


def test_resume_refuses_other_data(midi_dir, tmp_path):
  config = tiny_config(midi_dir, tmp_path / "data")
  config.train.num_train_steps = 10
  loop.train_and_evaluate(config, str(tmp_path / "run"))
  other = tiny_config(midi_dir, tmp_path / "data2")
  other.data.transpositions = (1, 2)  # more pitches -> other vocabulary
  with pytest.raises(errors.TrainingError, match="vocabulary"):
    loop.train_and_evaluate(other, str(tmp_path / "run"))


def test_bad_config_values_name_the_field(midi_dir, tmp_path):
  config = tiny_config(midi_dir, tmp_path / "data")
  config.train.objective = "every"
  with pytest.raises(errors.ConfigError, match="train.objective"):
    loop.train_and_evaluate(config, str(tmp_path / "run"))
  config = tiny_config(midi_dir, tmp_path / "data")
  config.train.batch_size = 6  # not a multiple of 4 devices
  with pytest.raises(errors.ConfigError, match="train.batch_size"):
    loop.train_and_evaluate(config, str(tmp_path / "run"))


def run_main(*args, env=None):
  return run_python("train_main.py", *args, env=env)


def test_main_rejects_a_typo_in_a_config_key(tmp_path):
  result = run_main(
    "--config=configs/tiny.py",
    f"--workdir={tmp_path}",
    "--config.train.batch_sise=4",
  )
  assert result.returncode != 0
  assert "batch_sise" in result.stderr
  assert "Traceback" not in result.stderr


def test_main_reports_a_missing_midi_folder_in_one_line(tmp_path):
  result = run_main(
    "--config=configs/tiny.py",
    f"--workdir={tmp_path}/w",
    "--config.data.midi_dir=/no/such/folder",
    f"--config.data.dataset_dir={tmp_path}/d",
  )
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1] == (
    "train_main.py: error: MIDI folder not found: /no/such/folder"
  )
  assert "Traceback" not in result.stderr


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(
  midi_dir, tmp_path
):
  config = tiny_config(midi_dir, tmp_path / "data")
  config.train.num_train_steps = 10
  workdir = tmp_path / "run"
  loop.train_and_evaluate(config, str(workdir))
  # Resume with a learning rate that blows the parameters up.
  config.train.num_train_steps = 20
  config.train.learning_rate = 1e30
  config.train.grad_clip_norm = 0.0
  with pytest.raises(errors.TrainingError) as e:
    loop.train_and_evaluate(config, str(workdir))
  message = str(e.value)
  assert "non-finite loss at step 1" in message  # steps 11-15
  assert "Hint: lower config.train.learning_rate" in message
  assert "last good checkpoint: step 10" in message
  assert sorted(os.listdir(workdir / "checkpoints")) == ["10"]


def test_a_non_finite_gradient_alone_stops_training():
  finite = {"nll_pitch": 10.0, "nll_duration": 5.0, "grad_norm": 3.0}
  steps_lib.check_finite(7, finite, 5, "/w")  # nothing to report
  for sums, what in (
    ({**finite, "grad_norm": float("nan")}, "gradient"),
    ({**finite, "grad_norm": float("inf")}, "gradient"),
    ({**finite, "nll_pitch": float("inf")}, "loss"),
  ):
    with pytest.raises(errors.TrainingError) as e:
      steps_lib.check_finite(7, sums, 5, "/w")
    message = str(e.value)
    assert f"non-finite {what} at step 7" in message
    assert "last good checkpoint: step 5 in /w" in message
    assert "Hint: lower config.train.learning_rate" in message


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(midi_dir, tmp_path):
  workdir = tmp_path / "run"
  process = subprocess.Popen(
    [
      sys.executable,
      "train_main.py",
      "--config=configs/tiny.py",
      f"--workdir={workdir}",
      f"--config.data.midi_dir={midi_dir}",
      f"--config.data.dataset_dir={tmp_path / 'data'}",
      "--config.train.num_train_steps=100000",
      "--config.train.checkpoint_every_steps=100000",
      "--config.train.eval_every_steps=100000",
      "--config.train.log_every_steps=1",
    ],
    cwd=PROJECT,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )
  try:
    metrics = workdir / "metrics.jsonl"
    for _ in range(600):
      if metrics.exists() and metrics.read_text().count("\n") >= 3:
        break
      assert process.poll() is None, process.communicate()
      time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
  finally:
    process.kill()
  assert process.returncode == 0, stderr
  steps = [int(p) for p in os.listdir(workdir / "checkpoints") if p.isdigit()]
  assert len(steps) == 1 and 3 <= steps[0] < 100000
  assert "checkpoints:" in stdout


GOLDEN_FIRST_LOSS = 5.29210


def test_golden_first_step_loss():
  """A fixed seed, batch and tiny config give a known first-step loss.

  If this fails after an intended change to the model, its initialization,
  the dropout or the loss, check the change and set GOLDEN_FIRST_LOSS to the
  new value printed here; an unintended failure means numerics changed.
  """
  config = tiny.get_config()
  model = model_lib.MelodyModel(
    model_config_lib.get_model_config(config.model, 20, 10)
  )
  tx = state_lib.create_optimizer(config.train)
  rng = np.random.default_rng(0)
  batch = {
    "pitch": rng.integers(4, 20, (8, 16)).astype(np.int32),
    "duration": rng.integers(4, 10, (8, 16)).astype(np.int32),
    "target_pitch": rng.integers(4, 20, (8, 16)).astype(np.int32),
    "target_duration": rng.integers(4, 10, (8, 16)).astype(np.int32),
    "rows": np.arange(8, dtype=np.int32),
  }
  mesh = parallel.create_mesh(jax.devices()[:4])
  runner = parallel.create("jit", mesh)
  step, _ = steps_lib.make_steps(model, tx, "all", runner)
  state = runner.put_state(
    state_lib.create_train_state(jax.random.key(0), model, tx, 16)
  )
  _, sums = step(state, runner.put_batch(batch), jax.random.key(1))
  sums = jax.device_get(sums)
  loss = float((sums["nll_pitch"] + sums["nll_duration"]) / sums["count"])
  assert loss == pytest.approx(GOLDEN_FIRST_LOSS, abs=1e-4), (
    f"first-step loss is {loss!r}; see the docstring before updating"
  )


def test_every_step_is_logged_when_eval_falls_between_log_lines(
  midi_dir, tmp_path
):
  config = tiny_config(midi_dir, tmp_path / "data")
  config.train.num_train_steps = 12
  config.train.log_every_steps = 5
  config.train.eval_every_steps = 7
  config.train.checkpoint_every_steps = 7
  workdir = tmp_path / "run"
  loop.train_and_evaluate(config, str(workdir))
  lines = [
    json.loads(line)
    for line in (workdir / "metrics.jsonl").read_text().splitlines()
  ]
  logged = [line["step"] for line in lines if "train/loss" in line]
  # Steps 6-7 are logged at the step-7 evaluation, not dropped.
  assert logged == [5, 7, 10, 12]
