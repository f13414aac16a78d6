"""Loss, train and eval steps, and the training loop.

The step body is written once over a named `data` axis: it computes the
local sums of a shard, `psum`s counts, gradients and metrics, and applies
the update. `train.parallel = 'jit'` runs it as `jax.shard_map` under
`jax.jit` on a mesh with NamedSharding (the default); `'pmap'` runs the same
body under `jax.pmap`.
"""

from __future__ import annotations

import functools
import json
import math
import os
import signal
import time
from collections.abc import Mapping
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from jax.sharding import PartitionSpec as P

from melodyjax import (
  audition,
  checkpointing,
  checks,
  corpus,
  parallel,
  pipeline,
  tokens,
)
from melodyjax import model as model_lib

PARALLEL_MODES = ("jit", "pmap")
SUM_KEYS = (
  "nll_pitch",
  "nll_duration",
  "correct_pitch",
  "correct_duration",
  "correct_both",
  "count",
)


class TrainingError(Exception):
  """Training cannot go on; the message says why and what was kept."""


class TrainState(flax.struct.PyTreeNode):
  """Everything a step changes: step number, parameters, optimizer state."""

  step: jax.Array
  params: Any
  opt_state: Any


def create_optimizer(
  train_config: Mapping[str, Any],
) -> optax.GradientTransformation:
  """Adam(W) with linear warm-up, cosine (or no) decay and norm clipping."""
  peak = train_config["learning_rate"]
  warmup = train_config["warmup_steps"]
  if train_config["decay"] == "cosine":
    # The first step already learns (a warm-up from 0 would waste it).
    schedule = optax.warmup_cosine_decay_schedule(
      init_value=peak / max(warmup, 1),
      peak_value=peak,
      warmup_steps=warmup,
      decay_steps=max(train_config["num_train_steps"], warmup + 1),
      end_value=peak * train_config["end_lr_fraction"],
    )
  elif train_config["decay"] == "constant":
    schedule = optax.join_schedules(
      [
        optax.linear_schedule(peak / max(warmup, 1), peak, max(warmup, 1)),
        optax.constant_schedule(peak),
      ],
      [warmup],
    )
  else:
    raise ValueError(
      f"train.decay must be 'cosine' or 'constant', got "
      f"{train_config['decay']!r}"
    )
  # Clipping is always in the chain (inf when off), so that the optimizer
  # state has the same structure whatever the setting and a run can resume
  # with another one.
  clip = train_config["grad_clip_norm"] or float("inf")
  return optax.chain(
    optax.clip_by_global_norm(clip),
    optax.adamw(schedule, weight_decay=train_config["weight_decay"]),
  )


def create_train_state(
  init_key: jax.Array,
  model: model_lib.MelodyModel,
  tx: optax.GradientTransformation,
  seq_len: int,
) -> TrainState:
  dummy = jnp.zeros((1, seq_len), jnp.int32)
  params = model.init(init_key, dummy, dummy)["params"]
  return TrainState(
    step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params)
  )


def compute_sums(
  model: model_lib.MelodyModel,
  params: Any,
  batch: Mapping[str, jax.Array],
  objective: str,
  channel_mask: jax.Array | None = None,
) -> dict[str, jax.Array]:
  """Sums over the batch's real targets: negative log-likelihoods in nats,
  correct top-1 predictions per stream and for both, and the target count.
  """
  pitch_logits, duration_logits, _ = model.apply(
    {"params": params},
    batch["pitch"],
    batch["duration"],
    channel_mask=channel_mask,
    last_only=objective == "last",
  )
  target_pitch = batch["target_pitch"]
  target_duration = batch["target_duration"]
  if objective == "last":
    pitch_logits = pitch_logits[:, -1]
    duration_logits = duration_logits[:, -1]
  mask = (target_pitch != tokens.PAD_ID).astype(jnp.float32)
  nll_pitch = optax.softmax_cross_entropy_with_integer_labels(
    pitch_logits, target_pitch
  )
  nll_duration = optax.softmax_cross_entropy_with_integer_labels(
    duration_logits, target_duration
  )
  hit_pitch = (jnp.argmax(pitch_logits, -1) == target_pitch) * mask
  hit_duration = (jnp.argmax(duration_logits, -1) == target_duration) * mask
  return {
    "nll_pitch": jnp.sum(nll_pitch * mask),
    "nll_duration": jnp.sum(nll_duration * mask),
    "correct_pitch": jnp.sum(hit_pitch),
    "correct_duration": jnp.sum(hit_duration),
    "correct_both": jnp.sum(hit_pitch * hit_duration),
    "count": jnp.sum(mask),
  }


