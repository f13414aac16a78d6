"""The train state (step, parameters, optimizer state, parameter average,
carried LSTM state) and the optimizer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from melodyjax.model import model as model_lib
from melodyjax.training import config as training_config


class TrainState(flax.struct.PyTreeNode):
  """Everything a step changes: step number, parameters, optimizer state.

  `ema` is the exponential moving average of the parameters (a tree like
  `params`), or None when `train.ema_decay` is 0. `carry` is the LSTM
  state each lane ends the last step with (per layer (h, c), each float32
  [batch, hidden], split over the batch like the batch) when
  `train.carry_state` is on, else None (no leaves).
  """

  step: jax.Array
  params: Any
  opt_state: Any
  ema: Any = None
  carry: Any = None

  @property
  def inference_params(self) -> Any:
    """What validation, sampling and export read: the average when on."""
    return self.params if self.ema is None else self.ema


def ema_settings(train_config: Mapping[str, Any]) -> tuple[float, int]:
  """(decay, start step) of `train.ema_decay` / `train.ema_start_step`;
  decay 0 is off (older configs lack both fields)."""
  return (
    float(train_config.get("ema_decay", 0.0)),
    int(train_config.get("ema_start_step", 0)),
  )


def update_ema(ema: Any, params: Any, step: jax.Array, decay: float, start):
  """The average after optimizer step `step` (1-based) gave `params`.

  Until `step` reaches `start` the average is the parameters themselves;
  after it, `ema + (1 - decay) * (params - ema)`, in float32.
  """
  keep = jnp.where(step <= start, 0.0, decay).astype(jnp.float32)
  return jax.tree.map(
    lambda e, p: (e + (1 - keep) * (p.astype(jnp.float32) - e)).astype(e.dtype),
    ema,
    params,
  )


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
      f"train.decay must be one of {training_config.DECAYS}, got "
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
  *,
  ema: bool = False,
  carry_rows: int = 0,
) -> TrainState:
  """Fresh parameters (`model_lib.init_params`) and optimizer state; with
  `ema`, an average that starts at the parameters; a zero carried state of
  `carry_rows` lanes (none for 0)."""
  params = model_lib.init_params(model, init_key, seq_len)
  carry = None
  if carry_rows:
    # Two arrays per layer, not one twice: the state is donated.
    carry = tuple(
      tuple(jnp.zeros((carry_rows, h), jnp.float32) for _ in "hc")
      for h in model.config.lstm_sizes
    )
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    opt_state=tx.init(params),
    ema=start_ema(params) if ema else None,
    carry=carry,
  )


def start_ema(params: Any) -> Any:
  """An average equal to `params` (a copy: the state is donated)."""
  return jax.tree.map(
    lambda p: jnp.array(p, dtype=jnp.float32, copy=True), params
  )
