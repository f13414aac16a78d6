"""The training loop: `train_and_evaluate(config, workdir, hooks=...)`.

Each step trains on one global batch. Periodic actions follow it in a fixed
order: log the train sums (every `train.log_every_steps`), evaluate on the
validation split (`eval_every_steps`), save a checkpoint
(`checkpoint_every_steps`), then the caller's hooks (each says when it is
due; `listening.hook.AuditionHook` samples melodies). Every action also
runs at the last step. Training knows nothing of what hooks do; the mains
hand them in.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging

from melodyjax import files
from melodyjax.data import dataset as dataset_lib
from melodyjax.data import report as report_lib
from melodyjax.data import windows as windows_lib
from melodyjax.model import config as model_config_lib
from melodyjax.model import lstm
from melodyjax.model import model as model_lib
from melodyjax.training import checkpoints, faults, parallel, runs, start
from melodyjax.training import config as training_config
from melodyjax.training import metrics as metrics_lib
from melodyjax.training import state as state_lib
from melodyjax.training import steps as steps_lib
from melodyjax.training import workdir as workdir_lib


@dataclasses.dataclass(frozen=True)
class RunInfo:
  """What a hook sees of the run: its config, folder, model and data."""

  config: ml_collections.ConfigDict
  workdir: str
  model: model_lib.MelodyModel
  dataset: dataset_lib.Dataset
  writer: metrics_lib.MetricWriter


class Hook(Protocol):
  """A periodic action of the caller's, run on process 0 after a step."""

  def due(self, step: int) -> bool:
    """Whether the hook acts after optimizer step `step`."""

  def __call__(self, step: int, params: Any, run: RunInfo) -> None:
    """Acts on the parameters after `step` (numpy, one replica)."""


def train_and_evaluate(
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  hooks: Sequence[Hook] = (),
  announce: Callable[[str], None] | None = None,
) -> dict[str, float]:
  """Trains (or resumes) in `workdir`; returns the last metrics.

  Checks the config and the workdir before anything is written, and holds
  the workdir's lock (process 0) for the whole run: a second run on the
  same workdir is refused.

  Args:
    config: a training config (`configs/default.py` and its variants).
    workdir: the run's folder; created, or resumed from its checkpoints.
    hooks: periodic actions after the built-in ones (process 0 only).
    announce: called with lines for the user: the launch description
      (processes, devices, batch split, dtype) after the config is
      checked, then, on a workdir with checkpoints, the step it resumes
      from and the damaged checkpoints it skipped, or the base run a
      fine-tuning run starts from; default: logged as warnings.

  Raises:
    MelodyjaxError: a user-facing problem (config, corpus, workdir, a
      non-finite loss), with a one-line message.
  """
  training_config.check(config, jax.device_count())
  if config.init_from and not config.data.vocab_from:
    config.data.vocab_from = config.init_from  # recorded in config.json
  announce = announce or (lambda text: logging.warning("%s", text))
  dtype = jnp.dtype(
    model_config_lib.get_model_config(config.model, 1, 1).compute_dtype
  ).name
  if config.model.get("arch", "lstm") == "transformer":
    model = config.model
    model_line = (
      f"model: transformer, {model.transformer_layers} blocks of width "
      f"{model.transformer_width}, {model.transformer_heads} heads, "
      f"{model.transformer_position} positions; attention "
      f"jax.nn.dot_product_attention on {jax.default_backend()}"
    )
  else:
    model_line = f"lstm: {lstm.resolve_impl(config.model.lstm_impl, dtype)[1]}"
  announce(
    parallel.describe_launch(
      config.train.batch_size, dtype, config.train.parallel
    )
    + f"\n{model_line}"
  )
  if jax.process_index() != 0:
    return _train(config, workdir, hooks, announce)
  workdir = workdir_lib.prepare_workdir(workdir)
  with workdir_lib.lock_workdir(workdir):
    workdir_lib.check_resumable(workdir, config)
    return _train(config, workdir, hooks, announce)


@dataclasses.dataclass
class _Setup:
  """A run ready to train: data, model, compiled steps, restored state."""

  info: RunInfo
  runner: parallel.Jit
  manager: Any
  train_step: Callable
  eval_step: Callable
  state: state_lib.TrainState
  batches: windows_lib.BatchIterator
  valid_windows: windows_lib.Windows


