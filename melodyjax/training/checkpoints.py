"""Orbax checkpoints: parameters, optimizer state and data position per step.

  checkpoints/<step>/params     the model parameters (all that sampling reads)
  checkpoints/<step>/optimizer  {"step", "opt_state"}: what resuming adds
                                (and "carry", the carried LSTM state of
                                `train.carry_state`)
  checkpoints/<step>/data       the batch iterator's position (JSON)
  checkpoints/<step>/ema        the parameters' moving average, when
                                `train.ema_decay` is on

Parameters are an item of their own, so generation restores them into the
shapes of `eval_shape(model.init)` without building an optimizer. The
parameters of inference (`restore_params`, which every reader of a run
uses) are the average where a checkpoint has one.
Checkpoints written before this layout hold one `state` item (step,
parameters and optimizer state together); training resumes from them and
sampling reads their parameters.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from absl import logging

from melodyjax import errors
from melodyjax.training import workdir as workdir_lib

PARAMS = "params"
OPTIMIZER = "optimizer"
DATA = "data"
EMA = "ema"
LEGACY_STATE = "state"
BEST_METRIC = "eval_loss"  # orbax's metric name for `keep_best`


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
    workdir_lib.path(os.path.abspath(workdir), workdir_lib.CHECKPOINT_DIR),
    options=options,
  )


def save(
  manager: ocp.CheckpointManager,
  step: int,
  state: Any,
  data_state: Mapping[str, int],
  metrics: Mapping[str, float] | None = None,
) -> None:
  """Saves a `TrainState` (its average too, if any) and the data iterator
  position at `step`."""
  items = {
    PARAMS: ocp.args.StandardSave(state.params),
    OPTIMIZER: ocp.args.StandardSave(_optimizer_item(state)),
    DATA: ocp.args.JsonSave(dict(data_state)),
  }
  if state.ema is not None:
    items[EMA] = ocp.args.StandardSave(state.ema)
  manager.save(
    step,
    args=ocp.args.Composite(**items),
    metrics=dict(metrics) if metrics else None,
    force=True,
  )


def _optimizer_item(state: Any) -> dict[str, Any]:
  """What resuming adds to the parameters: step, optimizer state, and the
  carried LSTM state when there is one."""
  item = {"step": state.step, "opt_state": state.opt_state}
  if getattr(state, "carry", None) is not None:
    item["carry"] = state.carry
  return item


def _replicated(abstract: Any) -> Any:
  """Arrays without a sharding replicated over this process's devices, so
  that a checkpoint written on 4 devices restores on 1 (and the other way).
  """
  sharding = jax.sharding.NamedSharding(
    jax.sharding.Mesh(jax.devices(), ("data",)), jax.sharding.PartitionSpec()
  )
  return jax.tree.map(
    lambda x: (
      x
      if getattr(x, "sharding", None) is not None
      else jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)
    ),
    abstract,
  )


def _step_dir(manager: ocp.CheckpointManager, step: int) -> str:
  if step not in manager.all_steps():
    raise errors.CheckpointError(
      f"no checkpoint at step {step} in {manager.directory} (have: "
      f"{sorted(manager.all_steps()) or 'none'})"
    )
  return os.path.join(os.fspath(manager.directory), str(step))


def has_ema(step_dir: str) -> bool:
  """Whether the checkpoint in `step_dir` holds a parameter average."""
  return os.path.isdir(os.path.join(step_dir, EMA))


def _is_legacy(step_dir: str) -> bool:
  return not os.path.isdir(os.path.join(step_dir, PARAMS)) and os.path.isdir(
    os.path.join(step_dir, LEGACY_STATE)
  )


def _restore_items(manager, step: int, step_dir: str, abstract: dict) -> dict:
  """Restores the named items (their shapes checked first)."""
  for item, target in abstract.items():
    if target is not None:
      _check_shapes(os.path.join(step_dir, item), target)
  args = {
    item: (
      ocp.args.JsonRestore()
      if target is None
      else ocp.args.StandardRestore(_replicated(target))
    )
    for item, target in abstract.items()
  }
  try:
    return manager.restore(step, args=ocp.args.Composite(**args))
  except Exception as e:  # noqa: BLE001 - orbax raises bare Exception too
    # The shapes matched above, so a failure here is a damaged file.
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e)
    first = str(first).split(" See full TensorStore details")[0][:200]
    raise errors.DamagedCheckpointError(
      f"checkpoint {step_dir} cannot be read ({first})"
    ) from None


def restore(manager: ocp.CheckpointManager, step: int, abstract_state: Any):
  """Restores (train state, data position) into `abstract_state`'s shapes.

  A state with an average (`abstract_state.ema`) restores the checkpoint's,
  or, from a checkpoint without one (EMA switched on at resume), starts it
  at the restored parameters; a state without one ignores a stored one.

  Args:
    manager: from `create_manager`.
    step: a saved step.
    abstract_state: a `TrainState` of `jax.ShapeDtypeStruct`s.

  Raises:
    CheckpointError: no checkpoint at `step`, or it does not match the
      model; DamagedCheckpointError: its files cannot be read.
  """
  step_dir = _step_dir(manager, step)
  if _is_legacy(step_dir):
    restored = _restore_items(
      manager,
      step,
      step_dir,
      {LEGACY_STATE: abstract_state.replace(ema=None, carry=None), DATA: None},
    )
    state = restored[LEGACY_STATE]
  else:
    optimizer = _optimizer_item(abstract_state)
    items = {PARAMS: abstract_state.params, OPTIMIZER: optimizer, DATA: None}
    if abstract_state.ema is not None and has_ema(step_dir):
      items[EMA] = abstract_state.ema
    restored = _restore_items(manager, step, step_dir, items)
    state = abstract_state.replace(
      step=restored[OPTIMIZER]["step"],
      params=restored[PARAMS],
      opt_state=restored[OPTIMIZER]["opt_state"],
      ema=restored[EMA] if EMA in items else None,
      carry=restored[OPTIMIZER].get("carry"),
    )
  if abstract_state.ema is not None and state.ema is None:
    state = state.replace(ema=jax.tree.map(jnp.copy, state.params))
  data = restored[DATA]
  if not isinstance(data, dict) or not {"step", "seed"} <= set(data):
    raise errors.DamagedCheckpointError(
      f"checkpoint {step_dir} has no data position"
    )
  return state, data


def restore_params(
  manager: ocp.CheckpointManager, step: int, abstract_params: Any
) -> Any:
  """Restores only the parameters of inference at `step`: the moving
  average where the checkpoint has one (`train.ema_decay`), else the
  parameters. Every reader of a run (sampling, evaluation, export, serving,
  fine-tuning) gets them here.

  Args:
    manager: from `create_manager`.
    step: a saved step.
    abstract_params: `jax.eval_shape` of the model's parameters.

  Raises:
    CheckpointError, DamagedCheckpointError: as `restore`.
  """
  step_dir = _step_dir(manager, step)
  if not _is_legacy(step_dir):
    item = EMA if has_ema(step_dir) else PARAMS
    return _restore_items(manager, step, step_dir, {item: abstract_params})[
      item
    ]
  # A legacy checkpoint: its whole state, shaped by its own metadata (the
  # optimizer state is read and dropped), its parameters checked.
  stored = _stored_tree(os.path.join(step_dir, LEGACY_STATE))
  _check_shapes(os.path.join(step_dir, LEGACY_STATE), {PARAMS: abstract_params})
  restored = _restore_items(manager, step, step_dir, {LEGACY_STATE: stored})
  return restored[LEGACY_STATE][PARAMS]


def _stored_tree(item_dir: str) -> Any:
  """The item's arrays as `jax.ShapeDtypeStruct`s, from its metadata."""
  metadata = _metadata(item_dir)
  return jax.tree.map(
    lambda leaf: jax.ShapeDtypeStruct(tuple(leaf.shape), leaf.dtype),
    metadata,
    is_leaf=lambda leaf: hasattr(leaf, "shape") and hasattr(leaf, "dtype"),
  )


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
      raise errors.CheckpointError(
        f"{directory} holds step folders {found} that cannot be read as "
        "checkpoints; move them away to start afresh"
      )
  return latest


