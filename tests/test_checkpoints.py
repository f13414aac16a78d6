"""Checkpoint layout: parameters as their own item, and older checkpoints."""

import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp

from melodyjax.training import checkpoints, loop, runs
from melodyjax.training import workdir as workdir_lib
from tests.helpers import final_params


def write_legacy(workdir, step):
  """Rewrites checkpoint `step` in the layout before parameters had an item
  of their own: one 'state' item holding step, parameters and optimizer."""
  state, data = final_params(workdir)
  folder = os.path.join(workdir, workdir_lib.CHECKPOINT_DIR)
  shutil.rmtree(folder)
  manager = ocp.CheckpointManager(folder)
  manager.save(
    step,
    args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data)
    ),
  )
  manager.wait_until_finished()
  manager.close()
  return state


def test_items_on_disk(workdir):
  step_dir = os.path.join(workdir, workdir_lib.CHECKPOINT_DIR, "10")
  assert {checkpoints.PARAMS, checkpoints.OPTIMIZER, checkpoints.DATA} <= set(
    os.listdir(step_dir)
  )


def test_sampling_restores_parameters_only(workdir, monkeypatch):
  state, _ = final_params(workdir)
  # Restoring the optimizer state would fail: generation must not need it.
  monkeypatch.setattr(checkpoints, "restore", None)
  run = runs.from_workdir(str(workdir))
  for a, b in zip(
    jax.tree.leaves(run.params), jax.tree.leaves(state.params), strict=True
  ):
    np.testing.assert_array_equal(a, b)


def test_a_legacy_checkpoint_samples_and_resumes(workdir, tmp_path):
  legacy = tmp_path / "legacy"
  shutil.copytree(workdir, legacy)
  saved = write_legacy(legacy, 10)
  assert not os.path.exists(legacy / "checkpoints" / "10" / checkpoints.PARAMS)
  run = runs.from_workdir(str(legacy))
  for a, b in zip(
    jax.tree.leaves(run.params), jax.tree.leaves(saved.params), strict=True
  ):
    np.testing.assert_array_equal(a, b)
  config = workdir_lib.read_config(str(legacy))
  config.train.num_train_steps = 12
  loop.train_and_evaluate(config, str(legacy))
  state, data = final_params(legacy)
  assert int(state.step) == 12 and data["step"] == 12
  assert os.path.isdir(legacy / "checkpoints" / "12" / checkpoints.PARAMS)
