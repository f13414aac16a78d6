"""Loss, train and eval steps, and the training loop.

The step body is written once over a named `data` axis: it computes the
local sums of a shard, `psum`s counts, gradients and metrics, and applies
the update. `train.parallel = 'jit'` runs it as `jax.shard_map` under
`jax.jit` on a mesh with NamedSharding (the default); `'pmap'` runs the same
body under `jax.pmap`.
"""

from __future__ import annotations

import functools
import os
import signal
import time
from collections.abc import Mapping
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from melodyjax.data import build
from melodyjax.data import dataset as dataset_lib
from melodyjax.data import windows as windows_lib
from melodyjax.listening import hook, page
from melodyjax.model import model as model_lib
from melodyjax.music import tokens
from melodyjax.training import checkpoints, checks, parallel
from melodyjax.training import metrics as metrics_lib
from melodyjax.training import state as state_lib
from melodyjax.training import steps as steps_lib


class TrainingError(Exception):
  """Training cannot go on; the message says why and what was kept."""


def check_config(config: ml_collections.ConfigDict) -> None:
  """Config values that jit would only reject deep inside; named by field."""
  train = config.train
  if train.objective not in windows_lib.OBJECTIVES:
    raise TrainingError(
      f"config.train.objective must be one of {windows_lib.OBJECTIVES}, got "
      f"{train.objective!r}"
    )
  if train.parallel not in steps_lib.PARALLEL_MODES:
    raise TrainingError(
      f"config.train.parallel must be one of {steps_lib.PARALLEL_MODES}, got "
      f"{train.parallel!r}"
    )
  devices = jax.device_count()
  for field, value in (
    ("train.batch_size", train.batch_size),
    ("eval.batch_size", config.eval.batch_size),
  ):
    if value <= 0 or value % devices:
      raise TrainingError(
        f"config.{field}={value} must be a positive multiple of the "
        f"{devices} devices"
      )
  for field in (
    "num_train_steps",
    "log_every_steps",
    "eval_every_steps",
    "checkpoint_every_steps",
    "seq_len",
  ):
    if train[field] <= 0:
      raise TrainingError(f"config.train.{field} must be positive")
  hook.check_config(config)


def load_dataset(config: ml_collections.ConfigDict) -> dataset_lib.Dataset:
  """Builds (process 0 first) or loads the dataset of `config.data`."""
  data = config.data
  midi_dir = os.path.expanduser(data.midi_dir)
  dataset_dir = os.path.expanduser(data.dataset_dir)
  corpus_config = dataset_lib.CorpusConfig.from_config(data)
  if jax.process_index() == 0:
    _convert_esac_if_missing(midi_dir)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

    if jax.process_index() == 0:
      build.build_dataset(midi_dir, dataset_dir, corpus_config)
    multihost_utils.sync_global_devices("dataset built")
  return build.build_dataset(
    midi_dir, dataset_dir, corpus_config, progress=jax.process_index() == 0
  )


def _convert_esac_if_missing(midi_dir: str) -> None:
  """The default corpus is made on first use: ESAC from music21 to MIDI."""
  from melodyjax.data import esac  # pylint: disable=g-import-not-at-top

  default = esac.default_midi_dir()
  if os.path.abspath(midi_dir) != str(default) or os.path.isdir(midi_dir):
    return
  logging.warning("Converting ESAC to MIDI once into %s (minutes)", default)
  try:
    esac.convert_corpus(default)
  except esac.EsacError as e:
    raise TrainingError(f"{midi_dir} does not exist and {e}") from None


def _check_workdir_vocabs(workdir: str, dataset: dataset_lib.Dataset) -> None:
  for stream, vocab in (
    ("pitch", dataset.pitch_vocab),
    ("duration", dataset.duration_vocab),
  ):
    path = checkpoints.vocab_path(workdir, stream)
    if os.path.exists(path):
      old = tokens.Vocab.load(path)
      if old.tokens != vocab.tokens:
        raise TrainingError(
          f"{path} differs from the dataset's {stream} vocabulary: this "
          "workdir was trained on other data; use a new workdir"
        )


