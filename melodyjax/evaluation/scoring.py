"""Scoring next-event distributions: bits per note and top-k accuracy. No JAX.

One scorer for the model and every baseline, so that the columns of a
report are computed alike: given each target's distribution and the
target, `score_distributions` gives bits per note per stream and for both,
and top-1/top-5 accuracies (for both streams from their product).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from melodyjax.music import tokens

TOP_K = (1, 5)


def ranks(probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
  """0-based rank of each target in its distribution (ties: lower id first).

  Args:
    probs: float [M, V] probabilities.
    targets: int [M] ids.

  Returns:
    int64 [M]; a target is in the top k when its rank is < k.
  """
  p_target = np.take_along_axis(probs, targets[:, None], axis=1)
  ids = np.arange(probs.shape[1])
  above = probs > p_target
  tied_before = (probs == p_target) & (ids[None] < targets[:, None])
  return np.sum(above | tied_before, axis=1)


def joint_ranks(
  pitch_probs: np.ndarray,
  pitch_targets: np.ndarray,
  duration_probs: np.ndarray,
  duration_targets: np.ndarray,
  chunk: int = 1024,
) -> np.ndarray:
  """Rank of each (pitch, duration) target under the product distribution.

  Args:
    pitch_probs: float [M, Vp]; duration_probs: float [M, Vd].
    pitch_targets, duration_targets: int [M].
    chunk: rows per step (memory is chunk * Vp * Vd floats).

  Returns:
    int64 [M] 0-based ranks of the pairs (flat id pitch * Vd + duration).
  """
  vd = duration_probs.shape[1]
  out = []
  for s in range(0, len(pitch_probs), chunk):
    joint = (
      pitch_probs[s : s + chunk, :, None] * duration_probs[s : s + chunk, None]
    ).reshape(-1, pitch_probs.shape[1] * vd)
    flat = pitch_targets[s : s + chunk] * vd + duration_targets[s : s + chunk]
    out.append(ranks(joint, flat))
  return np.concatenate(out) if out else np.zeros(0, np.int64)


def score_distributions(
  distributions: Mapping[str, tuple[np.ndarray, np.ndarray]],
) -> dict[str, float]:
  """Bits per note and top-k accuracy from per-target distributions.

  The streams are scored as independent
  given the context (true of both models), so the joint bits are the sum of
  the two streams' and the joint distribution is their product.

  Args:
    distributions: {stream: (probs float [num_targets, vocab], targets int
      [num_targets])}, the same targets in the same order for both streams.

  Returns:
    {"bits_per_note", "bits_per_note_pitch", "bits_per_note_duration",
    "top1_pitch", "top5_pitch", "top1_duration", "top5_duration", "top1"
    (both streams right), "top5" (the pair among the 5 likeliest pairs),
    "num_targets"}.
  """
  result = {}
  for stream in tokens.STREAMS:
    probs, targets = distributions[stream]
    p_target = np.take_along_axis(probs, targets[:, None], axis=1)[:, 0]
    result[f"bits_per_note_{stream}"] = float(
      -np.mean(np.log2(np.maximum(p_target, 1e-300)))
    )
    rank = ranks(probs, targets)
    for k in TOP_K:
      result[f"top{k}_{stream}"] = float(np.mean(rank < k))
  result["bits_per_note"] = (
    result["bits_per_note_pitch"] + result["bits_per_note_duration"]
  )
  rank = joint_ranks(*distributions["pitch"], *distributions["duration"])
  for k in TOP_K:
    result[f"top{k}"] = float(np.mean(rank < k))
  result["num_targets"] = len(distributions["pitch"][1])
  return result
