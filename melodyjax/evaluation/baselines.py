"""Every baseline of the report, fitted and scored like the model. No JAX.

  ngram       long-term: interpolated modified Kneser-Ney per stream,
              fitted on the training split (`ngram`)
  short_term  short-term: PPM-C on the song being predicted (`idyom`)
  idyom       IDyOM's combination of the two, per stream (its bias and the
              long-term model's votes chosen on validation)
  mixture     the linear mixture of the two (`idyom.mix`, a weight per band
              of the short-term model's entropy), the rule the network's
              own short-term memory uses (`evaluation.memory`)
  best        per stream, whichever of the four is best on validation

Each model's order (and the combinations' settings) is chosen on the
validation split, per stream; "the baseline" of a claim is the one with
the lowest bits per note (both streams) on validation, which `best` is by
construction (on ESAC: IDyOM's combination for pitch, the long-term n-gram
for duration, where the song's own durations add nothing the corpus lacks).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

from melodyjax.data import dataset as dataset_lib
from melodyjax.evaluation import idyom, ngram, scoring
from melodyjax.music import tokens

MODELS = ("ngram", "short_term", "idyom", "mixture")
NAMES = (*MODELS, "best")
SHORT_TERM_ORDERS = (1, 2, 3, 4, 5, 6)


@dataclasses.dataclass(frozen=True)
class Fitted:
  """The baselines of one dataset, their settings chosen on validation.

  Attributes:
    ngram: `ngram.fit_streams`'s result (long-term model per stream).
    short_term_order: {stream: the short-term model's order}.
    bias: {stream: the combination's bias}.
    best_of_stream: {stream: the model of `MODELS` that `best` uses}.
    valid: {baseline name: validation scores}.
    best: the baseline of claims: "best" (lowest on validation).
    seconds: fitting and selection time.
    votes: {stream: the long-term model's votes in the combination}.
    mixture_weights: {stream: the mixture's weight per entropy band}.
  """

  ngram: Mapping[str, Any]
  short_term_order: Mapping[str, int]
  bias: Mapping[str, float]
  best_of_stream: Mapping[str, str]
  valid: Mapping[str, Mapping[str, float]]
  best: str
  seconds: float
  votes: Mapping[str, float]
  mixture_weights: Mapping[str, tuple[float, ...]]


def _distributions(dataset, fitted_ngram, stream, split, order, vocab_size):
  """(long-term, short-term) distributions and targets of a split."""
  songs = ngram.split_songs(dataset.splits[split], stream)
  long_term, targets = fitted_ngram[stream]["model"].distributions(songs)
  short = idyom.short_term_distributions(songs, vocab_size, order)
  return long_term, short, targets


def _vocab_size(dataset: dataset_lib.Dataset, stream: str) -> int:
  vocab = dataset.pitch_vocab if stream == "pitch" else dataset.duration_vocab
  return len(vocab)


bits = idyom.bits


def fit(
  dataset: dataset_lib.Dataset, max_order: int = ngram.MAX_ORDER
) -> Fitted:
  """Fits every baseline and chooses its settings on validation."""
  start = time.perf_counter()
  fitted_ngram = ngram.fit_streams(dataset, max_order=max_order)
  orders, biases, valid, best = {}, {}, {name: {} for name in NAMES}, {}
  votes, weights = {}, {}
  for stream in tokens.STREAMS:
    vocab_size = _vocab_size(dataset, stream)
    songs = ngram.split_songs(dataset.valid, stream)
    long_term, targets = fitted_ngram[stream]["model"].distributions(songs)
    short = {
      order: idyom.short_term_distributions(songs, vocab_size, order)
      for order in SHORT_TERM_ORDERS
    }
    orders[stream] = min(short, key=lambda o: (bits(short[o], targets), o))
    chosen = short[orders[stream]]
    biases[stream], votes[stream], _ = idyom.choose_combination(
      long_term, chosen, targets
    )
    weights[stream], _ = idyom.choose_mixture(long_term, chosen, targets)
    models = dict(
      model_distributions(
        long_term, chosen, biases[stream], votes[stream], weights[stream]
      )
    )
    best[stream] = min(MODELS, key=lambda n: bits(models[n], targets))
    models["best"] = models[best[stream]]
    for name, probs in models.items():
      valid[name][stream] = (probs, targets)
  scores = {name: scoring.score_distributions(d) for name, d in valid.items()}
  return Fitted(
    fitted_ngram,
    orders,
    biases,
    best,
    scores,
    "best",  # the lowest on validation by construction
    time.perf_counter() - start,
    votes,
    weights,
  )


def model_distributions(long_term, short, bias, votes, weights):
  """(name, distributions) of each of `MODELS` from the long-term and
  short-term distributions, the combination's bias and long-term votes,
  and the mixture's weights."""
  yield "ngram", long_term
  yield "short_term", short
  yield "idyom", idyom.combine([long_term, short], bias, [votes, 1.0])
  yield "mixture", idyom.mix(long_term, short, weights)


def score(
  dataset: dataset_lib.Dataset, fitted: Fitted, split: str = "test"
) -> dict[str, dict[str, float]]:
  """{baseline: `scoring.score_distributions`} on `split`'s originals."""
  per_model = {name: {} for name in NAMES}
  for stream in tokens.STREAMS:
    long_term, short, targets = _distributions(
      dataset,
      fitted.ngram,
      stream,
      split,
      fitted.short_term_order[stream],
      _vocab_size(dataset, stream),
    )
    models = dict(
      model_distributions(
        long_term,
        short,
        fitted.bias[stream],
        fitted.votes[stream],
        fitted.mixture_weights[stream],
      )
    )
    models["best"] = models[fitted.best_of_stream[stream]]
    for name, probs in models.items():
      per_model[name][stream] = (probs, targets)
  return {name: scoring.score_distributions(d) for name, d in per_model.items()}