def restore_latest(
  manager: ocp.CheckpointManager, abstract_state: Any
) -> tuple[Any, dict, int, list[str]]:
  """Restores the newest readable checkpoint, skipping damaged ones.

  A damaged checkpoint (missing or truncated files) is moved to
  `workdir/checkpoints_damaged/<step>-<time>`, so that its step can be
  saved again and nothing is deleted. A checkpoint of another model is an
  error, not skipped.

  Returns:
    (state, data position, step, one line per damaged checkpoint skipped:
    its step, what is wrong and where it was moved).

  Raises:
    CheckpointError: no checkpoint is readable, or one is of another model.
  """
  directory = os.fspath(manager.directory)
  damaged: list[tuple[int, str]] = []
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      state, data = restore(manager, step, abstract_state)
    except errors.DamagedCheckpointError as e:
      damaged.append((step, str(e)))
      continue
    # Only once a good one is found: with none, a later run must not start
    # afresh over the damaged ones.
    skipped = []
    for bad_step, problem in damaged:
      line = f"skipped damaged checkpoint at step {bad_step}: {problem}"
      if jax.process_index() == 0:  # process 0 moves; all skip the same
        line += f"; moved to {_move_aside(directory, bad_step)}"
      skipped.append(line)
    if damaged:
      manager.reload()
    return state, data, step, skipped
  raise errors.CheckpointError(
    f"no readable checkpoint in {directory} ("
    + "; ".join(problem for _, problem in damaged)
    + "): use a new workdir, or move the checkpoints away to start afresh"
  )


