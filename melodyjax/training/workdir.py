"""The workdir: every file of a run, named here and written here. No JAX.

  WORKDIR/config.json             the resolved config (`write_config`)
  WORKDIR/vocab_pitch.json        the pitch vocabulary
  WORKDIR/vocab_duration.json     the duration vocabulary
  WORKDIR/vocab_labels.json       the label vocabularies (`data.labels`)
  WORKDIR/checkpoints/<step>/     Orbax checkpoints (`training.checkpoints`)
  WORKDIR/checkpoints_damaged/    damaged checkpoints moved aside on resume
  WORKDIR/metrics.jsonl           one JSON object per logged step
  WORKDIR/tensorboard/            TensorBoard event files
  WORKDIR/train.lock              held by the training run (an flock)
  WORKDIR/samples/<step>/         melodies sampled at a step
  WORKDIR/audition.html           the audition page
  WORKDIR/evaluation.json, report.md   written by the evaluation

Generation needs only the config, the vocabularies and a checkpoint.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

import ml_collections

from melodyjax import errors, files
from melodyjax.data import labels as labels_lib
from melodyjax.model import config as model_config_lib
from melodyjax.music import tokens

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
DAMAGED_DIR = "checkpoints_damaged"
LOCK_FILE = "train.lock"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
SAMPLES_DIR = "samples"
PAGE_FILE = "audition.html"
EVALUATION_FILE = "evaluation.json"
REPORT_FILE = "report.md"


def path(workdir: str, name: str, *parts: str) -> str:
  """`workdir/name/parts...`; `name` is one of this module's file names."""
  return os.path.join(workdir, name, *parts)


def vocab_path(workdir: str, stream: str) -> str:
  return os.path.join(workdir, f"vocab_{stream}.json")


def samples_dir(workdir: str, step: int) -> str:
  return path(workdir, SAMPLES_DIR, str(step))


def is_inside(folder: str, workdir: str) -> bool:
  """Whether `folder` lies inside `workdir`."""
  return os.path.abspath(folder).startswith(os.path.join(workdir, ""))


# ------------------------------------------------------------ the folder


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
    raise errors.ConfigError(
      f"workdir {workdir} is a file, not a folder: give a folder path"
    )
  try:
    os.makedirs(workdir, exist_ok=True)
  except (FileExistsError, NotADirectoryError):
    raise errors.ConfigError(
      f"cannot create workdir {workdir}: part of the path is a file"
    ) from None
  except OSError as e:
    raise errors.ConfigError(
      f"cannot create workdir {workdir}: {files.reason(e)}; choose a "
      "folder you can write"
    ) from None
  probe = os.path.join(workdir, f".write_test{os.getpid()}")
  try:
    with open(probe, "w"):
      pass
    os.remove(probe)
  except OSError as e:
    raise errors.ConfigError(
      f"cannot write in workdir {workdir}: {files.reason(e)}; choose a folder "
      "you can write"
    ) from None
  return workdir