def _train_body(state: TrainState, batch, dropout_key, *, model, tx, objective):
  """One optimizer step on this device's shard; collectives over 'data'."""
  config = model.config
  channel_mask = model_lib.spatial_dropout_mask(
    jax.random.fold_in(dropout_key, state.step),
    batch["rows"],
    config.input_dim,
    config.spatial_dropout,
  )

  def loss_fn(params):
    sums = compute_sums(model, params, batch, objective, channel_mask)
    count = jax.lax.psum(sums["count"], parallel.DATA_AXIS)
    loss = (sums["nll_pitch"] + sums["nll_duration"]) / jnp.maximum(count, 1)
    return loss, sums

  grads, sums = jax.grad(loss_fn, has_aux=True)(state.params)
  grads = jax.lax.psum(grads, parallel.DATA_AXIS)
  sums = jax.lax.psum(sums, parallel.DATA_AXIS)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  sums["grad_norm"] = optax.tree.norm(grads)
  return state.replace(
    step=state.step + 1, params=params, opt_state=opt_state
  ), sums


def _eval_body(params, batch, *, model, objective):
  sums = compute_sums(model, params, batch, objective)
  return jax.lax.psum(sums, parallel.DATA_AXIS)


def make_steps(model, tx, objective: str, mode: str, mesh):
  """The jitted (train_step, eval_step) for `mode` 'jit' or 'pmap'.

  train_step(state, batch, dropout_key) -> (state, sums); the state is
  donated. eval_step(params, batch) -> sums. Batches are global arrays
  sharded on 'data' ('jit') or [devices, rows, ...] arrays ('pmap').
  """
  train_body = functools.partial(
    _train_body, model=model, tx=tx, objective=objective
  )
  eval_body = functools.partial(_eval_body, model=model, objective=objective)
  if mode == "jit":
    train_step = jax.jit(
      jax.shard_map(
        train_body,
        mesh=mesh,
        in_specs=(P(), P(parallel.DATA_AXIS), P()),
        out_specs=(P(), P()),
        check_vma=False,
      ),
      donate_argnums=0,
    )
    eval_step = jax.jit(
      jax.shard_map(
        eval_body,
        mesh=mesh,
        in_specs=(P(), P(parallel.DATA_AXIS)),
        out_specs=P(),
        check_vma=False,
      )
    )
  elif mode == "pmap":
    # Every process names all devices (pmap maps over its local ones).
    devices = list(mesh.devices.flat)
    train_step = jax.pmap(
      train_body,
      axis_name=parallel.DATA_AXIS,
      in_axes=(0, 0, None),
      donate_argnums=0,
      devices=devices,
    )
    eval_step = jax.pmap(
      eval_body, axis_name=parallel.DATA_AXIS, devices=devices
    )
  else:
    raise ValueError(f"train.parallel must be one of {PARALLEL_MODES}")
  return train_step, eval_step


def summarize(sums: Mapping[str, float], prefix: str) -> dict[str, float]:
  """Sums to averages: loss in nats per event, bits per note, accuracy."""
  count = max(float(sums["count"]), 1.0)
  nll_pitch = float(sums["nll_pitch"]) / count
  nll_duration = float(sums["nll_duration"]) / count
  metrics = {
    "loss": nll_pitch + nll_duration,
    "loss_pitch": nll_pitch,
    "loss_duration": nll_duration,
    "bits_per_note": (nll_pitch + nll_duration) / math.log(2),
    "bits_per_note_pitch": nll_pitch / math.log(2),
    "bits_per_note_duration": nll_duration / math.log(2),
    "accuracy": float(sums["correct_both"]) / count,
    "accuracy_pitch": float(sums["correct_pitch"]) / count,
    "accuracy_duration": float(sums["correct_duration"]) / count,
    "num_targets": float(sums["count"]),
  }
  return {f"{prefix}/{k}": v for k, v in metrics.items()}


