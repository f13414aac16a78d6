"""Orbax checkpoints and the workdir files that make a run self-contained.

A workdir holds `config.json` (the resolved config), `vocab_pitch.json`,
`vocab_duration.json`, `checkpoints/<step>/` and the logs. Generation needs
nothing else.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging

from melodyjax.music import tokens

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
DAMAGED_DIR = "checkpoints_damaged"
LOCK_FILE = "train.lock"
BEST_METRIC = "eval_loss"


class CheckpointError(Exception):
  """A workdir or checkpoint that cannot be used; the message says why."""


class DamagedCheckpointError(CheckpointError):
  """A checkpoint whose files are missing, truncated or unreadable."""


@contextlib.contextmanager
def lock_workdir(workdir: str) -> Iterator[None]:
  """Holds an exclusive lock on `workdir/train.lock` for a run's life.

  The lock is an `fcntl.flock` on an open file: the OS drops it when the
  process ends in any way (SIGKILL included), so it is never stale. The
  file stays (deleting it would race with a run taking it).

  Raises:
    CheckpointError: another process holds the lock.
  """
  path = os.path.join(workdir, LOCK_FILE)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
    os.close(fd)
    raise CheckpointError(
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


def create_manager(
  workdir: str,
  *,
  max_to_keep: int,
  keep_best: int,
  enable_async: bool = True,
  read_only: bool = False,
) -> ocp.CheckpointManager:
  """A manager for `workdir/checkpoints` keeping the last and the best.

  Args:
    workdir: the run's folder.
    max_to_keep: newest checkpoints always kept (the latest is never
      deleted for being worse).
    keep_best: checkpoints with the lowest validation loss also kept.
    enable_async: save in a background thread.
    read_only: only restore (generation); never creates or deletes.
  """
  policies = [ocp.checkpoint_managers.LatestN(n=max(1, max_to_keep))]
  if keep_best > 0:
    policies.append(
      ocp.checkpoint_managers.BestN(
        get_metric_fn=lambda metrics: -metrics[BEST_METRIC],
        n=keep_best,
        keep_checkpoints_without_metrics=False,
      )
    )
  options = ocp.CheckpointManagerOptions(
    preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(policies),
    enable_async_checkpointing=enable_async,
    # Not orbax's read_only, which warns on every restore: nothing is saved
    # through this manager, so nothing is ever deleted either.
    create=not read_only,
    # A write cut by a kill leaves a tmp folder; the next run (which holds
    # the workdir lock, so no other run is writing) removes it.
    cleanup_tmp_directories=not read_only,
  )
  return ocp.CheckpointManager(
    os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR), options=options
  )


def save(
  manager: ocp.CheckpointManager,
  step: int,
  state: Any,
  data_state: Mapping[str, int],
  metrics: Mapping[str, float] | None = None,
) -> None:
  """Saves the train state and the data iterator position at `step`."""
  manager.save(
    step,
    args=ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      data=ocp.args.JsonSave(dict(data_state)),
    ),
    metrics=dict(metrics) if metrics else None,
    force=True,
  )


def restore(manager: ocp.CheckpointManager, step: int, abstract_state: Any):
  """Restores (state, data position) into the shapes of `abstract_state`.

  Raises:
    CheckpointError: no checkpoint at `step`, or it does not match the model.
  """
  if step not in manager.all_steps():
    raise CheckpointError(
      f"no checkpoint at step {step} in {manager.directory} (have: "
      f"{sorted(manager.all_steps()) or 'none'})"
    )
  _check_shapes(
    os.path.join(manager.directory, str(step), "state"), abstract_state
  )
  # Arrays without a sharding are replicated over this process's devices, so
  # a checkpoint written on 4 devices restores on 1 (and the other way).
  replicated = jax.sharding.NamedSharding(
    jax.sharding.Mesh(jax.devices(), ("data",)), jax.sharding.PartitionSpec()
  )
  abstract_state = jax.tree.map(
    lambda x: (
      x
      if getattr(x, "sharding", None) is not None
      else jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated)
    ),
    abstract_state,
  )
  try:
    restored = manager.restore(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        data=ocp.args.JsonRestore(),
      ),
    )
  except Exception as e:  # noqa: BLE001 - orbax raises bare Exception too
    # The shapes matched above, so a failure here is a damaged file.
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e)
    first = str(first).split(" See full TensorStore details")[0][:200]
    raise DamagedCheckpointError(
      f"checkpoint {manager.directory}/{step} cannot be read ({first})"
    ) from None
  data = restored["data"]
  if not isinstance(data, dict) or not {"step", "seed"} <= set(data):
    raise DamagedCheckpointError(
      f"checkpoint {manager.directory}/{step} has no data position"
    )
  return restored["state"], data


def latest_step(manager: ocp.CheckpointManager) -> int | None:
  """The newest step, or None for a workdir without checkpoints.

  Raises:
    CheckpointError: the folder holds step folders that orbax does not
      list (damaged metadata): never a silent fresh start over them.
  """
  latest = manager.latest_step()
  if latest is None:
    directory = os.fspath(manager.directory)
    found = (
      sorted(n for n in os.listdir(directory) if n.isdigit())
      if os.path.isdir(directory)
      else []
    )
    if found:
      raise CheckpointError(
        f"{directory} holds step folders {found} that cannot be read as "
        "checkpoints; move them away to start afresh"
      )
  return latest


def restore_latest(
  manager: ocp.CheckpointManager, abstract_state: Any
) -> tuple[Any, dict, int]:
  """Restores the newest readable checkpoint, skipping damaged ones.

  A damaged checkpoint (missing or truncated files) is moved to
  `workdir/checkpoints_damaged/<step>-<time>` with a warning, so that its
  step can be saved again and nothing is deleted. A checkpoint of another
  model is an error, not skipped.

  Returns:
    (state, data position, step).

  Raises:
    CheckpointError: no checkpoint is readable, or one is of another model.
  """
  directory = os.fspath(manager.directory)
  damaged: list[tuple[int, str]] = []
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      state, data = restore(manager, step, abstract_state)
    except DamagedCheckpointError as e:
      damaged.append((step, str(e)))
      continue
    # Only once a good one is found: with none, a later run must not start
    # afresh over the damaged ones.
    for bad_step, problem in damaged:
      if jax.process_index() != 0:  # process 0 moves; all skip the same
        continue
      moved = _move_aside(directory, bad_step)
      logging.warning(
        "%s: skipped, moved to %s; resuming from step %d",
        problem,
        moved,
        step,
      )
    if damaged:
      manager.reload()
    return state, data, step
  raise CheckpointError(
    f"no readable checkpoint in {directory} ("
    + "; ".join(problem for _, problem in damaged)
    + "): use a new workdir, or move the checkpoints away to start afresh"
  )


def _move_aside(directory: str, step: int) -> str:
  target_dir = os.path.join(os.path.dirname(directory), DAMAGED_DIR)
  os.makedirs(target_dir, exist_ok=True)
  target = os.path.join(target_dir, f"{step}-{time.strftime('%Y%m%d-%H%M%S')}")
  while os.path.exists(target):
    target += "x"
  shutil.move(os.path.join(directory, str(step)), target)
  return target


def _path_name(path) -> str:
  parts = []
  for key in path:
    for attribute in ("key", "name", "idx"):
      if hasattr(key, attribute):
        parts.append(str(getattr(key, attribute)))
        break
  return "/".join(parts)


def _check_shapes(state_dir: str, abstract_state: Any) -> None:
  """Compares stored array shapes with the model's before reading any data.

  A mismatch (other vocabulary or model sizes) becomes a one-line error
  naming the first differing array, instead of a failure deep in an async
  read.
  """
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)  # orbax warns of a missing step file
  try:
    metadata = ocp.StandardCheckpointer().metadata(state_dir).item_metadata
  except (OSError, ValueError, KeyError, TypeError) as e:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e)
    raise DamagedCheckpointError(
      f"cannot read checkpoint {state_dir} ({first})"
    ) from None
  finally:
    logging.set_verbosity(verbosity)
  stored = {
    _path_name(path): tuple(leaf.shape)
    for path, leaf in jax.tree_util.tree_flatten_with_path(metadata)[0]
    if hasattr(leaf, "shape")
  }
  if not stored:
    raise DamagedCheckpointError(
      f"cannot read checkpoint {state_dir} (no array metadata)"
    )
  for path, leaf in jax.tree_util.tree_flatten_with_path(abstract_state)[0]:
    name = _path_name(path)
    if name not in stored:
      raise CheckpointError(
        f"checkpoint {state_dir} has no array {name}: it was written by a "
        "different model or optimizer"
      )
    if stored[name] != tuple(leaf.shape):
      raise CheckpointError(
        f"checkpoint {state_dir} does not match the model: {name} is "
        f"{stored[name]} there but {tuple(leaf.shape)} here (another "
        "vocabulary or model size)"
      )


def write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Writes the resolved config as `workdir/config.json`."""
  _write_json(os.path.join(workdir, CONFIG_FILE), config.to_dict())


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """Reads `workdir/config.json` back as a locked ConfigDict."""
  path = os.path.join(workdir, CONFIG_FILE)
  try:
    with open(path) as f:
      data = json.load(f)
  except FileNotFoundError:
    raise CheckpointError(
      f"{path} not found: not a melodyjax workdir"
    ) from None
  except ValueError as e:
    raise CheckpointError(f"{path}: not valid JSON ({e})") from None
  config = ml_collections.ConfigDict(_tuples(data))
  config.lock()
  return config


def _tuples(value):
  """JSON lists back to tuples, as configs write them."""
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  return value


def vocab_path(workdir: str, stream: str) -> str:
  return os.path.join(workdir, f"vocab_{stream}.json")


def write_vocabs(
  workdir: str, pitch_vocab: tokens.Vocab, duration_vocab: tokens.Vocab
) -> None:
  pitch_vocab.save(vocab_path(workdir, "pitch"))
  duration_vocab.save(vocab_path(workdir, "duration"))


def read_vocabs(workdir: str) -> tuple[tokens.Vocab, tokens.Vocab]:
  """The workdir's (pitch, duration) vocabularies."""
  try:
    return (
      tokens.Vocab.load(vocab_path(workdir, "pitch")),
      tokens.Vocab.load(vocab_path(workdir, "duration")),
    )
  except FileNotFoundError as e:
    raise CheckpointError(f"{e.filename} not found") from None
  except (ValueError, KeyError) as e:
    raise CheckpointError(f"bad vocabulary in {workdir}: {e}") from None


def _write_json(path: str, data: Any) -> None:
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(data, f, indent=2, sort_keys=True)
    f.write("\n")
  os.replace(tmp, path)