def check_finite(
  step: int, sums: Mapping[str, Any], last_good: int | None, workdir: str
) -> None:
  """Stops at a non-finite loss or gradient norm, naming step and remedy."""
  loss = float(sums["nll_pitch"]) + float(sums["nll_duration"])
  grad_norm = float(sums["grad_norm"])
  if np.isfinite(loss) and np.isfinite(grad_norm):
    return
  what = "loss" if not np.isfinite(loss) else "gradient"
  raise TrainingError(
    f"non-finite {what} at step {step} (loss {loss}, gradient norm "
    f"{grad_norm}); training stopped, last good checkpoint: step "
    f"{last_good} in {workdir}. Hint: lower config.train.learning_rate or "
    "set config.train.grad_clip_norm, then run again to resume from it"
  )


def train_and_evaluate(
  config: ml_collections.ConfigDict,
  workdir: str,
) -> dict[str, float]:
  """Trains (or resumes) in `workdir`; returns the last metrics.

  Checks the config and the workdir before anything is written, and holds
  the workdir's lock (process 0) for the whole run: a second run on the
  same workdir is refused.
  """
  checks.check_config(config)
  check_config(config)
  if jax.process_index() != 0:
    return _train_and_evaluate(config, workdir)
  workdir = checks.prepare_workdir(workdir)
  with checkpoints.lock_workdir(workdir):
    checks.check_workdir_config(workdir, config)
    return _train_and_evaluate(config, workdir)