class Runner:
  """Moves batches, state and metrics on and off devices, for either mode."""

  def __init__(self, mode: str, mesh):
    self.mode = mode
    self.mesh = mesh
    self.num_local_devices = len(parallel.local_devices(mesh))

  def put_batch(self, batch: pipeline.Batch):
    local = batch.as_dict()
    if self.mode == "pmap":
      return parallel.to_pmap(local, self.num_local_devices)
    return parallel.to_global(local, self.mesh)

  def put_state(self, state):
    if self.mode == "pmap":
      return jax.tree.map(
        lambda x: np.broadcast_to(
          np.asarray(jax.device_get(x)), (self.num_local_devices, *x.shape)
        ),
        state,
      )
    return jax.device_put(state, parallel.replicated_sharding(self.mesh))

  def host_state(self, state):
    """The state as saved: unreplicated (pmap), global arrays (jit)."""
    if self.mode == "pmap":
      # One replica as a global array: Orbax cannot save pmap's per-process
      # outputs in a multi-process run.
      sharding = parallel.replicated_sharding(self.mesh)

      def global_replica(x):
        replica = np.asarray(x[0])
        return jax.make_array_from_callback(
          replica.shape, sharding, lambda index: replica[index]
        )

      return jax.tree.map(global_replica, state)
    return state

  def fetch(self, sums):
    sums = jax.device_get(sums)
    if self.mode == "pmap":
      sums = jax.tree.map(lambda x: np.asarray(x)[0], sums)
    return sums


def evaluate(
  eval_step, runner: Runner, params, windows: pipeline.Windows, batch_size: int
) -> dict[str, float]:
  """Sums over every window of a split (one pass, pad rows masked)."""
  totals = dict.fromkeys(SUM_KEYS, 0.0)
  for batch in pipeline.eval_batches(
    windows,
    batch_size,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  ):
    sums = runner.fetch(eval_step(params, runner.put_batch(batch)))
    for k in SUM_KEYS:
      totals[k] += float(sums[k])
  return totals


class _MetricWriter:
  """JSON lines and TensorBoard events on process 0; nothing elsewhere."""

  def __init__(self, workdir: str, active: bool):
    self.active = active
    if not active:
      return
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top

    self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
    self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, metrics: Mapping[str, float]) -> None:
    if not self.active:
      return
    self._jsonl.write(json.dumps({"step": step, **metrics}) + "\n")
    self._jsonl.flush()
    for name, value in metrics.items():
      self._tb.add_scalar(name, value, step)
    self._tb.flush()

  def write_media(self, step: int, media: Mapping[str, Any]) -> None:
    if self.active:
      audition.write_media(self._tb, step, media)

  def write_hparams(self, config: ml_collections.ConfigDict) -> None:
    if self.active:
      self._tb.add_text(
        "config", "```\n" + config.to_json(indent=2) + "\n```", 0
      )

  def close(self) -> None:
    if self.active:
      self._jsonl.close()
      self._tb.close()


