"""The n-gram baseline: interpolated Kneser-Ney, one model per stream. No JAX.

The baseline the LSTM must beat is fitted on the same training split and
scored on the same targets: every event of a song and its eos, each predicted
from the tokens before it. A song is framed as `order - 1` bos tokens, its
events, then eos; bos is context only and never predicted, pad never occurs.
Probabilities are over the stream's predictable tokens, every id but pad and
bos (eos and unk included), and sum to 1 there.

The smoothing is interpolated Kneser-Ney (Chen & Goodman, 1998), by default
their modified variant with three discounts per order, D_n(1), D_n(2) and
D_n(3+) for n-grams seen once, twice and more often; `discounting='plain'`
gives one discount per order. At order n, for a context h seen at that order:

  p_n(w | h) = (a(h w) - D_n(a(h w)) + gamma(h) p_{n-1}(w | h')) / a(h)

with D_n(0) = 0, h' the context without its first token, a(h w) the
adjusted count of the n-gram, a(h) = sum_w a(h w) and gamma(h) = sum_w
D_n(a(h w)), the mass handed to the lower order (D_n N1+(h .) in plain KN).
A context never seen at order n backs off fully: p_n = p_{n-1}. Adjusted
counts are raw counts at the highest order and for n-grams that start with
bos (as in KenLM: their left neighbour is padding, not a token), else
continuation counts N1+(. g), the number of distinct tokens seen just before
g. Discounts come from the count-of-counts n_k of the adjusted counts of
order n: Y = n1 / (n1 + 2 n2); plain D = Y; modified D(1) = 1 - 2 Y n2 / n1,
D(2) = 2 - 3 Y n3 / n2, D(3+) = 3 - 4 Y n4 / n3, each clipped to
[`MIN_DISCOUNT`, k]; an order with any of n1..n4 zero (a tiny or degenerate
corpus) gets the plain discount for all three. The floor keeps unseen tokens
above zero even when no n-gram of an order was seen once. Below the unigram
level is the uniform distribution over the predictable tokens, so every
predictable token has a probability > 0 in every context.

Counts live in sorted int64 arrays keyed by the n-gram read as a number in
base `vocab_size` (first token most significant), so fitting and scoring are
vectorized numpy: `vocab_size ** order` must stay below 2**63.

Command line: `python -m melodyjax.cli.ngram --dataset DIR` fits both
streams, chooses each order on the validation split and reports the test
split.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from melodyjax.data import dataset as dataset_lib
from melodyjax.evaluation import scoring
from melodyjax.music import tokens

MIN_DISCOUNT = 0.1
DISCOUNTING = ("modified", "plain")
# 'single': one bos per song as context, as KenLM frames a sentence: an
# n-gram never starts with two bos, so a song's first events are predicted
# from the shortest context that says "at the start" (the default, and 0.02
# to 0.06 bits per token better on ESAC); 'padded': order - 1 bos tokens,
# each n-gram of them counted.
FRAMINGS = ("single", "padded")
MAX_ORDER = 12


@dataclasses.dataclass(frozen=True)
class Level:
  """The counts of one order n.

  Attributes:
    keys: int64 [types] sorted keys of the n-grams seen.
    counts: float64 [types] their adjusted counts a(h w).
    context_keys: int64 [contexts] sorted keys of the contexts h (n-1 tokens;
      a single key 0 for the empty context of the unigram level).
    context_totals: float64 [contexts] a(h), the sum of a(h w) over w.
    context_backoff: float64 [contexts] gamma(h), the sum over w of the
      discount taken from a(h w).
    discounts: (D_n(1), D_n(2), D_n(3+)); all equal in plain KN.
  """

  keys: np.ndarray
  counts: np.ndarray
  context_keys: np.ndarray
  context_totals: np.ndarray
  context_backoff: np.ndarray
  discounts: tuple[float, float, float]


def _lookup(
  sorted_keys: np.ndarray, keys: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
  """(index, found) of each of `keys` in `sorted_keys` (index clipped)."""
  index = np.searchsorted(sorted_keys, keys)
  index = np.minimum(index, max(len(sorted_keys) - 1, 0))
  if len(sorted_keys) == 0:
    return index, np.zeros(keys.shape, bool)
  return index, sorted_keys[index] == keys


@dataclasses.dataclass(frozen=True)
class KneserNey:
  """A fitted interpolated Kneser-Ney model of one stream.

  Attributes:
    vocab_size: ids are 0..vocab_size-1; pad and bos are never predicted.
    order: n of the n-grams (1: unigram; the context is order - 1 tokens).
    levels: the counts of orders 1..order, `levels[n - 1]` for order n.
  """

  vocab_size: int
  order: int
  levels: tuple[Level, ...]

  @property
  def discounts(self) -> tuple[tuple[float, float, float], ...]:
    """(D_n(1), D_n(2), D_n(3+)) for n = 1..order."""
    return tuple(level.discounts for level in self.levels)

  def window_probs(self, windows: np.ndarray) -> np.ndarray:
    """Probability of each window's last token given the ones before it.

    Args:
      windows: int [M, order] ids; column -1 is the predicted token, the
        columns before it its context (bos-padded at a song's start).

    Returns:
      float64 [M] probabilities, each > 0 for a predictable token.
    """
    windows = np.asarray(windows, np.int64)
    v = self.vocab_size
    p = np.full(len(windows), 1.0 / (v - 2))
    key = np.zeros(len(windows), np.int64)
    for n, level in enumerate(self.levels, start=1):
      key = key + windows[:, self.order - n] * v ** (n - 1)
      if not len(level.keys):  # no n-gram of this order (a tiny corpus)
        continue
      ci, seen_context = _lookup(level.context_keys, key // v)
      ki, seen = _lookup(level.keys, key)
      count = np.where(seen, level.counts[ki], 0.0)
      table = np.array((0.0, *level.discounts))
      discount = table[np.minimum(count, 3).astype(np.int64)]
      mixed = (
        count - discount + level.context_backoff[ci] * p
      ) / level.context_totals[ci]
      p = np.where(seen_context, mixed, p)
    return p

  def log_prob(self, sequences: Sequence[np.ndarray]) -> np.ndarray:
    """Natural-log probability of every predicted token.

    Args:
      sequences: songs as int arrays of ids [num_events] (no bos or eos).

    Returns:
      float64 [sum(num_events + 1)]: each song's events then its eos, songs
      in order.
    """
    windows = song_windows(sequences, self.order, self.vocab_size)
    return np.log(self.window_probs(windows))

  def prob_dist(self, context: Sequence[int] | np.ndarray) -> np.ndarray:
    """The next-token distribution after `context`.

    Args:
      context: the song's ids so far (events only; leading bos is harmless).

    Returns:
      float64 [vocab_size] probabilities: 0 for pad and bos, summing to 1.
    """
    context = np.asarray(context, np.int64).reshape(-1)
    _check_ids(context, self.vocab_size, allow_bos=True)
    history = np.concatenate(
      [np.full(self.order - 1, tokens.BOS_ID, np.int64), context]
    )[len(context) :]
    return self.distributions_from_histories(history[None])[0]

  def distributions_from_histories(
    self, histories: np.ndarray, chunk: int = 4096
  ) -> np.ndarray:
    """Next-token distributions for many contexts at once.

    Args:
      histories: int [M, order - 1] ids, bos-padded contexts.
      chunk: contexts scored per step (memory grows with it).

    Returns:
      float64 [M, vocab_size] probabilities: 0 for pad and bos.
    """
    histories = np.asarray(histories, np.int64)
    if histories.ndim != 2 or histories.shape[1] != self.order - 1:
      raise ValueError(
        f"histories must be [M, {self.order - 1}], got {histories.shape}"
      )
    m, v = len(histories), self.vocab_size
    candidates = np.arange(2, v, dtype=np.int64)
    out = np.zeros((m, v))
    for s in range(0, m, chunk):
      block = histories[s : s + chunk]
      windows = np.concatenate(
        [
          np.repeat(block, len(candidates), axis=0),
          np.tile(candidates, len(block))[:, None],
        ],
        axis=1,
      )
      out[s : s + chunk, 2:] = self.window_probs(windows).reshape(
        len(block), len(candidates)
      )
    return out

  def distributions(
    self, sequences: Sequence[np.ndarray]
  ) -> tuple[np.ndarray, np.ndarray]:
    """The distribution before every predicted token, and the token.

    Args:
      sequences: songs as int arrays of ids [num_events].

    Returns:
      (float64 [targets, vocab_size] probabilities, int64 [targets] ids),
      targets in the order of `log_prob`.
    """
    windows = song_windows(sequences, self.order, self.vocab_size)
    return (
      self.distributions_from_histories(windows[:, :-1]),
      windows[:, -1].copy(),
    )


def _check_ids(ids: np.ndarray, vocab_size: int, allow_bos: bool) -> None:
  if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
    raise ValueError(
      f"token ids must be in [0, {vocab_size}), got {ids.min()}..{ids.max()}"
    )
  if np.any(ids == tokens.PAD_ID):
    raise ValueError("pad (id 0) inside a song")
  if not allow_bos and np.any(ids == tokens.BOS_ID):
    raise ValueError("bos (id 1) inside a song; the model adds it")


def song_windows(
  sequences: Sequence[np.ndarray],
  order: int,
  vocab_size: int,
  end_with_eos: bool = True,
) -> np.ndarray:
  """Every predicted token of the songs with the order - 1 tokens before it.

  Args:
    sequences: songs as int arrays of ids [num_events] (no bos or eos).
    order: n; windows are n tokens long.
    vocab_size: for checking the ids.

  Returns:
    int64 [sum(num_events + 1), order]: one row per event and eos, bos-padded
    at each song's start.
  """
  if order < 1:
    raise ValueError(f"order must be >= 1, got {order}")
  pad = order - 1
  parts, targets, start = [], [], 0
  for seq in sequences:
    seq = np.asarray(seq, np.int64).reshape(-1)
    _check_ids(seq, vocab_size, allow_bos=False)
    framed = np.concatenate(
      [np.full(pad, tokens.BOS_ID), seq, [tokens.EOS_ID][:end_with_eos]]
    ).astype(np.int64)
    parts.append(framed)
    targets.append(np.arange(start + pad, start + len(framed)))
    start += len(framed)
  if not parts:
    return np.zeros((0, order), np.int64)
  flat = np.concatenate(parts)
  target = np.concatenate(targets)
  return flat[target[:, None] + np.arange(-pad, 1)]


def _discounts(
  counts: np.ndarray, discounting: str
) -> tuple[float, float, float]:
  """(D(1), D(2), D(3+)) from the count-of-counts of adjusted counts."""
  n = [int(np.sum(counts == k)) for k in range(5)]
  plain = max(n[1] / max(n[1] + 2 * n[2], 1), MIN_DISCOUNT)
  if discounting == "plain" or min(n[1:]) == 0:
    return plain, plain, plain
  y = n[1] / (n[1] + 2 * n[2])
  return tuple(
    float(np.clip(k - (k + 1) * y * n[k + 1] / n[k], MIN_DISCOUNT, k))
    for k in (1, 2, 3)
  )


def _check_fit(vocab_size: int, order: int, discounting: str, framing: str):
  if framing not in FRAMINGS:
    raise ValueError(f"framing must be one of {FRAMINGS}, got {framing!r}")
  if discounting not in DISCOUNTING:
    raise ValueError(
      f"discounting must be one of {DISCOUNTING}, got {discounting!r}"
    )
  if vocab_size < 3:
    raise ValueError(f"vocab_size must be >= 3, got {vocab_size}")
  if vocab_size**order >= 2**63:
    raise ValueError(
      f"vocab_size ** order = {vocab_size}**{order} overflows int64 keys"
    )


def fit(
  sequences: Sequence[np.ndarray],
  vocab_size: int,
  order: int,
  discounting: str = "modified",
  end_with_eos: bool = True,
  framing: str = "single",
) -> KneserNey:
  """Fits an interpolated Kneser-Ney model (see the module docstring).

  Fitting is a handful of sorts: about 0.2 s for 414k events at order 8.

  Args:
    sequences: training songs as int arrays of ids [num_events], no bos or
      eos; ids in [0, vocab_size), never pad or bos.
    vocab_size: the stream's vocabulary size, reserved ids included.
    order: n, 1 (unigram) to whatever keeps vocab_size ** order < 2**63.
    discounting: 'modified' (three discounts per order) or 'plain' (one).
    end_with_eos: count each song's eos (False: the songs are unfinished
      prefixes, as for a short-term model).
    framing: 'single' or 'padded' bos (see `FRAMINGS`).

  Returns:
    The fitted model.
  """
  _check_fit(vocab_size, order, discounting, framing)
  windows = song_windows(sequences, order, vocab_size, end_with_eos)
  if not len(windows):
    raise ValueError("no training songs")
  return fit_windows(windows, vocab_size, discounting, framing)


def fit_windows(
  windows: np.ndarray,
  vocab_size: int,
  discounting: str = "modified",
  framing: str = "single",
) -> KneserNey:
  """`fit` from the training windows themselves (`song_windows`' rows,
  any subset of them: those of one label, say); order = their width."""
  order = windows.shape[1]
  _check_fit(vocab_size, order, discounting, framing)
  if not len(windows):
    raise ValueError("no training windows")
  v = vocab_size
  levels = [None] * order
  key = np.zeros(len(windows), np.int64)
  keys_by_order = []
  for n in range(1, order + 1):
    key = key + windows[:, order - n] * v ** (n - 1)
    keys_by_order.append(key)
  upper_types = None
  for n in range(order, 0, -1):
    keys = keys_by_order[n - 1]
    if framing == "single" and n >= 3:
      leading = keys // v ** (n - 2)  # the n-gram's first two tokens
      keys = keys[
        (leading // v != tokens.BOS_ID) | (leading % v != tokens.BOS_ID)
      ]
    types, raw = np.unique(keys, return_counts=True)
    if n == order:
      counts = raw
    else:
      # Continuation counts: distinct left neighbours of each n-gram, read
      # off the (n+1)-gram types. Every n-gram that does not start with bos
      # has a left neighbour; those that do keep their raw counts.
      suffixes, continuation = np.unique(upper_types % v**n, return_counts=True)
      index, found = _lookup(suffixes, types)
      starts_with_bos = types // v ** (n - 1) == tokens.BOS_ID
      assert np.all(found | starts_with_bos)
      left = continuation[index] if len(continuation) else 0
      counts = np.where(starts_with_bos, raw, np.where(found, left, 0))
    counts = counts.astype(np.float64)
    discounts = _discounts(counts, discounting)
    taken = np.array(discounts)[np.minimum(counts, 3).astype(np.int64) - 1]
    context_keys, first = np.unique(types // v, return_index=True)
    levels[n - 1] = Level(
      keys=types,
      counts=counts,
      context_keys=context_keys,
      context_totals=np.add.reduceat(counts, first),
      context_backoff=np.add.reduceat(taken, first),
      discounts=discounts,
    )
    upper_types = types
  return KneserNey(vocab_size=vocab_size, order=order, levels=tuple(levels))


def bits_per_token(model: KneserNey, sequences: Sequence[np.ndarray]) -> float:
  """Mean negative log2-probability of the predicted tokens (events, eos)."""
  log_prob = model.log_prob(sequences)
  return float(-np.mean(log_prob) / math.log(2))


def largest_order(vocab_size: int, max_order: int = MAX_ORDER) -> int:
  """The highest order up to `max_order` whose keys fit in int64."""
  order = 1
  while order < max_order and vocab_size ** (order + 1) < 2**63:
    order += 1
  return order


def select_order(
  train: Sequence[np.ndarray],
  valid: Sequence[np.ndarray],
  vocab_size: int,
  max_order: int = MAX_ORDER,
  discounting: str = "modified",
) -> tuple[int, dict[int, float]]:
  """The order 1..max_order with the lowest validation bits per token
  (`max_order` lowered to what the vocabulary's keys allow).

  Returns:
    (best order, {order: validation bits per token}); ties go to the lower
    order.
  """
  bits = {}
  for order in range(1, largest_order(vocab_size, max_order) + 1):
    model = fit(train, vocab_size, order, discounting)
    bits[order] = bits_per_token(model, valid)
  best = min(bits, key=lambda n: (bits[n], n))
  return best, bits


def topk_accuracy(
  model: KneserNey,
  sequences: Sequence[np.ndarray],
  ks: Sequence[int] = scoring.TOP_K,
) -> dict[int, float]:
  """Share of predicted tokens among the model's k most probable ones."""
  probs, targets = model.distributions(sequences)
  rank = scoring.ranks(probs, targets)
  return {k: float(np.mean(rank < k)) for k in ks}


# ------------------------------------------------------------ both streams


def split_songs(
  split: dataset_lib.Split, stream: str, originals_only: bool = True
) -> list[np.ndarray]:
  """One stream of a split's songs (optionally without augmented copies)."""
  flat = getattr(split, stream)
  rows = split.originals() if originals_only else range(len(split))
  return [flat[split.offsets[i] : split.offsets[i + 1]] for i in rows]


def fit_streams(
  dataset: dataset_lib.Dataset,
  max_order: int = MAX_ORDER,
  discounting: str = "modified",
) -> dict[str, dict[str, Any]]:
  """One model per stream on the training split, order chosen on validation.

  Every training row is used (augmented copies too, as for the LSTM); the
  validation split is scored on original songs only.

  Args:
    dataset: the dataset.
    max_order: orders 1..max_order are tried.
    discounting: 'modified' or 'plain' Kneser-Ney.

  Returns:
    {stream: {"order": chosen n, "valid_bits": {n: bits per token},
    "fit_seconds": seconds to fit the chosen order, "select_seconds":
    seconds for the whole order search, "discounts": (D(1), D(2), D(3+))
    per order, "discounting", "model": the fitted KneserNey}} for stream in
    ("pitch", "duration").
  """
  vocab_sizes = {
    "pitch": len(dataset.pitch_vocab),
    "duration": len(dataset.duration_vocab),
  }
  fitted = {}
  for stream in tokens.STREAMS:
    train = split_songs(dataset.train, stream, originals_only=False)
    valid = split_songs(dataset.valid, stream)
    start = time.perf_counter()
    order, bits = select_order(
      train, valid, vocab_sizes[stream], max_order, discounting
    )
    select_seconds = time.perf_counter() - start
    start = time.perf_counter()
    model = fit(train, vocab_sizes[stream], order, discounting)
    fitted[stream] = {
      "order": order,
      "valid_bits": bits,
      "fit_seconds": time.perf_counter() - start,
      "select_seconds": select_seconds,
      "discounts": model.discounts,
      "discounting": discounting,
      "model": model,
    }
  return fitted


def evaluate_streams(
  dataset: dataset_lib.Dataset,
  fitted: Mapping[str, Mapping[str, Any]],
  split: str = "test",
) -> dict[str, float]:
  """Bits per note and top-k accuracy of the fitted models on a split.

  Original songs only; every event and each song's eos is a target.

  Args:
    dataset: the dataset.
    fitted: the output of `fit_streams`.
    split: 'valid' or 'test'.

  Returns:
    `scoring.score_distributions`'s result plus "order_pitch" and
    "order_duration".
  """
  data = dataset.splits[split]
  result = scoring.score_distributions(
    {
      stream: fitted[stream]["model"].distributions(split_songs(data, stream))
      for stream in tokens.STREAMS
    }
  )
  for stream in tokens.STREAMS:
    result[f"order_{stream}"] = fitted[stream]["model"].order
  return result


def format_results(
  fitted: Mapping[str, Mapping[str, Any]], results: Mapping[str, float]
) -> str:
  """The order search and the test results as a few lines of text."""
  lines = []
  for stream in tokens.STREAMS:
    f = fitted[stream]
    bits = "  ".join(f"{n}:{b:.4f}" for n, b in f["valid_bits"].items())
    lines.append(f"{stream} valid bits per order: {bits}")
    lines.append(
      f"{stream}: {f['discounting']} KN, order {f['order']} chosen, fitted in "
      f"{f['fit_seconds']:.2f} s (search {f['select_seconds']:.1f} s)"
    )
  lines.append(
    f"test bits per note: pitch {results['bits_per_note_pitch']:.4f}, "
    f"duration {results['bits_per_note_duration']:.4f}, both "
    f"{results['bits_per_note']:.4f} ({results['num_targets']} targets)"
  )
  for name in ("pitch", "duration"):
    lines.append(
      f"test {name} accuracy: top-1 {results[f'top1_{name}']:.4f}, "
      f"top-5 {results[f'top5_{name}']:.4f}"
    )
  lines.append(
    f"test both accuracy: top-1 {results['top1']:.4f}, "
    f"top-5 {results['top5']:.4f}"
  )
  return "\n".join(lines)
