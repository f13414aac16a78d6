"""The baselines given the labels a conditioned run is given. No JAX.

A run conditioned on metre, mode or style reads, before every event, the
event's bar position and time signature and the song's mode and style
(`data.windows.song_conditions`). Its baselines get the same: the
long-term model of `baselines` becomes a mixture of the general n-gram
model and one n-gram model per label,

  p(w | h, labels) = lambda_0 p(w | h) + sum_c lambda_c p_c(w | h, label_c)

with one component c per label kind the run reads (`COMPONENTS`: the
time signature, the bar position within it, the mode, the style) and, for
two or more song-level kinds, one for their combination (3/4 + minor +
'han1'). The model of a label is interpolated modified Kneser-Ney
(`ngram.fit_windows`) at the general model's order, fitted on the
training windows whose predicted token carries that label (every row, as
the general model's); a label with fewer than `MIN_TARGETS` such windows,
unknown (id 0, no bar position) or unseen in training backs off to the
general model. The weights, per stream, are the point of `weight_grid`
(the simplex in steps of 1 / `GRID_STEPS`) with the lowest validation bits
per note. Then, as in `baselines`: the short-term model (its order as
there); IDyOM's combination, here of every long-term model (the mixture,
the general one and each component's, as IDyOM combines several
viewpoints' models) and the short-term one, its bias chosen on validation
again; and `best`, per stream the lowest of the three on validation.

On ESAC (`benchmarks/bench_labelled.py`) the combination of all the
models beats the combination of the mixture and the short-term model
alone by 0.2 bits of pitch: a mixture is flatter than its parts, so its
entropy weight undersells it.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from melodyjax.data import dataset as dataset_lib
from melodyjax.evaluation import baselines, idyom, ngram, scoring
from melodyjax.music import tokens

# The label kinds, in the names of the run's condition inputs
# (`model.config.ModelConfig.conditions`).
KINDS = ("time_signature", "bar_position", "mode", "style")
SONG_KINDS = ("time_signature", "mode", "style")  # one label a song, mostly
MIN_TARGETS = 100
GRID_STEPS = 10
_ID_BASE = 1 << 20  # ids of one kind stay below it


@dataclasses.dataclass(frozen=True)
class Fitted:
  """The label-aware baselines of a dataset, settings chosen on validation.

  Attributes:
    kinds: the label kinds given (a subset of `KINDS`).
    components: the mixture's label components, each a tuple of kinds.
    models: {stream: {component name: {label key: KneserNey}}}.
    weights: {stream: (general, *components) mixture weights}.
    bias: {stream: IDyOM's combination's bias}.
    best_of_stream: {stream: the model of `baselines.MODELS` best on
      validation}.
    valid: {baseline name: validation scores}.
    general: the baselines without labels (`baselines.fit`).
    seconds: fitting and selection time.
    short_weights: {stream: the linear mixture's weight per band of the
      short-term model's entropy}.
  """

  kinds: tuple[str, ...]
  components: tuple[tuple[str, ...], ...]
  models: Mapping[str, Mapping[str, Mapping[int, ngram.KneserNey]]]
  weights: Mapping[str, tuple[float, ...]]
  bias: Mapping[str, float]
  best_of_stream: Mapping[str, str]
  valid: Mapping[str, Mapping[str, float]]
  general: baselines.Fitted
  seconds: float
  short_weights: Mapping[str, tuple[float, ...]]

  @property
  def best(self) -> str:
    return "best"  # the lowest on validation by construction

  def settings(self) -> dict[str, Any]:
    """The chosen settings as plain values (for evaluation.json)."""
    return {
      "labels": list(self.kinds),
      "components": [component_name(c) for c in self.components],
      "labels_with_a_model": {
        stream: {name: len(m) for name, m in by_name.items()}
        for stream, by_name in self.models.items()
      },
      "weights": {s: list(w) for s, w in self.weights.items()},
      "idyom_bias": dict(self.bias),
      "mixture_weights": {s: list(w) for s, w in self.short_weights.items()},
      "best_of_stream": dict(self.best_of_stream),
      "valid_bits_per_note": {
        name: scores["bits_per_note"] for name, scores in self.valid.items()
      },
    }


def component_name(component: Sequence[str]) -> str:
  return "+".join(component)


def components_of(kinds: Sequence[str]) -> tuple[tuple[str, ...], ...]:
  """One component per kind, and the song-level kinds' combination."""
  unknown = set(kinds) - set(KINDS)
  if unknown:
    raise ValueError(f"label kinds must be in {KINDS}, got {sorted(unknown)}")
  singles = tuple((kind,) for kind in KINDS if kind in kinds)
  joint = tuple(kind for kind in SONG_KINDS if kind in kinds)
  return singles + ((joint,) if len(joint) > 1 else ())


def _per_target(events, ends, offsets, rows) -> np.ndarray:
  """Each row's event values then its end value (the eos target's)."""
  parts = []
  for i in rows:
    parts += [events[offsets[i] : offsets[i + 1]], ends[i : i + 1]]
  return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, int)


