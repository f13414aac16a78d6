"""Beam search and best-of-N inside the sampler's scan (Magenta's meaning).

Magenta's melody_rnn beam search (`events_rnn_model._beam_search`) keeps
`beam_size` sequences; each iteration extends each of them by
`branch_factor` sampled continuations of `steps_per_iteration` steps, then
keeps the `beam_size` likeliest of the `beam_size * branch_factor`, and
finally returns the likeliest. Here that runs on rows of one batch: each
melody has `beam_size * branch_factor` rows from the start (Magenta starts
from `beam_size` copies, each branched), every row samples its own events
(its own noise), and pruning gathers the kept rows' whole state (buffers,
LSTM carry, elapsed time, scores) into their copies. The likelihood is the
model's at the sampling temperature, before top-k, top-p and the
constraints' masks, as Magenta's (its softmax is tempered). One difference:
Magenta's melodies have a fixed number of steps, so it compares sums; here
a melody ends at eos, so rows rank by log-likelihood per sampled event (a
sum would favour the shortest). A finished row's copies are one melody:
all but one drop out at the next pruning. Best-of-N is `beam_size=1,
branch_factor=N` pruned only at the end.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def per_event(score, count):
  """Log-likelihood per sampled event: how rows are ranked (a melody ends
  at eos, so a sum would favour the shortest)."""
  return score / jnp.maximum(count, 1)


def prune(state, score, do_prune, beam_size: int, branch_factor: int):
  """Beam search: each melody keeps its `beam_size` likeliest rows, each
  copied `branch_factor` times (Magenta's `_prune_branches`).

  Args:
    state: pytree of [outputs * rows, ...] arrays (rows = beam_size *
      branch_factor per melody).
    score: float [outputs * rows] log-likelihoods; rows rank by
      `per_event` (state[5] holds the sampled events per row).
    do_prune: bool [outputs] which melodies prune now.
  """
  rows = beam_size * branch_factor
  rank = per_event(score, state[5]).reshape(-1, rows)
  score = score.reshape(-1, rows)
  outputs = score.shape[0]
  _, top = jax.lax.top_k(rank, beam_size)
  parents = jnp.where(
    do_prune[:, None], jnp.repeat(top, branch_factor, axis=1), jnp.arange(rows)
  )
  index = (parents + rows * jnp.arange(outputs)[:, None]).reshape(-1)
  state = jax.tree.map(lambda x: x[index], state)
  score = jnp.take_along_axis(score, parents, axis=1).reshape(-1)
  # A finished melody's copies are the same melody: keep one.
  copy = jnp.tile(jnp.arange(rows) % branch_factor, outputs)
  duplicate = jnp.repeat(do_prune, rows) & (copy > 0) & state[2]
  return state, jnp.where(duplicate, -jnp.inf, score)


def best(buffers, rank, rows: int):
  """Each melody's likeliest row of `buffers` ([outputs * rows, ...])."""
  best = jnp.argmax(rank.reshape(-1, rows), axis=1)
  index = best + rows * jnp.arange(best.shape[0])
  return tuple(buffer[index] for buffer in buffers)


def repeat_rows(
  rows: int, primer_pitch, primer_duration, primer_lengths, controls
):
  """Each melody's primer and per-melody controls, `rows` times."""
  if rows == 1:
    return primer_pitch, primer_duration, primer_lengths, controls
  repeat = lambda x: jnp.repeat(x, rows, axis=0)  # noqa: E731
  if controls is not None:
    per_row = controls._fields[:5]  # the [batch, ...] ones
    controls = controls._replace(
      **{f: repeat(getattr(controls, f)) for f in per_row}
    )
  return (
    repeat(primer_pitch),
    repeat(primer_duration),
    repeat(primer_lengths),
    controls,
  )


def prune_due(state, drawn, controls, beam_size: int, branch_factor: int):
  """`prune` the melodies that have sampled a multiple of
  `controls.steps_per_iteration` events (0: never); `state` is the
  sampler's scan state, its score last; `drawn` int [rows] the events
  sampled so far."""
  every = controls.steps_per_iteration if controls is not None else 1
  drawn = drawn[:: beam_size * branch_factor]
  due = (every > 0) & (drawn > 0) & (drawn % jnp.maximum(every, 1) == 0)
  kept, score = prune(state[:-1], state[-1], due, beam_size, branch_factor)
  return (*kept, score)