def _setup(
  config: ml_collections.ConfigDict,
  workdir: str,
  announce: Callable[[str], None],
) -> _Setup:
  train = config.train
  is_main = jax.process_index() == 0
  base = start.base_run(config)
  vocabs, label_vocabs = start.fixed_vocabs(config, base)
  dataset = start.load_dataset(config, vocabs, label_vocabs)
  if vocabs is not None:
    dataset_lib.check_unknown_share(dataset, config.data.max_unk_share)
  dataset_lib.check_trainable(dataset, train.seq_len)
  if train.objective == "all":
    windows = report_lib.describe_windows(dataset.train, train.seq_len)
    announce(f"training songs: {windows}")
  os.makedirs(workdir, exist_ok=True)
  workdir_lib.check_vocabs(
    workdir, dataset.pitch_vocab, dataset.duration_vocab, dataset.labels
  )
  if is_main:
    workdir_lib.write_config(workdir, config)
    workdir_lib.write_vocabs(
      workdir, dataset.pitch_vocab, dataset.duration_vocab, dataset.labels
    )
  model = runs.create_model(
    config, dataset.pitch_vocab, dataset.duration_vocab, dataset.labels
  )
  tx = state_lib.create_optimizer(train)
  runner = parallel.create(train.parallel, parallel.create_mesh())
  train_step, eval_step = steps_lib.make_steps(
    model,
    tx,
    train.objective,
    runner,
    ema=state_lib.ema_settings(train),
    carry_state=start.carry_state(config),
  )
  manager = checkpoints.create_manager(
    workdir,
    max_to_keep=config.checkpoint.max_to_keep,
    keep_best=config.checkpoint.keep_best,
    enable_async=config.checkpoint.async_save,
  )
  state = start.init_or_restore(
    config, model, tx, runner, manager, base, announce
  )
  batches = windows_lib.create_iterator(
    windows_lib.make_windows(dataset.train, train.seq_len, train.objective),
    train.batch_size,
    config.seed,
    carry_state=start.carry_state(config),
    step=int(jax.device_get(state.step)),
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  )
  writer = metrics_lib.MetricWriter(workdir, is_main)
  return _Setup(
    RunInfo(config, workdir, model, dataset, writer),
    runner,
    manager,
    train_step,
    eval_step,
    runner.put_state(state),
    batches,
    windows_lib.make_windows(dataset.valid, train.seq_len, train.objective),
  )


class _TrainLog:
  """Train sums kept on the devices until a log line needs them."""

  def __init__(self, setup: _Setup, progress: bool, start_step: int):
    self._setup = setup
    self._pending: list[tuple[int, Any]] = []
    self.metrics: dict[str, float] = {}
    self.restart_clock()
    from tqdm import tqdm

    self.bar = tqdm(
      total=setup.info.config.train.num_train_steps,
      initial=start_step,
      disable=not progress,
      unit="step",
      dynamic_ncols=True,
      mininterval=1.0,
    )

  def restart_clock(self) -> None:
    """Time spent outside training steps does not count in tokens/s."""
    self._start = time.perf_counter()

  def add(self, step: int, sums: Any) -> None:
    self._pending.append((step, sums))
    self.bar.update(1)

  def flush(self, step: int) -> None:
    """Fetches the pending sums, writes one train line (none if nothing is
    pending); raises on a non-finite loss or gradient."""
    if not self._pending:
      return
    setup = self._setup
    fetched = [(s, setup.runner.fetch(sums)) for s, sums in self._pending]
    self._pending.clear()
    for s, sums in fetched:
      steps_lib.check_finite(
        s, sums, setup.manager.latest_step(), setup.info.workdir
      )
    totals = {
      k: sum(float(sums[k]) for _, sums in fetched) for k in steps_lib.SUM_KEYS
    }
    elapsed = time.perf_counter() - self._start
    self.restart_clock()
    metrics = steps_lib.summarize(totals, "train")
    metrics["train/grad_norm"] = float(fetched[-1][1]["grad_norm"])
    metrics["train/steps_per_second"] = len(fetched) / elapsed
    metrics["train/tokens_per_second"] = totals["count"] / elapsed
    setup.info.writer.write(step, metrics)
    self.metrics = metrics
    self.bar.set_postfix(
      loss=f"{metrics['train/loss']:.3f}",
      tok_s=f"{metrics['train/tokens_per_second']:.0f}",
    )


