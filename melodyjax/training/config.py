"""Training's settings: the `train`, `eval` and `checkpoint` groups, the
seed and `init_from`, with their defaults and checks. No JAX.

`configs/default.py` builds its groups from `train_defaults()`,
`eval_defaults()` and `checkpoint_defaults()`. `check` runs once per launch
(`training.loop.train_and_evaluate`), before anything is written: it asks
the data and model layers to check their groups (`data.config.check`,
`model.config.check`) and checks training's own. The `sample` group belongs
to the sampler (`sampling.request.check_group`); the command that hands
training its sampling hook checks it.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from melodyjax import checks, errors
from melodyjax.data import config as data_config_lib
from melodyjax.data import windows
from melodyjax.model import config as model_config_lib

DECAYS = ("cosine", "constant")  # `training.state.create_optimizer`
PARALLEL_MODES = ("jit", "pmap")  # `training.parallel.create`
# Fields counted in optimizer steps or events that must be positive.
_POSITIVE = (
  "num_train_steps",
  "log_every_steps",
  "eval_every_steps",
  "checkpoint_every_steps",
  "seq_len",
)


def train_defaults() -> ml_collections.ConfigDict:
  """The `train` group: objective, windows, optimizer, schedule, cadence."""
  train = ml_collections.ConfigDict()
  # 'all': every position is a target; 'last': one target per window (the
  # reference model's formulation, configs/seed.py).
  train.objective = "all"
  train.seq_len = 64  # events per window
  # Carry each lane's LSTM state from one window of a song to the next
  # (truncated backpropagation through time; objective 'all' only).
  train.carry_state = False
  train.batch_size = 64  # global batch, split across devices and hosts
  train.num_train_steps = 20_000  # optimizer steps
  train.learning_rate = 2e-3  # peak, after warm-up
  train.warmup_steps = 500  # linear warm-up, in optimizer steps
  train.decay = "cosine"  # 'cosine' to end_lr_fraction, or 'constant'
  train.end_lr_fraction = 0.05  # final learning rate / peak
  train.weight_decay = 0.0  # decoupled (AdamW); 0 is Adam
  train.grad_clip_norm = 1.0  # global norm; 0 disables clipping
  train.parallel = "jit"  # 'jit' (NamedSharding mesh) or 'pmap'
  # Exponential moving average of the parameters, in [0, 1) (0: off). When
  # on, the average is what validation (so the best step), evaluation,
  # sampling, export and fine-tuning read; it equals the parameters until
  # optimizer step ema_start_step, then follows them with this decay.
  train.ema_decay = 0.0
  train.ema_start_step = 0
  train.log_every_steps = 50
  train.eval_every_steps = 1000
  train.checkpoint_every_steps = 1000
  train.sample_every_steps = 5000  # also at the last step; 0: only there
  train.progress = True  # console progress bar (process 0)
  return train


def eval_defaults() -> ml_collections.ConfigDict:
  """The `eval` group."""
  return ml_collections.ConfigDict(
    {"batch_size": 256}  # windows per evaluation batch (global)
  )


def checkpoint_defaults() -> ml_collections.ConfigDict:
  """The `checkpoint` group (Orbax)."""
  checkpoint = ml_collections.ConfigDict()
  checkpoint.max_to_keep = 3  # newest checkpoints kept
  checkpoint.keep_best = 1  # lowest validation loss also kept
  checkpoint.async_save = True
  return checkpoint


def _check_train(config: Any, num_devices: int | None) -> None:
  train = config.train
  checks.choice(train.objective, "config.train.objective", windows.OBJECTIVES)
  checks.choice(train.parallel, "config.train.parallel", PARALLEL_MODES)
  carry_state = train.get("carry_state", False)
  checks.boolean(carry_state, "config.train.carry_state")
  if carry_state and config.model.get("arch", "lstm") != "lstm":
    raise errors.ConfigError(
      "config.train.carry_state=True carries an LSTM's state: "
      f"config.model.arch={config.model.arch!r} has none (a Transformer "
      "reads its window whole; raise config.train.seq_len instead)"
    )
  if carry_state and train.objective != "all":
    raise errors.ConfigError(
      "config.train.carry_state=True needs config.train.objective='all' "
      f"(the windows of a song in order), got {train.objective!r}"
    )
  if num_devices is not None:
    for field, value in (
      ("train.batch_size", train.batch_size),
      ("eval.batch_size", config.eval.batch_size),
    ):
      if not checks.is_int(value) or value <= 0 or value % num_devices:
        raise errors.ConfigError(
          f"config.{field}={value} must be a positive multiple of the "
          f"{num_devices} devices"
        )
  for field in _POSITIVE:
    if not checks.is_int(train[field]) or train[field] <= 0:
      raise errors.ConfigError(f"config.train.{field} must be positive")
  if (
    not checks.is_int(train.sample_every_steps) or train.sample_every_steps < 0
  ):
    raise errors.ConfigError("config.train.sample_every_steps must be >= 0")
  checks.number(
    train.learning_rate, "config.train.learning_rate", 0.0, low_open=True
  )
  checks.int_at_least(train.warmup_steps, "config.train.warmup_steps")
  checks.choice(train.decay, "config.train.decay", DECAYS)
  checks.number(train.end_lr_fraction, "config.train.end_lr_fraction", 0.0, 1.0)
  checks.number(train.weight_decay, "config.train.weight_decay", 0.0)
  checks.number(train.grad_clip_norm, "config.train.grad_clip_norm", 0.0)
  ema = train.get("ema_decay", 0.0)
  if not checks.is_number(ema) or not 0 <= ema < 1:
    raise errors.ConfigError(
      f"config.train.ema_decay must be a number >= 0 and < 1 (0: off), got "
      f"{ema!r}"
    )
  checks.int_at_least(
    train.get("ema_start_step", 0), "config.train.ema_start_step"
  )


def check(config: Any, num_devices: int | None = None) -> None:
  """Every group training reads: seed, data, model, train, eval,
  checkpoint and init_from (not `sample`: see the module docstring).

  Args:
    config: an ml_collections ConfigDict such as `configs/default.py`'s.
    num_devices: the global batch sizes must be multiples of it (None:
      not checked).

  Raises:
    ConfigError (CorpusError for the tokenizing options): the first bad
    field, by its dotted path.
  """
  if not checks.is_int(config.seed):
    raise errors.ConfigError(
      f"config.seed must be an integer, got {config.seed!r}"
    )
  checks.finite(config.to_dict(), "config")
  model_config_lib.check(config.model)
  _check_train(config, num_devices)
  checks.positive_int(
    config.checkpoint.max_to_keep, "config.checkpoint.max_to_keep"
  )
  checks.int_at_least(
    config.checkpoint.keep_best, "config.checkpoint.keep_best"
  )
  data_config_lib.check(config.data)
  checks.text(
    config.init_from, "config.init_from", "a workdir or .mjx path (or empty)"
  )