def target_labels(
  split: dataset_lib.Split, kind: str, rows: Sequence[int]
) -> np.ndarray:
  """int64 [targets] the label of each target of `rows` (their events and
  eos, in `ngram.song_windows`' order): an id > 0, or 0 for unknown.

  A bar position's label is its time signature's id and the position
  together (the eos target's: where an event after the last would be).
  """
  rows = np.asarray(rows, np.int64)
  lengths = np.diff(split.offsets)[rows] + 1
  if split.bar_position is None:  # a dataset built without conditions
    return np.zeros(int(lengths.sum()), np.int64)
  if kind in ("mode", "style"):
    return np.repeat(getattr(split, kind)[rows].astype(np.int64), lengths)
  signature = _per_target(
    split.time_signature, split.end_time_signature, split.offsets, rows
  )
  if kind == "time_signature":
    return signature
  if kind != "bar_position":
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
  position = _per_target(
    split.bar_position, split.end_position, split.offsets, rows
  )
  known = (signature > 0) & (position >= 0)
  return np.where(known, signature * _ID_BASE + position + 1, 0)


def component_labels(
  split: dataset_lib.Split, component: Sequence[str], rows: Sequence[int]
) -> np.ndarray:
  """int64 [targets] one key per label combination of `component` (0: any
  of them unknown)."""
  if len(component) == 1:
    return target_labels(split, component[0], rows)
  if len(component) > 3 or "bar_position" in component:
    raise ValueError(f"no combined key for {component}")
  key, known = 0, True
  for kind in component:
    ids = target_labels(split, kind, rows)
    if np.any(ids >= _ID_BASE):
      raise ValueError(f"{kind} ids must stay below {_ID_BASE}")
    key, known = key * _ID_BASE + ids, known & (ids > 0)
  return np.where(known, key, 0)


def weight_grid(num: int, steps: int = GRID_STEPS) -> list[tuple[float, ...]]:
  """Every weight vector of `num` entries in multiples of 1 / steps summing
  to 1, the general model's weight (the first) largest first."""
  grid = []
  for bars in itertools.combinations(range(steps + num - 1), num - 1):
    cuts = (-1, *bars, steps + num - 1)
    grid.append(tuple((b - a - 1) / steps for a, b in itertools.pairwise(cuts)))
  return sorted(grid, key=lambda w: tuple(-x for x in w))


def choose_weights(
  target_probs: np.ndarray, steps: int = GRID_STEPS
) -> tuple[tuple[float, ...], dict[tuple[float, ...], float]]:
  """The grid point with the lowest bits per target, and every point's.

  Args:
    target_probs: float [components, targets] each component's
      probability of each (validation) target.
    steps: the grid's resolution.

  Returns:
    (weights, {weights: bits per target}); ties go to the point listed
    first by `weight_grid` (more weight on the general model).
  """
  grid = weight_grid(len(target_probs), steps)
  bits = {}
  for start in range(0, len(grid), 256):
    block = grid[start : start + 256]
    mixed = np.maximum(np.array(block) @ target_probs, 1e-300)
    row_bits = -np.log2(mixed).mean(axis=1)
    bits.update(zip(block, map(float, row_bits), strict=True))
  return min(grid, key=lambda w: bits[w]), bits


def _windows(split, stream, order, vocab_size, rows):
  songs = [
    getattr(split, stream)[split.offsets[i] : split.offsets[i + 1]]
    for i in rows
  ]
  return songs, ngram.song_windows(songs, order, vocab_size)


def _component_values(general, models, labels, windows, full):
  """The component's probability of each window's target (`full`: its
  whole distribution before each): the label's model, or the general one."""
  score = (
    (lambda m, w: m.distributions_from_histories(w[:, :-1]))
    if full
    else (lambda m, w: m.window_probs(w))
  )
  out = score(general, windows)
  for key, model in models.items():
    mask = labels == key
    if mask.any():
      out[mask] = score(model, windows[mask])
  return out


def _fit_stream(dataset, general, components, stream, min_targets):
  """{component name: {label key: model}} of one stream."""
  model = general.ngram[stream]["model"]
  train = dataset.train
  _, windows = _windows(
    train, stream, model.order, model.vocab_size, range(len(train))
  )
  fitted = {}
  for component in components:
    labels = component_labels(train, component, range(len(train)))
    keys, counts = np.unique(labels, return_counts=True)
    fitted[component_name(component)] = {
      int(key): ngram.fit_windows(windows[labels == key], model.vocab_size)
      for key, count in zip(keys, counts, strict=True)
      if key != 0 and count >= min_targets
    }
  return fitted


