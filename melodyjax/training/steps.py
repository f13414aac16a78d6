"""Loss, train and eval steps, and their metrics.

The step body is written once over a named `data` axis: it computes the
local sums of a shard, `psum`s counts, gradients and metrics, and applies
the update. `training.parallel` runs it under `jit` over a mesh or under
`jax.pmap`. Metrics are sums and counts, so averages over steps and
devices are exact.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from melodyjax import errors
from melodyjax.data import windows as windows_lib
from melodyjax.model import model as model_lib
from melodyjax.music import tokens
from melodyjax.training import parallel
from melodyjax.training import state as state_lib

SUM_KEYS = (
  "nll_pitch",
  "nll_duration",
  "correct_pitch",
  "correct_duration",
  "correct_both",
  "count",
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

  A `duration_given_pitch` model's duration head reads the target pitch
  (teacher forcing): its duration terms are given the true pitch, so the
  sum of the two streams' terms is the event's exact log-likelihood.
  """
  return forward_sums(model, params, batch, objective, channel_mask)[0]


def forward_sums(
  model: model_lib.MelodyModel,
  params: Any,
  batch: Mapping[str, jax.Array],
  objective: str,
  channel_mask: jax.Array | None = None,
  carry: Any = None,
  dropout: tuple[jax.Array, jax.Array] | None = None,
) -> tuple[dict[str, jax.Array], Any]:
  """`compute_sums` from the initial LSTM state `carry` (default: zeros),
  and the final state (per layer (h, c), each [batch, hidden]); `dropout`
  (the step's key, the rows' indices) for a Transformer's own dropout."""
  target_pitch = batch["target_pitch"]
  target_duration = batch["target_duration"]
  last = objective == "last"
  extra = {} if dropout is None else {"dropout": dropout}
  pitch_logits, duration_logits, final = model.apply(
    {"params": params},
    batch["pitch"],
    batch["duration"],
    conditions={name: batch[name] for name in model.config.conditions},
    channel_mask=channel_mask,
    carry=carry,
    last_only=last,
    target_pitch=target_pitch[:, None] if last else target_pitch,
    **extra,
  )
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
  sums = {
    "nll_pitch": jnp.sum(nll_pitch * mask),
    "nll_duration": jnp.sum(nll_duration * mask),
    "correct_pitch": jnp.sum(hit_pitch),
    "correct_duration": jnp.sum(hit_duration),
    "correct_both": jnp.sum(hit_pitch * hit_duration),
    "count": jnp.sum(mask),
  }
  return sums, final


def initial_carry(state: state_lib.TrainState, batch) -> Any:
  """Each lane's carried state where its row continues the previous
  window (`batch['continues']`), zeros elsewhere; None without a carried
  state. No gradient flows into it (it is not a parameter)."""
  if state.carry is None:
    return None
  keep = batch["continues"].astype(bool)[:, None]
  return jax.tree.map(lambda x: jnp.where(keep, x, 0.0), state.carry)


def _train_body(
  state: state_lib.TrainState,
  batch,
  dropout_key,
  *,
  model,
  tx,
  objective,
  ema=(0.0, 0),
):
  """One optimizer step on this device's shard; collectives over 'data'."""
  config = model.config
  channel_mask = model_lib.spatial_dropout_mask(
    jax.random.fold_in(dropout_key, state.step),
    batch["rows"],
    config.input_dim,
    config.spatial_dropout,
  )

  carry = initial_carry(state, batch)
  dropout = None
  if config.arch == "transformer":
    # Another stream of the step's key than the input's channel mask.
    step_key = jax.random.fold_in(dropout_key, state.step)
    dropout = (jax.random.fold_in(step_key, 1), batch["rows"])

  def loss_fn(params):
    sums, final = forward_sums(
      model, params, batch, objective, channel_mask, carry, dropout
    )
    count = jax.lax.psum(sums["count"], parallel.DATA_AXIS)
    loss = (sums["nll_pitch"] + sums["nll_duration"]) / jnp.maximum(count, 1)
    return loss, (sums, final)

  grads, (sums, final) = jax.grad(loss_fn, has_aux=True)(state.params)
  grads = jax.lax.psum(grads, parallel.DATA_AXIS)
  sums = jax.lax.psum(sums, parallel.DATA_AXIS)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  sums["grad_norm"] = optax.tree.norm(grads)
  step = state.step + 1
  average = state.ema
  if average is not None:
    average = state_lib.update_ema(average, params, step, *ema)
  return state.replace(
    step=step,
    params=params,
    opt_state=opt_state,
    ema=average,
    carry=None if carry is None else final,
  ), sums


def _eval_body(params, batch, *, model, objective):
  sums = compute_sums(model, params, batch, objective)
  return jax.lax.psum(sums, parallel.DATA_AXIS)


def make_steps(
  model,
  tx,
  objective: str,
  runner: parallel.Jit,
  *,
  ema: tuple[float, int] = (0.0, 0),
  carry_state: bool = False,
):
  """The compiled (train_step, eval_step) for a data-parallel `runner`.

  train_step(state, batch, dropout_key) -> (state, sums); the state is
  donated, and a state with an average (`state.ema`) has it updated with
  `ema` = (decay, start step) (`state.update_ema`); with `carry_state` its
  `carry` is split over the batch like the batch (and batches hold
  `continues`). eval_step(params, batch) -> sums. Batches come from
  `runner.put_batch`.
  """
  train_body = functools.partial(
    _train_body, model=model, tx=tx, objective=objective, ema=ema
  )
  eval_body = functools.partial(_eval_body, model=model, objective=objective)
  state_split = (
    state_lib.TrainState(
      step=False, params=False, opt_state=False, ema=False, carry=True
    )
    if carry_state
    else False
  )
  train_step = runner.wrap(
    train_body,
    (state_split, True, False),
    donate=True,
    out_split=(state_split, False),
  )
  eval_step = runner.wrap(eval_body, (False, True))
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


def evaluate(
  eval_step,
  runner: parallel.Jit,
  params,
  windows: windows_lib.Windows,
  batch_size: int,
) -> dict[str, float]:
  """Sums over every window of a split (one pass, pad rows masked)."""
  totals = dict.fromkeys(SUM_KEYS, 0.0)
  for batch in windows_lib.eval_batches(
    windows,
    batch_size,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  ):
    sums = runner.fetch(eval_step(params, runner.put_batch(batch.as_dict())))
    for k in SUM_KEYS:
      totals[k] += float(sums[k])
  return totals


def check_finite(
  step: int, sums: Mapping[str, Any], last_good: int | None, workdir: str
) -> None:
  """Stops at a non-finite loss or gradient norm, naming step and remedy.

  Raises:
    TrainingError: names the step and the last good checkpoint.
  """
  loss = float(sums["nll_pitch"]) + float(sums["nll_duration"])
  grad_norm = float(sums["grad_norm"])
  if np.isfinite(loss) and np.isfinite(grad_norm):
    return
  what = "loss" if not np.isfinite(loss) else "gradient"
  raise errors.TrainingError(
    f"non-finite {what} at step {step} (loss {loss}, gradient norm "
    f"{grad_norm}); training stopped, last good checkpoint: step "
    f"{last_good} in {workdir}. Hint: lower config.train.learning_rate or "
    "set config.train.grad_clip_norm, then run again to resume from it"
  )
