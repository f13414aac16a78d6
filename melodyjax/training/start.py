"""Where a training run starts from: its dataset (built once, by process 0
first), the base run of `config.init_from` and the vocabularies it fixes,
and the train state: fresh, from the base run's parameters, or restored
from the latest readable checkpoint.
"""

from __future__ import annotations

import functools
import os

import jax
import ml_collections

from melodyjax import errors
from melodyjax.data import build
from melodyjax.data import dataset as dataset_lib
from melodyjax.training import checkpoints, parallel, runs
from melodyjax.training import state as state_lib
from melodyjax.training import workdir as workdir_lib


def load_dataset(
  config: ml_collections.ConfigDict, vocabs=None, label_vocabs=None
) -> dataset_lib.Dataset:
  """Builds (process 0 first) or loads the dataset of `config.data`,
  tokenized with `vocabs` (pitch, duration) and `label_vocabs` when
  given."""
  data = config.data
  if jax.process_count() == 1:
    return build.prepare_dataset(data, vocabs=vocabs, label_vocabs=label_vocabs)
  from jax.experimental import multihost_utils

  if jax.process_index() == 0:
    build.prepare_dataset(
      data, progress=False, vocabs=vocabs, label_vocabs=label_vocabs
    )
  multihost_utils.sync_global_devices("dataset built")
  return build.prepare_dataset(
    data, progress=False, vocabs=vocabs, label_vocabs=label_vocabs
  )


def base_run(config: ml_collections.ConfigDict) -> runs.Run | None:
  """The run `config.init_from` names (its model must be this config's)."""
  if not config.init_from:
    return None
  base = _load_source("init_from", config.init_from)
  workdir_lib.check_same_model(
    base.config.model.to_dict(),
    config,
    f"config.init_from={config.init_from} has another model",
    "fine-tuning keeps the base run's model",
  )
  return base


def _load_source(field: str, source: str) -> runs.Run:
  """`runs.load`, its errors naming the config field."""
  try:
    return runs.load(os.path.expanduser(source))
  except (errors.GenerateError, errors.CheckpointError) as e:
    raise type(e)(f"config.{field}: {e}") from None


def fixed_vocabs(config, base: runs.Run | None):
  """The fixed vocabularies (pitch, duration) and labels of
  `config.data.vocab_from`, or (None, None)."""
  source = config.data.vocab_from
  if not source:
    return None, None
  if base is None or source != config.init_from:
    base = _load_source("data.vocab_from", source)
  return (base.pitch_vocab, base.duration_vocab), base.labels


def carry_state(config: ml_collections.ConfigDict) -> bool:
  """`train.carry_state` (False in configs written before it existed)."""
  return bool(config.train.get("carry_state", False))


def init_or_restore(config, model, tx, runner, manager, base, announce):
  """The latest readable checkpoint's train state, else a fresh one (from
  the base run's parameters when fine-tuning)."""
  init_key, _ = jax.random.split(jax.random.key(config.seed))
  create = functools.partial(
    state_lib.create_train_state,
    model=model,
    tx=tx,
    seq_len=config.train.seq_len,
    ema=state_lib.ema_settings(config.train)[0] > 0,
    carry_rows=config.train.batch_size if carry_state(config) else 0,
  )
  replicated = parallel.replicated_sharding(runner.mesh)
  shapes = jax.eval_shape(create, init_key)
  shardings = parallel.state_shardings(runner.mesh, shapes)
  if checkpoints.latest_step(manager) is None:
    state = jax.jit(create, out_shardings=shardings)(init_key)
    if base is None:
      return state
    announce(f"fine-tuning from {base.describe()}")
    # The base run's parameters of inference: its average, if it has one.
    params = jax.device_put(base.params, replicated)
    return state.replace(
      params=params,
      opt_state=tx.init(params),
      ema=None if state.ema is None else state_lib.start_ema(params),
    )
  abstract = jax.tree.map(
    lambda x, sharding: jax.ShapeDtypeStruct(
      x.shape, x.dtype, sharding=sharding
    ),
    shapes,
    shardings,
  )
  state, data_state, step, skipped = checkpoints.restore_latest(
    manager, abstract
  )
  workdir = os.path.dirname(os.fspath(manager.directory))
  lines = [*skipped, f"resuming from step {step} ({manager.directory}/{step})"]
  if state.ema is not None and not checkpoints.has_ema(
    os.path.join(os.fspath(manager.directory), str(step))
  ):
    lines.append(
      "its checkpoint has no parameter average: config.train.ema_decay "
      "starts one at its parameters"
    )
  announce("\n".join(lines))
  workdir_lib.check_same_data(
    workdir, data_state["seed"], data_state["batch_size"], config
  )
  return state
