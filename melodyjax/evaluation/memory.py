"""The model with a memory of the song, scored like the model alone.

Three memories, each on or off, each tuned on the validation split and
scored on whole held-out songs from their first event (`predict`'s
targets, in `ngram.split_songs`'s order, so that they line up with the
baselines'):

  dynamic  dynamic evaluation (Krause et al., 2018): the heads (the shared
           Dense layer and both softmax layers) take a gradient step on each
           event of the song once it is heard, and forget the song at its
           end; the learning rate is chosen on validation (0: off).
  cache    the neural cache (Grave et al., 2017) over the heads' input of
           the song's earlier positions, mixed with the softmax
           (`model.memory.cache`; sharpness and weight per stream on
           validation).
  stm      the short-term model (PPM-C on the song so far, the baselines'
           `idyom`, its order the baseline's) combined with the softmax by
           the rule that wins on validation: IDyOM's entropy-weighted
           geometric combination (its bias chosen) or the linear mixture
           `idyom.mix` (= `model.memory.mix_short_term`, the sampler's: a
           weight per band of the short-term model's entropy, each
           chosen).

They stack in that order: the (adapted) softmax, mixed with the cache,
combined with the short-term model. `evaluate` gives the bits of every
combination; the short-term model is the same information as the
baselines' (the song's own events), so every row compares like with like.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from melodyjax.data import dataset as dataset_lib
from melodyjax.evaluation import baselines, idyom, ngram, predict, scoring
from melodyjax.model import memory
from melodyjax.music import tokens
from melodyjax.training import runs

OPTIONS = ("dynamic", "cache", "stm")
HEADS = (
  "dense",
  "pitch_head",
  "duration_head",
  "duration_hidden",
  "duration_pitch_embed",
)
LEARNING_RATES = (0.0003, 0.001, 0.003, 0.01, 0.03)
THETAS = (5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0)
WEIGHTS = (0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.75)


@dataclasses.dataclass(frozen=True)
class Outputs:
  """The model's distributions on a split's original songs.

  Attributes:
    probs: {stream: float64 [targets, vocab]}.
    targets: {stream: int [targets]}; each song's events then its eos,
      songs in `split.originals()` order.
    hidden: float32 [targets, features], the heads' input at each target,
      unit length.
    lengths: int [songs] targets per song (events + 1).
  """

  probs: Mapping[str, np.ndarray]
  targets: Mapping[str, np.ndarray]
  hidden: np.ndarray
  lengths: np.ndarray


def _split_heads(params):
  heads = {k: v for k, v in params.items() if k in HEADS}
  return heads, {k: v for k, v in params.items() if k not in HEADS}


def _log_probs_of(model, params, h, target_pitch):
  pitch_logits, duration_logits = model.apply(
    {"params": params}, h, target_pitch, method="_heads"
  )
  return (
    jax.nn.log_softmax(pitch_logits, axis=-1),
    jax.nn.log_softmax(duration_logits, axis=-1),
  )


def _dynamic(model, params, h, targets, mask, learning_rate):
  """Log-probs of every position of a batch of songs, the heads adapted
  to each song as it goes (one SGD step per heard event, per song)."""
  heads, rest = _split_heads(params)
  target_pitch, target_duration = targets

  def loss(head, h_t, pitch_t, duration_t):
    lp, ld = _log_probs_of(model, {**rest, **head}, h_t, pitch_t)
    return -(lp[pitch_t] + ld[duration_t]), (lp, ld)

  grad = jax.grad(loss, has_aux=True)

  def row(h_row, pitch_row, duration_row, mask_row):
    def body(head, xs):
      h_t, pitch_t, duration_t, m = xs
      g, (lp, ld) = grad(head, h_t, pitch_t, duration_t)
      head = jax.tree.map(lambda p, d: p - learning_rate * m * d, head, g)
      return head, (lp, ld)

    _, out = jax.lax.scan(
      body, heads, (h_row, pitch_row, duration_row, mask_row)
    )
    return out

  return jax.vmap(row)(h, target_pitch, target_duration, mask)


@functools.partial(jax.jit, static_argnames="model")
def _forward(model, params, pitch, duration, conditions, targets, lr):
  h, _, _ = model.apply(
    {"params": params}, pitch, duration, conditions=conditions, hidden=True
  )
  mask = (targets[0] != tokens.PAD_ID).astype(jnp.float32)
  lp, ld = jax.lax.cond(
    lr > 0,
    lambda: _dynamic(model, params, h, targets, mask, lr),
    lambda: _log_probs_of(model, params, h, targets[0]),
  )
  h = h / jnp.maximum(jnp.linalg.norm(h, axis=-1, keepdims=True), 1e-6)
  return lp, ld, h


def outputs(
  run: runs.Run,
  split: dataset_lib.Split,
  learning_rate: float = 0.0,
  batch_size: int = 64,
) -> Outputs:
  """The model's distributions (adapted by dynamic evaluation at
  `learning_rate` > 0) and hidden states on `split`'s original songs."""
  per_row: dict[int, tuple] = {}
  for rows, batch, conditions in predict.song_batches(split, batch_size):
    lp, ld, h = _forward(
      run.model,
      run.params,
      batch["pitch"][0],
      batch["duration"][0],
      {name: conditions[name] for name in run.model.config.conditions},
      (batch["pitch"][1], batch["duration"][1]),
      jnp.float32(learning_rate),
    )
    lp, ld, h = (np.asarray(x) for x in (lp, ld, h))
    for i, row in enumerate(rows):
      n = int(np.sum(batch["pitch"][1][i] != tokens.PAD_ID))
      per_row[row] = (
        lp[i, :n],
        ld[i, :n],
        h[i, :n],
        batch["pitch"][1][i, :n],
        batch["duration"][1][i, :n],
      )
  order = [per_row[row] for row in split.originals()]
  cat = [np.concatenate(parts) for parts in zip(*order, strict=True)]
  return Outputs(
    {
      "pitch": np.exp(cat[0].astype(np.float64)),
      "duration": np.exp(cat[1].astype(np.float64)),
    },
    {"pitch": cat[3], "duration": cat[4]},
    cat[2],
    np.array([len(parts[0]) for parts in order]),
  )


