"""A run's parameters at one step, read back: from a workdir or a model file.

Sampling (`sampling.generate`) and fine-tuning (`config.init_from`) read
runs through here: the config, both vocabularies and the parameters only
(restored into the shapes of `eval_shape(model.init)`, no optimizer).
A source is a workdir, `WORKDIR:STEP` (a step number, 'latest' or 'best'),
or a `.mjx` model file.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from melodyjax import errors
from melodyjax.data import labels as labels_lib
from melodyjax.model import arch
from melodyjax.model import config as model_config_lib
from melodyjax.model import model as model_lib
from melodyjax.music import tokens
from melodyjax.training import checkpoints, model_file
from melodyjax.training import metrics as metrics_lib
from melodyjax.training import workdir as workdir_lib


@dataclasses.dataclass(frozen=True)
class Run:
  """A restored run at one step: what generation, evaluation, serving and
  fine-tuning need of it, read from a workdir alone or from a model file.

  Attributes:
    workdir: the run's folder, or None for a model file.
    config: the run's resolved config (its `config.json`).
    model: the MelodyModel of its config and vocabularies.
    params: the parameters at `step` (the average, when it has one).
    step: the checkpoint's optimizer step.
    pitch_vocab, duration_vocab: the run's token vocabularies.
    model_path: the model file, or None for a workdir.
    labels: the run's label vocabularies (time signatures, modes, styles).
  """

  workdir: str | None
  config: ml_collections.ConfigDict
  model: model_lib.MelodyModel
  params: Any
  step: int
  pitch_vocab: tokens.Vocab
  duration_vocab: tokens.Vocab
  model_path: str | None = None
  labels: labels_lib.Labels = dataclasses.field(
    default_factory=labels_lib.empty
  )

  def describe(self) -> str:
    return f"{self.workdir or self.model_path} at step {self.step}"


def create_model(
  config, pitch_vocab, duration_vocab, label_vocabs=None, *, source=None
) -> model_lib.MelodyModel:
  """The MelodyModel of a config, its vocabularies and labels (one place).

  Raises:
    CheckpointError: with `source` (the config's file) given, a config
      without the model's fields (a hand-edited `config.json`).
  """
  label_vocabs = label_vocabs or labels_lib.empty()
  try:
    model_config = model_config_lib.get_model_config(
      config.model,
      len(pitch_vocab),
      len(duration_vocab),
      {kind: len(label_vocabs[kind]) for kind in labels_lib.KINDS},
    )
  except (AttributeError, KeyError, TypeError) as e:
    if source is None:
      raise
    reason = str(e).replace('"', "")
    raise errors.CheckpointError(
      f"{source}: not a run's config (no usable model settings: "
      f"{type(e).__name__}: {reason})"[:300]
    ) from None
  return arch.create_model(model_config)


def _choose_step(workdir: str, steps: Sequence[int], step: str | int) -> int:
  if step == "latest":
    return steps[-1]
  if step == "best":
    return metrics_lib.best_step(workdir, steps)
  try:
    return int(step)
  except ValueError:
    raise errors.GenerateError(
      f"--step must be 'latest', 'best' or a number, got {step!r}"
    ) from None


def from_workdir(workdir: str, step: str | int = "latest") -> Run:
  """The parameters of a workdir's checkpoint at `step`.

  Raises:
    GenerateError, CheckpointError: with a one-line reason.
  """
  workdir = os.path.abspath(os.path.expanduser(workdir))
  if not os.path.isdir(workdir):
    raise errors.GenerateError(f"workdir not found: {workdir}")
  config = workdir_lib.read_config(workdir)
  pitch_vocab, duration_vocab = workdir_lib.read_vocabs(workdir)
  label_vocabs = workdir_lib.read_labels(workdir)
  model = create_model(
    config,
    pitch_vocab,
    duration_vocab,
    label_vocabs,
    source=workdir_lib.path(workdir, workdir_lib.CONFIG_FILE),
  )
  checkpoint_dir = workdir_lib.path(workdir, workdir_lib.CHECKPOINT_DIR)
  if not os.path.isdir(checkpoint_dir):
    raise errors.GenerateError(
      f"no checkpoints in {workdir}: train first (train_main.py "
      f"--workdir={workdir}) until a checkpoint is saved"
    )
  manager = checkpoints.create_manager(
    workdir, max_to_keep=1, keep_best=0, enable_async=False, read_only=True
  )
  try:
    steps = sorted(manager.all_steps())
    if not steps:
      raise errors.GenerateError(
        f"no checkpoints in {checkpoint_dir}: train first until a "
        "checkpoint is saved"
      )
    chosen = _choose_step(workdir, steps, step)
    params = checkpoints.restore_params(
      manager, chosen, model_lib.abstract_params(model)
    )
  finally:
    manager.close()
  return Run(
    workdir,
    config,
    model,
    params,
    chosen,
    pitch_vocab,
    duration_vocab,
    labels=label_vocabs,
  )


def from_model_file(path: str) -> Run:
  """The parameters of a model file (`melodyjax-export`).

  Raises:
    CheckpointError: a missing, damaged or foreign file.
  """
  loaded = model_file.read(path)
  model = create_model(
    loaded.config,
    loaded.pitch_vocab,
    loaded.duration_vocab,
    loaded.labels,
    source=f"{path}: {workdir_lib.CONFIG_FILE}",
  )
  shapes = jax.tree.map(np.shape, model_lib.abstract_params(model))
  if shapes != jax.tree.map(np.shape, loaded.params):
    raise errors.CheckpointError(
      f"{path}: its parameters do not fit its own config (damaged)"
    )
  return Run(
    None,
    loaded.config,
    model,
    loaded.params,
    loaded.step,
    loaded.pitch_vocab,
    loaded.duration_vocab,
    model_path=os.path.abspath(os.path.expanduser(path)),
    labels=loaded.labels,
  )


def load(source: str, default_step: str = "best") -> Run:
  """A `.mjx` file, a workdir, or `WORKDIR:STEP`."""
  if source.endswith(model_file.SUFFIX):
    return from_model_file(source)
  workdir, sep, step = source.rpartition(":")
  if sep and (step.isdigit() or step in ("latest", "best")):
    return from_workdir(workdir, step)
  return from_workdir(source, default_step)