@contextlib.contextmanager
def lock_workdir(workdir: str) -> Iterator[None]:
  """Holds an exclusive lock on `workdir/train.lock` for a run's life.

  The lock is an `fcntl.flock` on an open file: the OS drops it when the
  process ends in any way (SIGKILL included), so it is never stale. The
  file stays (deleting it would race with a run taking it).

  Raises:
    CheckpointError: another process holds the lock.
  """
  fd = os.open(path(workdir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
    os.close(fd)
    raise errors.CheckpointError(
      f"workdir {workdir} is in use by another training run"
      + (f" (pid {holder})" if holder.isdigit() else "")
      + "; wait for it to end or use another workdir"
    ) from None
  try:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    yield
  finally:
    os.close(fd)  # releases the lock


# --------------------------------------------------- config and vocabularies


def write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Writes the resolved config as `workdir/config.json`."""
  files.write_json(
    path(workdir, CONFIG_FILE), config.to_dict(), indent=2, sort_keys=True
  )


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """Reads `workdir/config.json` back as a locked ConfigDict."""
  config_path = path(workdir, CONFIG_FILE)
  try:
    with open(config_path) as f:
      data = json.load(f)
  except FileNotFoundError:
    raise errors.CheckpointError(
      f"{config_path} not found: not a melodyjax workdir"
    ) from None
  except ValueError as e:
    raise errors.CheckpointError(
      f"{config_path}: not valid JSON ({e})"
    ) from None
  if not isinstance(data, dict):
    raise errors.CheckpointError(
      f"{config_path}: not a run's config (a JSON {type(data).__name__}, "
      "not an object)"
    )
  config = ml_collections.ConfigDict(tuples(data))
  config.lock()
  return config


def tuples(value):
  """JSON lists back to tuples, as configs write them."""
  if isinstance(value, dict):
    return {k: tuples(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(tuples(v) for v in value)
  return value


def write_vocabs(
  workdir: str,
  pitch_vocab: tokens.Vocab,
  duration_vocab: tokens.Vocab,
  label_vocabs: labels_lib.Labels | None = None,
) -> None:
  pitch_vocab.save(vocab_path(workdir, "pitch"))
  duration_vocab.save(vocab_path(workdir, "duration"))
  if label_vocabs is not None:
    label_vocabs.save(os.path.join(workdir, labels_lib.FILE))


def read_labels(workdir: str) -> labels_lib.Labels:
  """The workdir's label vocabularies (none known for a run from before
  they existed)."""
  label_path = os.path.join(workdir, labels_lib.FILE)
  if not os.path.exists(label_path):
    return labels_lib.empty()
  try:
    return labels_lib.Labels.load(label_path)
  except (ValueError, KeyError, TypeError) as e:
    raise errors.CheckpointError(f"bad labels in {label_path}: {e}") from None


def read_vocabs(workdir: str) -> tuple[tokens.Vocab, tokens.Vocab]:
  """The workdir's (pitch, duration) vocabularies."""
  vocabs = []
  for stream in tokens.STREAMS:
    vocab_file = vocab_path(workdir, stream)
    try:
      vocabs.append(tokens.Vocab.load(vocab_file))
    except FileNotFoundError as e:
      raise errors.CheckpointError(f"{e.filename} not found") from None
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
      raise errors.CheckpointError(
        f"bad vocabulary in {vocab_file}: {type(e).__name__}: {e}"[:300]
      ) from None
  return vocabs[0], vocabs[1]


# ------------------------------------------------------- resuming a run


def check_vocabs(
  workdir: str,
  pitch_vocab: tokens.Vocab,
  duration_vocab: tokens.Vocab,
  label_vocabs: labels_lib.Labels | None = None,
) -> None:
  """Refuses a workdir whose vocabularies differ from the dataset's.

  Raises:
    TrainingError: names the differing vocabulary file.
  """
  label_path = os.path.join(workdir, labels_lib.FILE)
  if label_vocabs is not None and os.path.exists(label_path):
    old = read_labels(workdir)
    if any(old[k].labels != label_vocabs[k].labels for k in labels_lib.KINDS):
      raise errors.TrainingError(
        f"{label_path} differs from the dataset's labels: this workdir was "
        "trained on other data; use a new workdir"
      )
  for stream, vocab in (("pitch", pitch_vocab), ("duration", duration_vocab)):
    vocab_file = vocab_path(workdir, stream)
    if os.path.exists(vocab_file):
      old = tokens.Vocab.load(vocab_file)
      if old.tokens != vocab.tokens:
        raise errors.TrainingError(
          f"{vocab_file} differs from the dataset's {stream} vocabulary: "
          "this workdir was trained on other data; use a new workdir"
        )


def check_same_data(
  workdir: str, old_seed: Any, old_batch: Any, config: ml_collections.ConfigDict
) -> None:
  """Refuses to resume with another seed or batch size (another data order).

  Raises:
    ConfigError: names both values.
  """
  if (old_seed, old_batch) != (config.seed, config.train.batch_size):
    raise errors.ConfigError(
      f"{workdir} was trained with seed {old_seed} and batch size "
      f"{old_batch}; the config says {config.seed} and "
      f"{config.train.batch_size}: use a new workdir"
    )


def has_checkpoints(workdir: str) -> bool:
  folder = path(workdir, CHECKPOINT_DIR)
  return os.path.isdir(folder) and any(
    name.isdigit() for name in os.listdir(folder)
  )


def check_resumable(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Refuses a workdir whose checkpoints come from another model or data.

  Training settings (steps, learning rate, ...) may change on resume; the
  model sizes, the seed and the batch size may not. A workdir without
  checkpoints is not checked.

  Raises:
    ConfigError: names the first differing field and both values.
  """
  config_path = path(workdir, CONFIG_FILE)
  if not has_checkpoints(workdir) or not os.path.exists(config_path):
    return
  try:
    with open(config_path) as f:
      old = json.load(f)
  except (OSError, ValueError) as e:
    raise errors.ConfigError(
      f"{config_path} cannot be read ({e}); this workdir has checkpoints, "
      "so it is not overwritten: use a new workdir"
    ) from None
  check_same_data(
    workdir, old.get("seed"), old.get("train", {}).get("batch_size"), config
  )
  old_carry = old.get("train", {}).get("carry_state", False)
  new_carry = config.train.get("carry_state", False)
  if old_carry != new_carry:
    raise errors.ConfigError(
      f"workdir {workdir} was trained with config.train.carry_state="
      f"{old_carry} and the config says {new_carry} (another batch layout "
      "and train state): use a new workdir or the old value"
    )
  check_same_model(
    old.get("model", {}),
    config,
    f"workdir {workdir} holds checkpoints of another model",
    "use a new workdir or the old value",
  )


def check_same_model(
  old_model: Mapping[str, Any],
  config: ml_collections.ConfigDict,
  problem: str,
  remedy: str,
) -> None:
  """Refuses a config whose model sizes differ from `old_model`'s.

  Raises:
    ConfigError: `problem: config.model.FIELD was X there and is Y now;
      remedy`.
  """
  for field in model_config_lib.SHAPE_FIELDS:
    default = model_config_lib.default(field)
    before = old_model.get(field, default)
    now = config.model.get(field, default)
    if isinstance(before, tuple | list):
      before = list(before)
    if isinstance(now, tuple | list):
      now = list(now)
    if before != now:
      raise errors.ConfigError(
        f"{problem}: config.model.{field} was {before!r} there and is "
        f"{now!r} now; {remedy}"
      )
