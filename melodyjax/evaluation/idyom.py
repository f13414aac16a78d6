"""The strongest classical melody predictors: short-term models and IDyOM's
combination of long- and short-term models (Pearce 2005). No JAX.

A long-term model is fitted on the training corpus (`ngram.KneserNey`). A
short-term model is fitted, as it goes, on the song being predicted: the
distribution before event i of a song comes from that song's events before
i alone, and it is reset for every song. Two short-term smoothings:

- `kn`: interpolated Kneser-Ney (`ngram.fit`, plain discounting) refitted on
  the song's prefix before every event.
- `ppm`: PPM with escape method C and interpolated blending, as IDyOM uses:
  for a context h seen N(h) times with T(h) distinct next tokens,
  p(w | h) = (c(h w) + T(h) p(w | h')) / (N(h) + T(h)), h' being h without
  its first token; unseen contexts back off fully; below order 1 the
  uniform distribution over the predictable tokens.

`combine` is IDyOM's entropy-weighted geometric combination of several
models' distributions: p(w) is proportional to prod_m p_m(w) ** w_m with
w_m = H_rel(p_m) ** -b, H_rel the entropy of p_m over that of the uniform
distribution and b >= 0 the bias (0: equal weights), chosen on validation;
`votes` scale each model's weight (a long-term model given 3 votes counts
as if listed three times), chosen on validation too. `mix` is the linear
alternative: (1 - w) p + w q of a model p and the short-term model q, q's
end of song left to p (the short-term model has heard none), w per band of
q's relative entropy (`choose_mixture`).
Every model's distributions are scored by `scoring.score_distributions`,
like the LSTM's.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

import numpy as np

from melodyjax.evaluation import ngram
from melodyjax.music import tokens

SHORT_TERM = ("kn", "ppm")
BIASES = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0)
VOTES = (1.0, 2.0, 3.0, 4.0)
MIXTURE_BANDS = 4
MIXTURE_WEIGHTS = (
  0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95
)  # fmt: skip
_FLOOR = 1e-12


def _uniform(vocab_size: int) -> np.ndarray:
  p = np.zeros(vocab_size)
  p[2:] = 1.0 / (vocab_size - 2)  # every id but pad and bos
  return p


def ppm_distributions(
  song: np.ndarray, vocab_size: int, order: int
) -> np.ndarray:
  """PPM-C distributions before each event of `song` and its eos.

  Args:
    song: int [num_events] ids (no bos or eos).
    vocab_size: the stream's vocabulary size, reserved ids included.
    order: longest context (tokens) is order - 1; order >= 1.

  Returns:
    float64 [num_events + 1, vocab_size], each row from the song's own
    earlier events only.
  """
  framed = list(np.asarray(song, np.int64)) + [tokens.EOS_ID]
  counts: dict[tuple, collections.Counter] = collections.defaultdict(
    collections.Counter
  )
  uniform = _uniform(vocab_size)
  out = np.empty((len(framed), vocab_size))
  history: list[int] = []
  for i, target in enumerate(framed):
    p = uniform
    for n in range(0, order):  # context lengths 0..order-1, shortest first
      if n > len(history):
        break
      context = tuple(history[len(history) - n :]) if n else ()
      seen = counts.get(context)
      if not seen:
        continue
      total, distinct = sum(seen.values()), len(seen)
      mixed = distinct * p
      for token, count in seen.items():
        mixed[token] += count
      p = mixed / (total + distinct)
    out[i] = p
    for n in range(0, order):
      if n > len(history):
        break
      context = tuple(history[len(history) - n :]) if n else ()
      counts[context][target] += 1
    history.append(int(target))
  return out


def kn_distributions(
  song: np.ndarray, vocab_size: int, order: int
) -> np.ndarray:
  """Short-term Kneser-Ney distributions before each event and the eos."""
  framed = np.asarray(song, np.int64)
  out = np.empty((len(framed) + 1, vocab_size))
  out[0] = _uniform(vocab_size)
  for i in range(1, len(framed) + 1):
    model = ngram.fit([framed[:i]], vocab_size, order, "plain", False)
    out[i] = model.prob_dist(framed[:i])
  return out


def short_term_distributions(
  songs: Sequence[np.ndarray], vocab_size: int, order: int, kind: str = "ppm"
) -> np.ndarray:
  """The short-term model's distributions for every target of `songs`.

  Targets are in the order of `ngram.KneserNey.distributions`: each song's
  events then its eos, songs in order.
  """
  fn = {"kn": kn_distributions, "ppm": ppm_distributions}[kind]
  rows = [fn(song, vocab_size, order) for song in songs]
  return np.concatenate(rows) if rows else np.zeros((0, vocab_size))


def relative_entropy(probs: np.ndarray) -> np.ndarray:
  """Entropy of each row over that of the uniform distribution on the
  predictable tokens, in (0, 1]."""
  p = np.maximum(probs[:, 2:], _FLOOR)
  h = -np.sum(p * np.log2(p), axis=1)
  return np.maximum(h / np.log2(probs.shape[1] - 2), 1e-6)


def combine(
  distributions: Sequence[np.ndarray],
  bias: float,
  votes: Sequence[float] | None = None,
) -> np.ndarray:
  """IDyOM's entropy-weighted geometric combination (see the module doc).

  Args:
    distributions: each float [targets, vocab], rows summing to 1.
    bias: b >= 0; the larger, the more a confident model dominates.
    votes: each model's weight multiplier (None: 1 each).

  Returns:
    float64 [targets, vocab], rows summing to 1 (0 for pad and bos).
  """
  votes = votes or [1.0] * len(distributions)
  weights = [
    v * relative_entropy(p) ** -bias
    for v, p in zip(votes, distributions, strict=True)
  ]
  total = np.sum(weights, axis=0)
  log_p = sum(
    (w / total)[:, None] * np.log(np.maximum(p, _FLOOR))
    for w, p in zip(weights, distributions, strict=True)
  )
  log_p[:, :2] = -np.inf
  log_p -= np.max(log_p, axis=1, keepdims=True)
  p = np.exp(log_p)
  return p / p.sum(axis=1, keepdims=True)


def choose_bias(
  distributions: Sequence[np.ndarray],
  targets: np.ndarray,
  biases: Sequence[float] = BIASES,
) -> tuple[float, dict[float, float]]:
  """The bias with the lowest bits per target (validation), and all."""
  bits = {}
  for bias in biases:
    p = combine(distributions, bias)
    p_target = p[np.arange(len(targets)), targets]
    bits[bias] = float(-np.mean(np.log2(np.maximum(p_target, _FLOOR))))
  best = min(bits, key=lambda b: (bits[b], b))
  return best, bits


def choose_combination(
  long_term: np.ndarray, short: np.ndarray, targets: np.ndarray
) -> tuple[float, float, float]:
  """The bias and the long-term model's votes (`BIASES` x `VOTES`) of the
  two models' combination with the lowest bits per target (validation):
  (bias, votes, bits)."""
  best = (np.inf, 0.0, 1.0)
  for votes in VOTES:
    for bias in BIASES:
      p = combine([long_term, short], bias, [votes, 1.0])
      best = min(best, (bits(p, targets), bias, votes))
  return best[1], best[2], best[0]


def bits(probs: np.ndarray, targets: np.ndarray) -> float:
  """Mean -log2 probability of the targets (rows of `probs`)."""
  return _bits_of(probs[np.arange(len(targets)), targets])


def _bits_of(p_targets: np.ndarray) -> float:
  return float(-np.mean(np.log2(np.maximum(p_targets, 1e-300))))


def _bands(short: np.ndarray, bands: int) -> np.ndarray:
  """Each row's band of `short`'s relative entropy, of `bands` equal ones."""
  band = np.floor(relative_entropy(short) * bands).astype(int)
  return np.clip(band, 0, bands - 1)


def _end_left_to(p: np.ndarray, short: np.ndarray) -> np.ndarray:
  """`short` with its eos probability set to p's, its other ids
  renormalised over the rest."""
  eos = tokens.EOS_ID
  q = short.copy()
  q[:, eos] = 0.0
  q /= np.maximum(q.sum(axis=1, keepdims=True), _FLOOR)
  q *= 1.0 - p[:, eos : eos + 1]
  q[:, eos] = p[:, eos]
  return q


def mix(p: np.ndarray, short: np.ndarray, weights) -> np.ndarray:
  """(1 - w) p + w q for rows [targets, vocab] of a model `p` and the
  short-term model `short` (see the module doc; the same as
  `model.memory.mix_short_term`): q is `short` with its eos probability set
  to p's and its other ids renormalised over the rest, w is
  `weights[band]` for the band of `short`'s relative entropy."""
  weights = np.asarray(weights, np.float64)
  w = weights[_bands(short, len(weights))][:, None]
  return (1.0 - w) * p + w * _end_left_to(p, short)


def choose_mixture(
  p: np.ndarray,
  short: np.ndarray,
  targets: np.ndarray,
  bands: int = MIXTURE_BANDS,
) -> tuple[tuple[float, ...], float]:
  """Each entropy band's weight of `mix` on validation (the bands are
  disjoint, so each is chosen alone from `MIXTURE_WEIGHTS`), and the bits
  per target of the chosen mixture. Only the targets' probabilities are
  mixed: the mixture is linear."""
  rows = np.arange(len(targets))
  p_t = p[rows, targets]
  q_t = _end_left_to(p, short)[rows, targets]
  band = _bands(short, bands)
  chosen = []
  for k in range(bands):
    here = band == k
    best = (np.inf, 0.0)
    for w in MIXTURE_WEIGHTS if here.any() else ():
      mixed = (1.0 - w) * p_t[here] + w * q_t[here]
      best = min(best, (_bits_of(mixed), w))
    chosen.append(best[1])
  w = np.asarray(chosen)[band]
  return tuple(chosen), _bits_of((1.0 - w) * p_t + w * q_t)
