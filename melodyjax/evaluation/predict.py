"""The model's next-event distributions over held-out songs (JAX).

Every event and every eos of every original song of a split is a target,
each song predicted from its start (bos) to its end, not from fixed
windows; `scoring.score_distributions` turns the distributions into bits
per note and accuracies, as it does for the baselines.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from melodyjax import errors
from melodyjax.data import build, windows
from melodyjax.data import dataset as dataset_lib
from melodyjax.evaluation import scoring
from melodyjax.music import tokens
from melodyjax.training import runs


@functools.partial(jax.jit, static_argnames="model")
def _log_probs(model, params, pitch, duration, conditions, target_pitch):
  """Next-event log-probabilities at every position, [batch, time, vocab];
  a `duration_given_pitch` model's durations are given `target_pitch`, the
  true pitch of each predicted event."""
  pitch_logits, duration_logits, _ = model.apply(
    {"params": params},
    pitch,
    duration,
    conditions=conditions,
    target_pitch=target_pitch,
  )
  return (
    jax.nn.log_softmax(pitch_logits, axis=-1),
    jax.nn.log_softmax(duration_logits, axis=-1),
  )


def song_batches(split: dataset_lib.Split, batch_size: int, multiple: int = 32):
  """Original songs, by length, framed: inputs [bos, events], targets
  [events, eos]; padded to a multiple of `multiple` (few compilations).
  Yields (the songs' rows in `split`, {stream: (inputs, targets)},
  {condition: ids})."""
  rows = split.originals()
  lengths = np.diff(split.offsets)[rows]
  rows = rows[np.argsort(lengths, kind="stable")]
  for start in range(0, len(rows), batch_size):
    chunk = rows[start : start + batch_size]
    longest = int(np.diff(split.offsets)[chunk].max()) + 1
    width = -(-longest // multiple) * multiple
    streams = {}
    for stream in tokens.STREAMS:
      inputs = np.zeros((len(chunk), width), np.int32)
      targets = np.zeros((len(chunk), width), np.int32)
      flat = getattr(split, stream)
      for i, row in enumerate(chunk):
        ids = flat[split.offsets[row] : split.offsets[row + 1]]
        inputs[i, 0] = tokens.BOS_ID
        inputs[i, 1 : len(ids) + 1] = ids
        targets[i, : len(ids)] = ids
        targets[i, len(ids)] = tokens.EOS_ID
      streams[stream] = (inputs, targets)
    conditions = {
      name: np.full((len(chunk), width), windows.PAD_CONDITION[name], np.int32)
      for name in windows.CONDITIONS
    }
    for i, row in enumerate(chunk):
      for name, values in windows.song_conditions(split, row).items():
        conditions[name][i, : len(values)] = values
    yield chunk, streams, conditions


def model_distributions(
  run: runs.Run, split: dataset_lib.Split, batch_size: int = 64
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """The model's next-event distribution at every target of a split.

  Returns:
    {stream: (probs float64 [num_targets, vocab], targets int [num_targets])}
    with targets in song order of length (the baseline uses the same set).
    A `duration_given_pitch` model's duration distributions are given each
    target's true pitch, so the bits of both streams add up to the exact
    joint; the joint top-k of `scoring` then ranks pairs by the pitch
    distribution times that one duration distribution, not the full joint.
  """
  out = {stream: ([], []) for stream in tokens.STREAMS}
  for _, batch, conditions in song_batches(split, batch_size):
    log_probs = _log_probs(
      run.model,
      run.params,
      batch["pitch"][0],
      batch["duration"][0],
      {name: conditions[name] for name in run.model.config.conditions},
      batch["pitch"][1],
    )
    for stream, lp in zip(tokens.STREAMS, log_probs, strict=True):
      targets = batch[stream][1]
      mask = targets != tokens.PAD_ID
      out[stream][0].append(np.exp(np.asarray(lp, np.float64)[mask]))
      out[stream][1].append(targets[mask])
  return {
    stream: (np.concatenate(p), np.concatenate(t))
    for stream, (p, t) in out.items()
  }


def load_dataset_of(run: runs.Run) -> dataset_lib.Dataset:
  """The run's dataset (built if needed), checked against its vocabularies."""
  # A fine-tuned run's corpus is tokenized with its base run's vocabularies,
  # which are the run's own.
  fixed = bool(run.config.data.get("vocab_from"))
  dataset = build.prepare_dataset(
    run.config.data,
    progress=False,
    vocabs=(run.pitch_vocab, run.duration_vocab) if fixed else None,
    label_vocabs=run.labels if fixed else None,
  )
  if (dataset.pitch_vocab.tokens, dataset.duration_vocab.tokens) != (
    run.pitch_vocab.tokens,
    run.duration_vocab.tokens,
  ):
    raise errors.GenerateError(
      f"the dataset in {dataset.path} has other vocabularies than {run.workdir}"
    )
  if run.model.config.conditions and dataset.labels != run.labels:
    raise errors.GenerateError(
      f"the dataset in {dataset.path} has other labels than {run.workdir}"
    )
  return dataset


def score_split(
  run: runs.Run,
  split: str = "test",
  dataset: dataset_lib.Dataset | None = None,
) -> dict[str, float]:
  """`scoring.score_distributions` of the run on one split of its dataset
  (`load_dataset_of` unless given): bits per note per stream and both."""
  dataset = dataset or load_dataset_of(run)
  return scoring.score_distributions(
    model_distributions(run, getattr(dataset, split))
  )