def component_distributions(
  dataset: dataset_lib.Dataset,
  general: baselines.Fitted,
  components: Sequence[Sequence[str]],
  models: Mapping[str, Mapping[int, ngram.KneserNey]],
  stream: str,
  split: str,
  full: bool = True,
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
  """(songs, per long-term model, the targets) of a split's originals: the
  general model's and each component's distributions before every target
  (`full` False: only the targets' probabilities, float [targets] each)."""
  model = general.ngram[stream]["model"]
  data = dataset.splits[split]
  rows = data.originals()
  songs, windows = _windows(data, stream, model.order, model.vocab_size, rows)
  parts = [(model, {}, np.zeros(len(windows), np.int64))] + [
    (model, models[component_name(c)], component_labels(data, c, rows))
    for c in components
  ]
  values = [_component_values(*p, windows, full) for p in parts]
  return songs, values, windows[:, -1].copy()


def long_term_distributions(
  dataset: dataset_lib.Dataset,
  general: baselines.Fitted,
  components: Sequence[Sequence[str]],
  models: Mapping[str, Mapping[int, ngram.KneserNey]],
  stream: str,
  split: str,
  weights: Sequence[float] | None = None,
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
  """(songs, the mixture's distributions, the targets) of a split's
  originals; with `weights` None, the targets' probabilities under each
  long-term model instead: float [1 + components, targets]."""
  args = (dataset, general, components, models, stream, split)
  if weights is None:
    songs, probs, targets = component_distributions(*args, full=False)
    return songs, np.stack(probs), targets
  songs, dists, targets = component_distributions(*args)
  return songs, _mixture(dists, weights), targets


def _mixture(dists, weights) -> np.ndarray:
  return sum(w * d for w, d in zip(weights, dists, strict=True))


def _models(dists, weights, short, bias, short_weights):
  """(name, distributions) of each of `baselines.MODELS`: the mixture,
  the short-term model, IDyOM's combination of every long-term model (the
  mixture, the general one, each component's) and the short-term one, and
  the long-term mixture mixed linearly with the short-term model."""
  mixed = _mixture(dists, weights)
  yield "ngram", mixed
  yield "short_term", short
  yield "idyom", idyom.combine([mixed, *dists, short], bias)
  yield "mixture", idyom.mix(mixed, short, short_weights)


def fit(
  dataset: dataset_lib.Dataset,
  general: baselines.Fitted,
  kinds: Sequence[str],
  min_targets: int = MIN_TARGETS,
  steps: int = GRID_STEPS,
) -> Fitted:
  """Fits the label-aware baselines and chooses their settings on
  validation (orders and short-term settings: `general`'s)."""
  start = time.perf_counter()
  kinds = tuple(kind for kind in KINDS if kind in kinds)
  components = components_of(kinds)
  models, weights, biases, best, short_weights = {}, {}, {}, {}, {}
  valid = {name: {} for name in baselines.NAMES}
  for stream in tokens.STREAMS:
    models[stream] = _fit_stream(
      dataset, general, components, stream, min_targets
    )
    args = (dataset, general, components, models[stream], stream, "valid")
    songs, dists, targets = component_distributions(*args)
    rows = np.arange(len(targets))
    probs = np.stack([d[rows, targets] for d in dists])
    weights[stream], _ = choose_weights(probs, steps)
    short = _short_term(general, stream, songs)
    mixed = _mixture(dists, weights[stream])
    biases[stream], _ = idyom.choose_bias([mixed, *dists, short], targets)
    short_weights[stream], _ = idyom.choose_mixture(mixed, short, targets)
    by_name = dict(
      _models(
        dists, weights[stream], short, biases[stream], short_weights[stream]
      )
    )
    best[stream] = min(
      baselines.MODELS, key=lambda n: baselines.bits(by_name[n], targets)
    )
    by_name["best"] = by_name[best[stream]]
    for name, p in by_name.items():
      valid[name][stream] = (p, targets)
  return Fitted(
    kinds,
    components,
    models,
    weights,
    biases,
    best,
    {name: scoring.score_distributions(d) for name, d in valid.items()},
    general,
    time.perf_counter() - start,
    short_weights,
  )


def _short_term(general, stream, songs):
  return idyom.short_term_distributions(
    songs,
    general.ngram[stream]["model"].vocab_size,
    general.short_term_order[stream],
  )


def score(
  dataset: dataset_lib.Dataset, fitted: Fitted, split: str = "test"
) -> dict[str, dict[str, float]]:
  """{baseline: `scoring.score_distributions`} on `split`'s originals."""
  per_model = {name: {} for name in baselines.NAMES}
  for stream in tokens.STREAMS:
    songs, dists, targets = component_distributions(
      dataset,
      fitted.general,
      fitted.components,
      fitted.models[stream],
      stream,
      split,
    )
    short = _short_term(fitted.general, stream, songs)
    by_name = dict(
      _models(
        dists,
        fitted.weights[stream],
        short,
        fitted.bias[stream],
        fitted.short_weights[stream],
      )
    )
    by_name["best"] = by_name[fitted.best_of_stream[stream]]
    for name, p in by_name.items():
      per_model[name][stream] = (p, targets)
  return {name: scoring.score_distributions(d) for name, d in per_model.items()}