@functools.partial(jax.jit, static_argnames="vocab_size")
def _cache_batch(hidden, next_ids, lengths, theta, vocab_size):
  p, has_key = jax.vmap(
    lambda h, ids: memory.song_cache(h, ids, theta, vocab_size)
  )(hidden, next_ids)
  positions = jnp.arange(hidden.shape[1])
  return p, has_key & (positions[None] < lengths[:, None])


def cache_distributions(
  out: Outputs, stream: str, theta: float, songs_per_call: int = 64
) -> tuple[np.ndarray, np.ndarray]:
  """The cache's distribution at every target of `out` (float64
  [targets, vocab]) and whether the target's song had a key before it."""
  vocab = out.probs[stream].shape[1]
  starts = np.concatenate([[0], np.cumsum(out.lengths)])
  probs, keyed = [], []
  order = np.argsort(out.lengths, kind="stable")
  pieces: dict[int, tuple] = {}
  for s in range(0, len(order), songs_per_call):
    chunk = order[s : s + songs_per_call]
    width = -(-int(out.lengths[chunk].max()) // 32) * 32
    hidden = np.zeros((len(chunk), width, out.hidden.shape[1]), np.float32)
    ids = np.zeros((len(chunk), width), np.int32)
    for i, song in enumerate(chunk):
      a, b = starts[song], starts[song + 1]
      hidden[i, : b - a] = out.hidden[a:b]
      ids[i, : b - a] = out.targets[stream][a:b]
    p, k = _cache_batch(
      hidden, ids, out.lengths[chunk], jnp.float32(theta), vocab
    )
    p, k = np.asarray(p, np.float64), np.asarray(k)
    for i, song in enumerate(chunk):
      n = out.lengths[song]
      pieces[song] = (p[i, :n], k[i, :n])
  for song in range(len(out.lengths)):
    probs.append(pieces[song][0])
    keyed.append(pieces[song][1])
  return np.concatenate(probs), np.concatenate(keyed)


def mix(probs, cache_probs, keyed, weight) -> np.ndarray:
  w = np.where(keyed, weight, 0.0)[:, None]
  return (1.0 - w) * probs + w * cache_probs


@dataclasses.dataclass(frozen=True)
class Settings:
  """Each memory's settings, chosen on validation, per stream.

  Attributes:
    learning_rate: dynamic evaluation's.
    theta, weight: {stream: the cache's sharpness and weight} alone.
    stm_order: {stream: the short-term model's order} (the baselines').
    stm: {stream: {"rule": 'linear' | 'geometric', "bias", "weights"}} the
      short-term model alone on the softmax.
    joint: {stream: {"theta", "weight", "rule", "bias", "weights"}} the
      cache and the short-term model chosen together.
  """

  learning_rate: float
  theta: Mapping[str, float]
  weight: Mapping[str, float]
  stm_order: Mapping[str, int]
  stm: Mapping[str, Mapping[str, Any]]
  joint: Mapping[str, Mapping[str, Any]]

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def _short_term(dataset, split, stream, order) -> np.ndarray:
  songs = ngram.split_songs(dataset.splits[split], stream)
  vocab = dataset.pitch_vocab if stream == "pitch" else dataset.duration_vocab
  return idyom.short_term_distributions(songs, len(vocab), order)


def _with_short_term(probs, short, choice) -> np.ndarray:
  if choice["rule"] == "linear":
    return idyom.mix(probs, short, choice["weights"])
  return idyom.combine([probs, short], choice["bias"])


def _distributions(out, short, settings, options, stream):
  """One stream's distributions with the memories of `options`."""
  probs = out.probs[stream]
  both = "cache" in options and "stm" in options
  if "cache" in options:
    theta, weight = (
      (settings.joint[stream]["theta"], settings.joint[stream]["weight"])
      if both
      else (settings.theta[stream], settings.weight[stream])
    )
    cache_probs, keyed = cache_distributions(out, stream, theta)
    probs = mix(probs, cache_probs, keyed, weight)
  if "stm" in options:
    choice = settings.joint[stream] if both else settings.stm[stream]
    probs = _with_short_term(probs, short[stream], choice)
  return probs


def choose_short_term(probs, short, targets) -> tuple[dict, dict]:
  """The short-term model's combination with `probs` on validation: the
  rule that wins (IDyOM's geometric one with its bias, or the linear
  mixture with its band weights) as {"rule", "bias", "weights"}, and the
  bits of each rule."""
  bias, geometric = idyom.choose_bias([probs, short], targets)
  weights, linear = idyom.choose_mixture(probs, short, targets)
  bits = {"geometric": geometric[bias], "linear": linear}
  rule = "linear" if linear <= bits["geometric"] else "geometric"
  return {"rule": rule, "bias": bias, "weights": weights}, bits


def _choose_cache(plain, stream, caches, then=None):
  """The cache's (bits, theta, weight, extra) with the lowest validation
  bits (weight 0: no cache), `caches` {theta: `cache_distributions`},
  each mixture scored by `then(mixed)` -> (bits, extra) if given, else by
  its own bits (extra None)."""
  targets = plain.targets[stream]
  score = then or (lambda mixed: (idyom.bits(mixed, targets), None))
  best = (*score(plain.probs[stream]), THETAS[0], 0.0)
  for t, (cache_probs, keyed) in caches.items():
    for w in WEIGHTS:
      trial = (*score(mix(plain.probs[stream], cache_probs, keyed, w)), t, w)
      if trial[0] < best[0]:
        best = trial
  bits, extra, t, w = best
  return bits, t, w, extra


def choose_settings(
  run: runs.Run,
  dataset: dataset_lib.Dataset,
  fitted: baselines.Fitted,
  learning_rates: Sequence[float] = LEARNING_RATES,
) -> tuple[Settings, dict[str, Any]]:
  """Each memory's settings on validation (the learning rate alone; the
  cache alone and the short-term model alone on the plain softmax; the two
  together by a search over the cache's grid with the short-term model's
  best choice at each point), and the validation bits of each choice."""
  split = dataset.valid
  plain = outputs(run, split)
  trials: dict[str, Any] = {"learning_rate": {}}
  for lr in learning_rates:
    adapted = outputs(run, split, lr)
    trials["learning_rate"][lr] = sum(
      idyom.bits(adapted.probs[s], adapted.targets[s]) for s in tokens.STREAMS
    )
  lr = min(trials["learning_rate"], key=trials["learning_rate"].get)
  theta, weight, alone, joint = {}, {}, {}, {}
  for stream in tokens.STREAMS:
    targets = plain.targets[stream]
    caches = {t: cache_distributions(plain, stream, t) for t in THETAS}
    bits, theta[stream], weight[stream], _ = _choose_cache(
      plain, stream, caches
    )
    trials[f"cache_{stream}"] = bits
    short = _short_term(
      dataset, "valid", stream, fitted.short_term_order[stream]
    )
    alone[stream], trials[f"stm_{stream}"] = choose_short_term(
      plain.probs[stream], short, targets
    )

    def then(mixed, short=short, targets=targets):
      choice, bits = choose_short_term(mixed, short, targets)
      return bits[choice["rule"]], choice

    bits, t, w, choice = _choose_cache(plain, stream, caches, then)
    joint[stream] = {"theta": t, "weight": w, **choice}
    trials[f"joint_{stream}"] = bits
  settings = Settings(lr, theta, weight, fitted.short_term_order, alone, joint)
  return settings, trials


def combinations() -> list[tuple[str, ...]]:
  """Every subset of `OPTIONS`, the empty one (the model alone) first."""
  return [
    combo
    for n in range(len(OPTIONS) + 1)
    for combo in itertools.combinations(OPTIONS, n)
  ]


def evaluate(
  run: runs.Run,
  dataset: dataset_lib.Dataset,
  fitted: baselines.Fitted,
  settings: Settings,
  split: str = "test",
) -> dict[str, dict[str, float]]:
  """`scoring.score_distributions` of every combination of memories on a
  split ({'+'.join(combo) or 'none': scores}), each with its seconds."""
  data = dataset.splits[split]
  short = {
    stream: _short_term(dataset, split, stream, settings.stm_order[stream])
    for stream in tokens.STREAMS
  }
  start = time.perf_counter()
  plain = outputs(run, data)
  seconds = {False: time.perf_counter() - start}
  start = time.perf_counter()
  adapted = outputs(run, data, settings.learning_rate)
  seconds[True] = time.perf_counter() - start
  scores = {}
  for combo in combinations():
    out = adapted if "dynamic" in combo else plain
    start = time.perf_counter()
    dists = {
      stream: (
        _distributions(out, short, settings, combo, stream),
        out.targets[stream],
      )
      for stream in tokens.STREAMS
    }
    result = scoring.score_distributions(dists)
    result["seconds"] = seconds["dynamic" in combo] + (
      time.perf_counter() - start
    )
    scores["+".join(combo) or "none"] = result
  return scores


def score_run(
  run: runs.Run,
  dataset: dataset_lib.Dataset,
  fitted: baselines.Fitted,
  best_bits: float,
) -> dict[str, Any]:
  """evaluation.json's "memory": the settings chosen on validation, the
  test scores of every combination and each one's ratio to the best
  baseline's `best_bits` (given the same information)."""
  settings, trials = choose_settings(run, dataset, fitted)
  scores = evaluate(run, dataset, fitted, settings)
  return {
    "settings": settings.to_dict(),
    "valid_trials": {
      k: ({str(a): b for a, b in v.items()} if isinstance(v, dict) else v)
      for k, v in trials.items()
    },
    "scores": scores,
    "vs_best_baseline": {
      name: s["bits_per_note"] / best_bits for name, s in scores.items()
    },
  }


def report_lines(memory_result: Mapping[str, Any] | None) -> list[str]:
  """The report's table of the memories (none: no lines)."""
  if not memory_result:
    return []
  lines = [
    "## Memory of the song",
    "",
    "Each memory tuned on validation, scored on whole test songs "
    "(`evaluation.memory`).",
    "",
    "| memory | bits per note (pitch + duration) | vs best baseline |",
    "|---|---|---|",
  ]
  for name, s in memory_result["scores"].items():
    lines.append(
      f"| {name} | {s['bits_per_note']:.3f} "
      f"({s['bits_per_note_pitch']:.3f} + "
      f"{s['bits_per_note_duration']:.3f}) | "
      f"{memory_result['vs_best_baseline'][name]:.3f}x |"
    )
  return [*lines, ""]