def check_config(config: ml_collections.ConfigDict) -> None:
  """Config values that jit would only reject deep inside; named by field."""
  train = config.train
  if train.objective not in pipeline.OBJECTIVES:
    raise TrainingError(
      f"config.train.objective must be one of {pipeline.OBJECTIVES}, got "
      f"{train.objective!r}"
    )
  if train.parallel not in PARALLEL_MODES:
    raise TrainingError(
      f"config.train.parallel must be one of {PARALLEL_MODES}, got "
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
  audition.check_config(config)


def load_dataset(config: ml_collections.ConfigDict) -> corpus.Dataset:
  """Builds (process 0 first) or loads the dataset of `config.data`."""
  data = config.data
  midi_dir = os.path.expanduser(data.midi_dir)
  dataset_dir = os.path.expanduser(data.dataset_dir)
  corpus_config = corpus.CorpusConfig.from_config(data)
  if jax.process_index() == 0:
    _convert_esac_if_missing(midi_dir)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

    if jax.process_index() == 0:
      corpus.build_dataset(midi_dir, dataset_dir, corpus_config)
    multihost_utils.sync_global_devices("dataset built")
  return corpus.build_dataset(
    midi_dir, dataset_dir, corpus_config, progress=jax.process_index() == 0
  )


def _convert_esac_if_missing(midi_dir: str) -> None:
  """The default corpus is made on first use: ESAC from music21 to MIDI."""
  from melodyjax import esac  # pylint: disable=g-import-not-at-top

  default = esac.default_midi_dir()
  if os.path.abspath(midi_dir) != str(default) or os.path.isdir(midi_dir):
    return
  logging.warning("Converting ESAC to MIDI once into %s (minutes)", default)
  try:
    esac.convert_corpus(default)
  except esac.EsacError as e:
    raise TrainingError(f"{midi_dir} does not exist and {e}") from None


def _check_workdir_vocabs(workdir: str, dataset: corpus.Dataset) -> None:
  for stream, vocab in (
    ("pitch", dataset.pitch_vocab),
    ("duration", dataset.duration_vocab),
  ):
    path = checkpointing.vocab_path(workdir, stream)
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
  with checkpointing.lock_workdir(workdir):
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
  corpus.check_trainable(dataset, train_config.seq_len)
  os.makedirs(workdir, exist_ok=True)
  _check_workdir_vocabs(workdir, dataset)
  if is_main:
    checkpointing.write_config(workdir, config)
    checkpointing.write_vocabs(
      workdir, dataset.pitch_vocab, dataset.duration_vocab
    )

  model = model_lib.MelodyModel(
    model_lib.get_model_config(
      config.model, len(dataset.pitch_vocab), len(dataset.duration_vocab)
    )
  )
  tx = create_optimizer(train_config)
  root_key = jax.random.key(config.seed)
  init_key, dropout_key = jax.random.split(root_key)
  mesh = parallel.create_mesh()
  runner = Runner(train_config.parallel, mesh)
  train_step, eval_step = make_steps(
    model, tx, train_config.objective, train_config.parallel, mesh
  )

  create = functools.partial(
    create_train_state, model=model, tx=tx, seq_len=train_config.seq_len
  )
  abstract = jax.eval_shape(lambda key: create(key), init_key)
  manager = checkpointing.create_manager(
    workdir,
    max_to_keep=config.checkpoint.max_to_keep,
    keep_best=config.checkpoint.keep_best,
    enable_async=config.checkpoint.async_save,
  )
  latest = checkpointing.latest_step(manager)
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
    state, data_state, latest = checkpointing.restore_latest(manager, abstract)
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

  train_windows = pipeline.make_windows(
    dataset.train, train_config.seq_len, train_config.objective
  )
  valid_windows = pipeline.make_windows(
    dataset.valid, train_config.seq_len, train_config.objective
  )
  iterator = pipeline.BatchIterator(
    train_windows,
    train_config.batch_size,
    config.seed,
    step=start_step,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  )
  writer = _MetricWriter(workdir, is_main)
  # Only process 0 samples (from its copy of the replicated parameters).
  auditioner = is_main and audition.Auditioner(config, workdir, model, dataset)
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
    totals = {k: sum(float(sums[k]) for _, sums in fetched) for k in SUM_KEYS}
    elapsed = time.perf_counter() - window_start
    window_start = time.perf_counter()
    metrics = summarize(totals, "train")
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
        eval_metrics = summarize(
          evaluate(
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
        checkpointing.save(
          manager,
          step,
          runner.host_state(state),
          iterator.state(),
          {checkpointing.BEST_METRIC: eval_metrics["eval/loss"]},
        )
      if stop["signal"] is None and audition.is_sample_step(config, step):
        if pending:
          last_metrics = flush_pending()
          writer.write(step, last_metrics)
        if auditioner:
          params = audition.host_params(state.params, train_config.parallel)
          sample_metrics, media = auditioner.sample(step, params)
          writer.write(step, sample_metrics)
          writer.write_media(step, media)
          audition.write_page(workdir)
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
