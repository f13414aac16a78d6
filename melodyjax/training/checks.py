"""Checks of what a user hands to training before anything runs: config
values and the workdir (a folder this user may write, not a file, not a run
of another model), each failure one line naming the field or path. No JAX.
"""

from __future__ import annotations

import errno
import json
import numbers
import os
from collections.abc import Mapping
from typing import Any

import ml_collections

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
LSTM_IMPLS = ("fused", "scan")
DTYPES = ("auto", "float32", "bfloat16", "float16")
DECAYS = ("cosine", "constant")


class ConfigError(Exception):
  """A config value or workdir that cannot be used; the message says why."""


def _is_int(value: Any) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _positive_int(config, group: str, field: str) -> None:
  value = config[group][field]
  if not _is_int(value) or value <= 0:
    raise ConfigError(
      f"config.{group}.{field} must be a positive integer, got {value!r}"
    )


def _number(config, group, field, low, high=None, low_open=False) -> None:
  value = config[group][field]
  ok = _is_number(value) and (value > low if low_open else value >= low)
  if ok and high is not None:
    ok = value <= high
  if not ok:
    bound = f"> {low}" if low_open else f">= {low}"
    if high is not None:
      bound += f" and <= {high}"
    raise ConfigError(
      f"config.{group}.{field} must be a number {bound}, got {value!r}"
    )


def _choice(config, group: str, field: str, choices) -> None:
  value = config[group][field]
  if value not in choices:
    raise ConfigError(
      f"config.{group}.{field} must be one of {choices}, got {value!r}"
    )


def check_config(config: ml_collections.ConfigDict) -> None:
  """Types and ranges of the model, train, checkpoint and data fields.

  The batch sizes and step counts are checked by `train.check_config`
  (they need the device count); the data options by `corpus.CorpusConfig`.

  Raises:
    ConfigError: the first bad field, by its dotted name.
  """
  if not _is_int(config.seed):
    raise ConfigError(f"config.seed must be an integer, got {config.seed!r}")
  for field in ("pitch_embed_dim", "duration_embed_dim", "dense_size"):
    _positive_int(config, "model", field)
  sizes = config.model.lstm_sizes
  if (
    not isinstance(sizes, tuple | list)
    or not sizes
    or not all(_is_int(size) and size > 0 for size in sizes)
  ):
    raise ConfigError(
      "config.model.lstm_sizes must be a tuple of positive integers such "
      f"as (256, 128), got {sizes!r}"
    )
  _number(config, "model", "spatial_dropout", 0.0, 1.0)
  if config.model.spatial_dropout >= 1:
    raise ConfigError("config.model.spatial_dropout must be below 1")
  _choice(config, "model", "lstm_impl", LSTM_IMPLS)
  _choice(config, "model", "dtype", DTYPES)
  _number(config, "train", "learning_rate", 0.0, low_open=True)
  if not _is_int(config.train.warmup_steps) or config.train.warmup_steps < 0:
    raise ConfigError(
      "config.train.warmup_steps must be an integer >= 0, got "
      f"{config.train.warmup_steps!r}"
    )
  _choice(config, "train", "decay", DECAYS)
  _number(config, "train", "end_lr_fraction", 0.0, 1.0)
  _number(config, "train", "weight_decay", 0.0)
  _number(config, "train", "grad_clip_norm", 0.0)
  _positive_int(config, "checkpoint", "max_to_keep")
  keep_best = config.checkpoint.keep_best
  if not _is_int(keep_best) or keep_best < 0:
    raise ConfigError(
      f"config.checkpoint.keep_best must be an integer >= 0, got {keep_best!r}"
    )
  for field in ("midi_dir", "dataset_dir"):
    value = config.data[field]
    if not isinstance(value, str) or not value.strip():
      raise ConfigError(f"config.data.{field} must be a folder path")
  shifts = config.data.transpositions
  if not isinstance(shifts, tuple | list) or not all(map(_is_int, shifts)):
    raise ConfigError(
      "config.data.transpositions must be a tuple of semitones such as "
      f"(-2, -1, 1, 2), got {shifts!r}"
    )


def prepare_workdir(workdir: str) -> str:
  """Creates the workdir if needed and checks that it can be written.

  Returns:
    The absolute path.

  Raises:
    ConfigError: the path is a file, lies below a file, or cannot be
      created or written by this user.
  """
  workdir = os.path.abspath(os.path.expanduser(workdir))
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError(
      f"workdir {workdir} is a file, not a folder: give a folder path"
    )
  try:
    os.makedirs(workdir, exist_ok=True)
  except FileExistsError:
    raise ConfigError(
      f"cannot create workdir {workdir}: part of the path is a file"
    ) from None
  except NotADirectoryError:
    raise ConfigError(
      f"cannot create workdir {workdir}: part of the path is a file"
    ) from None
  except OSError as e:
    raise ConfigError(
      f"cannot create workdir {workdir}: {_reason(e)}; choose a folder you "
      "can write"
    ) from None
  probe = os.path.join(workdir, f".write_test{os.getpid()}")
  try:
    with open(probe, "w"):
      pass
    os.remove(probe)
  except OSError as e:
    raise ConfigError(
      f"cannot write in workdir {workdir}: {_reason(e)}; choose a folder "
      "you can write"
    ) from None
  return workdir


def _reason(error: OSError) -> str:
  if error.errno in (errno.EACCES, errno.EPERM):
    return "permission denied"
  if error.errno == errno.EROFS:
    return "read-only file system"
  return error.strerror or str(error)


# Fields that change the parameters' shapes or meaning: resuming a workdir
# with other values would mix two models.
_MODEL_FIELDS = (
  "pitch_embed_dim",
  "duration_embed_dim",
  "lstm_sizes",
  "dense_size",
)


def check_workdir_config(
  workdir: str, config: ml_collections.ConfigDict
) -> None:
  """Refuses a workdir whose checkpoints come from another model config.

  Training settings (steps, learning rate, ...) may change on resume; the
  model sizes may not. A workdir without checkpoints is not checked.

  Raises:
    ConfigError: names the first differing field and both values.
  """
  checkpoint_dir = os.path.join(workdir, CHECKPOINT_DIR)
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.isdir(checkpoint_dir) or not os.path.exists(path):
    return
  if not any(name.isdigit() for name in os.listdir(checkpoint_dir)):
    return
  try:
    with open(path) as f:
      old = json.load(f)
  except (OSError, ValueError) as e:
    raise ConfigError(
      f"{path} cannot be read ({e}); this workdir has checkpoints, so it "
      "is not overwritten: use a new workdir"
    ) from None
  old_seed = old.get("seed")
  old_batch = old.get("train", {}).get("batch_size")
  if (old_seed, old_batch) != (config.seed, config.train.batch_size):
    # The data order depends on both: resuming with others is another run.
    raise ConfigError(
      f"{workdir} was trained with seed {old_seed} and batch size "
      f"{old_batch}; the config says {config.seed} and "
      f"{config.train.batch_size}: use a new workdir"
    )
  old_model: Mapping[str, Any] = old.get("model", {})
  for field in _MODEL_FIELDS:
    before = old_model.get(field)
    now = config.model[field]
    if isinstance(now, tuple | list):
      now = list(now)
    if before != now:
      raise ConfigError(
        f"workdir {workdir} holds checkpoints of another model: "
        f"config.model.{field} was {before!r} there and is {now!r} now; "
        "use a new workdir or the old value"
      )