def _move_aside(directory: str, step: int) -> str:
  target_dir = workdir_lib.path(
    os.path.dirname(directory), workdir_lib.DAMAGED_DIR
  )
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


def _metadata(item_dir: str) -> Any:
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)  # orbax warns of a missing step file
  try:
    return ocp.StandardCheckpointer().metadata(item_dir).item_metadata
  except (OSError, ValueError, KeyError, TypeError) as e:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e)
    raise errors.DamagedCheckpointError(
      f"cannot read checkpoint {item_dir} ({first})"
    ) from None
  finally:
    logging.set_verbosity(verbosity)


def _check_shapes(item_dir: str, abstract: Any) -> None:
  """Compares stored array shapes with the model's before reading any data.

  A mismatch (other vocabulary or model sizes) becomes a one-line error
  naming the first differing array, instead of a failure deep in an async
  read.
  """
  stored = {
    _path_name(path): tuple(leaf.shape)
    for path, leaf in jax.tree_util.tree_flatten_with_path(_metadata(item_dir))[
      0
    ]
    if hasattr(leaf, "shape")
  }
  if not stored:
    raise errors.DamagedCheckpointError(
      f"cannot read checkpoint {item_dir} (no array metadata)"
    )
  for path, leaf in jax.tree_util.tree_flatten_with_path(abstract)[0]:
    name = _path_name(path)
    if name not in stored:
      raise errors.CheckpointError(
        f"checkpoint {item_dir} has no array {name}: it was written by a "
        "different model or optimizer"
      )
    if stored[name] != tuple(leaf.shape):
      raise errors.CheckpointError(
        f"checkpoint {item_dir} does not match the model: {name} is "
        f"{stored[name]} there but {tuple(leaf.shape)} here (another "
        "vocabulary or model size)"
      )