def _train_and_evaluate(
  config: ml_collections.ConfigDict,
  workdir: str,
) -> dict[str, float]:
  workdir = os.path.abspath(os.path.expanduser(workdir))
  train_config = config.train
  is_main = jax.process_index() == 0
  dataset = load_dataset(config)
  dataset_lib.check_trainable(dataset, train_config.seq_len)
  os.makedirs(workdir, exist_ok=True)
  _check_workdir_vocabs(workdir, dataset)
  if is_main:
    checkpoints.write_config(workdir, config)
    checkpoints.write_vocabs(
      workdir, dataset.pitch_vocab, dataset.duration_vocab
    )

  model = model_lib.MelodyModel(
    model_lib.get_model_config(
      config.model, len(dataset.pitch_vocab), len(dataset.duration_vocab)
    )
  )
  tx = state_lib.create_optimizer(train_config)
  root_key = jax.random.key(config.seed)
  init_key, dropout_key = jax.random.split(root_key)
  mesh = parallel.create_mesh()
  runner = steps_lib.Runner(train_config.parallel, mesh)
  train_step, eval_step = steps_lib.make_steps(
    model, tx, train_config.objective, train_config.parallel, mesh
  )

  create = functools.partial(
    state_lib.create_train_state,
    model=model,
    tx=tx,
    seq_len=train_config.seq_len,
  )
  abstract = jax.eval_shape(lambda key: create(key), init_key)
  manager = checkpoints.create_manager(
    workdir,
    max_to_keep=config.checkpoint.max_to_keep,
    keep_best=config.checkpoint.keep_best,
    enable_async=config.checkpoint.async_save,
  )
  latest = checkpoints.latest_step(manager)
  if latest is None:
    state = jax.jit(create, out_shardings=parallel.replicated_sharding(mesh))(
      init_key
    )
    data_state = None
  else:
    abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(
        x.shape, x.dtype, sharding=parallel.replicated_sharding(mesh)
      ),
      abstract,
    )
    state, data_state, latest = checkpoints.restore_latest(manager, abstract)
    logging.info("Resumed from %s at step %d", workdir, latest)
    if (data_state["seed"], data_state["batch_size"]) != (
      config.seed,
      train_config.batch_size,
    ):
      raise TrainingError(
        f"{workdir} was trained with seed {data_state['seed']} and batch "
        f"size {data_state['batch_size']}; the config says {config.seed} "
        f"and {train_config.batch_size}: use a new workdir"
      )
  start_step = int(jax.device_get(state.step))
  if train_config.parallel == "pmap":
    state = runner.put_state(state)

  train_windows = windows_lib.make_windows(
    dataset.train, train_config.seq_len, train_config.objective
  )
  valid_windows = windows_lib.make_windows(
    dataset.valid, train_config.seq_len, train_config.objective
  )
  iterator = windows_lib.BatchIterator(
    train_windows,
    train_config.batch_size,
    config.seed,
    step=start_step,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  )
  writer = metrics_lib._MetricWriter(workdir, is_main)
  # Only process 0 samples (from its copy of the replicated parameters).
  auditioner = is_main and hook.Auditioner(config, workdir, model, dataset)
  if start_step == 0:
    writer.write_hparams(config)

  stop = {"signal": None}
  multihost = jax.process_count() > 1
  if multihost:
    # JAX's preemption service catches SIGTERM on any process and picks a
    # step that every process reaches, so that all stop and save together.
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  else:
    previous = signal.signal(
      signal.SIGTERM, lambda signum, frame: stop.update(signal=signum)
    )
  num_steps = train_config.num_train_steps
  last_metrics: dict[str, float] = {}
  eval_metrics: dict[str, float] | None = None
  pending: list[tuple[int, Any]] = []  # (step, device sums) not yet logged
  progress = _progress_bar(
    is_main and train_config.progress, start_step, num_steps
  )
  window_start = time.perf_counter()

  def flush_pending() -> dict[str, float]:
    """Fetches logged-but-unread sums; raises on a non-finite loss."""
    nonlocal window_start
    if not pending:
      return {}
    fetched = [(s, runner.fetch(sums)) for s, sums in pending]
    pending.clear()
    for s, sums in fetched:
      check_finite(s, sums, manager.latest_step(), workdir)
    totals = {
      k: sum(float(sums[k]) for _, sums in fetched) for k in steps_lib.SUM_KEYS
    }
    elapsed = time.perf_counter() - window_start
    window_start = time.perf_counter()
    metrics = steps_lib.summarize(totals, "train")
    metrics["train/grad_norm"] = float(fetched[-1][1]["grad_norm"])
    metrics["train/steps_per_second"] = len(fetched) / elapsed
    metrics["train/tokens_per_second"] = totals["count"] / elapsed
    return metrics

  step = start_step
  try:
    while step < num_steps:
      batch = runner.put_batch(next(iterator))
      state, sums = train_step(state, batch, dropout_key)
      step += 1
      if multihost and multihost_utils.reached_preemption_sync_point(step):
        stop["signal"] = signal.SIGTERM
      pending.append((step, sums))
      progress.update(1)
      is_last = step == num_steps
      if step % train_config.log_every_steps == 0 or is_last:
        last_metrics = flush_pending()
        writer.write(step, last_metrics)
        progress.set_postfix(
          loss=f"{last_metrics['train/loss']:.3f}",
          tok_s=f"{last_metrics['train/tokens_per_second']:.0f}",
        )
      do_eval = step % train_config.eval_every_steps == 0 or is_last
      do_save = (
        step % train_config.checkpoint_every_steps == 0
        or is_last
        or stop["signal"] is not None
      )
      if do_eval or do_save:
        # Never save past a non-finite loss; steps since the last log line
        # are logged here rather than dropped.
        if pending:
          last_metrics = flush_pending()
          writer.write(step, last_metrics)
        eval_metrics = steps_lib.summarize(
          steps_lib.evaluate(
            eval_step,
            runner,
            state.params,
            valid_windows,
            config.eval.batch_size,
          ),
          "eval",
        )
        writer.write(step, eval_metrics)
        last_metrics.update(eval_metrics)
        window_start = time.perf_counter()
      if do_save:
        checkpoints.save(
          manager,
          step,
          runner.host_state(state),
          iterator.state(),
          {checkpoints.BEST_METRIC: eval_metrics["eval/loss"]},
        )
      if stop["signal"] is None and hook.is_sample_step(config, step):
        if pending:
          last_metrics = flush_pending()
          writer.write(step, last_metrics)
        if auditioner:
          params = hook.host_params(state.params, train_config.parallel)
          sample_metrics, media = auditioner.sample(step, params)
          writer.write(step, sample_metrics)
          writer.write_media(step, media)
          page.write_page(workdir)
        window_start = time.perf_counter()
      if stop["signal"] is not None:
        logging.warning("SIGTERM: saved a checkpoint at step %d", step)
        break
  finally:
    progress.close()
    manager.wait_until_finished()
    manager.close()
    writer.close()
    if not multihost:
      signal.signal(signal.SIGTERM, previous)
  return last_metrics


def _progress_bar(active: bool, start: int, total: int):
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top

  return tqdm(
    total=total,
    initial=start,
    disable=not active,
    unit="step",
    dynamic_ncols=True,
    mininterval=1.0,
  )