@contextlib.contextmanager
def _stop_signal() -> Iterator[dict[str, Any]]:
  """{'signal': None or SIGTERM}, set when training should save and stop.

  With several processes, JAX's preemption service catches SIGTERM on any
  of them and picks a step that every process reaches, so that all stop
  and save together (`_preempted`).
  """
  stop: dict[str, Any] = {"signal": None}
  if jax.process_count() > 1:
    yield stop
    return
  previous = signal.signal(
    signal.SIGTERM, lambda signum, frame: stop.update(signal=signum)
  )
  try:
    yield stop
  finally:
    signal.signal(signal.SIGTERM, previous)


def _preempted(step: int) -> bool:
  if jax.process_count() == 1:
    return False
  from jax.experimental import multihost_utils

  return multihost_utils.reached_preemption_sync_point(step)


def _evaluate_and_save(setup: _Setup, step: int, save: bool, state) -> dict:
  """Validation metrics (of the average, when on), written; and a
  checkpoint if `save`."""
  metrics = steps_lib.summarize(
    steps_lib.evaluate(
      setup.eval_step,
      setup.runner,
      state.inference_params,
      setup.valid_windows,
      setup.info.config.eval.batch_size,
    ),
    "eval",
  )
  setup.info.writer.write(step, metrics)
  if save:
    checkpoints.save(
      setup.manager,
      step,
      setup.runner.saved_state(state),
      setup.batches.state(),
      {checkpoints.BEST_METRIC: metrics["eval/loss"]},
    )
  return metrics


def _train(
  config, workdir, hooks: Sequence[Hook], announce
) -> dict[str, float]:
  """The run; a full disk (a checkpoint, a log, a sample) ends it with one
  line naming the last good checkpoint (`faults.no_space_error`)."""
  workdir = os.path.abspath(os.path.expanduser(workdir))
  with faults.quiet_background_errors():
    try:
      return _run_steps(config, workdir, hooks, announce)
    except Exception as e:  # noqa: BLE001 - Orbax's errors are of any type
      path = files.no_space(e)
      if path is None:
        raise
      raise faults.no_space_error(workdir, path) from None


def _run_steps(config, workdir, hooks, announce) -> dict[str, float]:
  train = config.train
  setup = _setup(config, workdir, announce)
  info, state = setup.info, setup.state
  _, dropout_key = jax.random.split(jax.random.key(config.seed))
  step = setup.batches.step
  is_main = jax.process_index() == 0
  if step == 0:
    info.writer.write_hparams(config)
  log = _TrainLog(setup, is_main and train.progress, step)

  def due(every: int, step: int) -> bool:
    return step % every == 0 or step == train.num_train_steps

  try:
    with _stop_signal() as stop:
      while step < train.num_train_steps:
        batch = setup.runner.put_batch(next(setup.batches).as_dict())
        state, sums = setup.train_step(state, batch, dropout_key)
        step += 1
        if _preempted(step):
          stop["signal"] = signal.SIGTERM
        log.add(step, sums)
        if due(train.log_every_steps, step):
          log.flush(step)
        save = due(train.checkpoint_every_steps, step) or stop["signal"]
        if save or due(train.eval_every_steps, step):
          # Never save past a non-finite loss; steps since the last log
          # line are logged here rather than dropped.
          log.flush(step)
          log.metrics.update(_evaluate_and_save(setup, step, save, state))
          log.restart_clock()
        active = [h for h in hooks if h.due(step)] if not stop["signal"] else []
        if active:
          log.flush(step)
          if is_main:
            params = setup.runner.host_params(state.inference_params)
            for hook in active:
              hook(step, params, info)
          log.restart_clock()
        if stop["signal"] is not None:
          logging.warning("SIGTERM: saved a checkpoint at step %d", step)
          break
  finally:
    log.bar.close()
    try:  # each step even if one before it fails (a full disk)
      setup.manager.wait_until_finished()
    finally:
      try:
        setup.manager.close()
      finally:
        info.writer.close()
  return log.metrics
