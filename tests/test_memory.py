"""The memory of the song: the JAX short-term model and combination against
the baselines' NumPy ones, the neural cache, dynamic evaluation, and the
scored combinations on a tiny run."""

import jax.numpy as jnp
import numpy as np
import pytest

from melodyjax.evaluation import baselines, idyom, predict
from melodyjax.evaluation import memory as memory_eval
from melodyjax.model import memory
from melodyjax.music import tokens
from melodyjax.training import runs


def _songs(seed, count, vocab):
  rng = np.random.default_rng(seed)
  for _ in range(count):
    song = rng.integers(2, vocab, size=int(rng.integers(1, 40)))
    if len(song) > 12:
      song[6:12] = song[0:6]  # a phrase that comes back
    yield song


@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_jax_ppm_is_the_baselines_ppm(order):
  for song in _songs(order, 8, 11):
    expected = idyom.ppm_distributions(song, 11, order)
    got = np.asarray(memory.song_ppm(jnp.asarray(song), order, 11))
    np.testing.assert_allclose(got, expected, atol=2e-6)


def test_ppm_after_a_heard_phrase_predicts_its_continuation():
  song = jnp.array([5, 6, 7, 8, 5, 6, 7], jnp.int32)
  p = np.asarray(memory.ppm(song, jnp.int32(7), 4, 10))
  assert int(np.argmax(p)) == 8
  assert p[:2].sum() == 0.0
  assert p.sum() == pytest.approx(1.0, abs=1e-6)
  # nothing heard: uniform over the predictable ids
  empty = np.asarray(memory.ppm(song, jnp.int32(0), 4, 10))
  np.testing.assert_allclose(empty[2:], 1 / 8)


@pytest.mark.parametrize("bias", [0.0, 1.0, 4.0])
def test_jax_combination_is_idyoms(bias):
  rng = np.random.default_rng(int(bias))
  a, b = (rng.dirichlet(np.ones(9), size=6) for _ in range(2))
  for p in (a, b):
    p[:, :2] = 0
    p /= p.sum(axis=1, keepdims=True)
  expected = idyom.combine([a, b], bias)
  got = np.exp(
    np.asarray(memory.combine(jnp.log(jnp.asarray(a, jnp.float32)), b, bias))
  )
  np.testing.assert_allclose(got, expected, atol=1e-6)


def test_short_term_mixture_keeps_the_models_end_of_song():
  rng = np.random.default_rng(0)
  p = rng.dirichlet(np.ones(10), size=6).astype(np.float32)
  p[:, :2] = 0
  p /= p.sum(axis=1, keepdims=True)
  short = np.zeros((6, 10), np.float32)
  short[:3, 2:] = 1 / 8  # uniform: the last band
  short[3:, 5] = 0.9  # confident: the first band
  short[3:, 2:5] = 0.1 / 3
  weights = jnp.array([0.5, 0.0, 0.0, 0.2])
  mixed = np.asarray(memory.mix_short_term(p, short, weights))
  np.testing.assert_allclose(mixed.sum(axis=1), 1.0, rtol=1e-6)
  np.testing.assert_allclose(mixed[:, 2], p[:, 2], rtol=1e-6)  # eos kept
  q = short.copy()
  q[:, 2] = 0
  q = q / q.sum(axis=1, keepdims=True) * (1 - p[:, 2:3])
  q[:, 2] = p[:, 2]
  for row, w in [(0, 0.2), (3, 0.5)]:
    np.testing.assert_allclose(
      mixed[row], (1 - w) * p[row] + w * q[row], rtol=1e-5, atol=1e-7
    )
  np.testing.assert_allclose(
    memory.mix_short_term(p, short, jnp.zeros(4)), p, rtol=1e-6
  )
  # the baselines' NumPy mixture is the same
  np.testing.assert_allclose(
    idyom.mix(p.astype(np.float64), short.astype(np.float64), weights),
    mixed,
    rtol=1e-5,
    atol=1e-7,
  )


def test_mixture_weights_and_votes_are_the_best_on_their_grids():
  rng = np.random.default_rng(1)
  p = rng.dirichlet(np.ones(9), size=400)
  short = rng.dirichlet(np.full(9, 0.3), size=400)
  p[:, :2] = short[:, :2] = 0
  p /= p.sum(axis=1, keepdims=True)
  short /= short.sum(axis=1, keepdims=True)
  targets = np.array(
    [rng.choice(9, p=0.5 * a + 0.5 * b) for a, b in zip(p, short, strict=True)]
  )
  weights, bits = idyom.choose_mixture(p, short, targets)
  assert all(w in idyom.MIXTURE_WEIGHTS for w in weights)
  for k, w in enumerate(weights):  # no other weight of a band does better
    for other in idyom.MIXTURE_WEIGHTS:
      trial = list(weights)
      trial[k] = other
      worse = baselines.bits(idyom.mix(p, short, trial), targets)
      assert worse >= bits - 1e-12, (k, w, other)
  bias, votes, combined = idyom.choose_combination(p, short, targets)
  for v in idyom.VOTES:
    for b in idyom.BIASES:
      trial = idyom.combine([p, short], b, [v, 1.0])
      assert baselines.bits(trial, targets) >= combined - 1e-12


def test_cache_points_at_what_followed_the_matching_state():
  hidden = jnp.eye(4, dtype=jnp.float32)[jnp.array([0, 1, 2, 0])]
  next_ids = jnp.array([7, 8, 9, 5])
  p, keyed = memory.song_cache(hidden, next_ids, 50.0, 10)
  p, keyed = np.asarray(p), np.asarray(keyed)
  assert keyed.tolist() == [False, True, True, True]
  assert p[0].sum() == 0.0
  assert p[1, 7] == pytest.approx(1.0)
  # position 3's state is position 0's: the cache says what followed it
  assert p[3, 7] > 0.99
  mixed = np.exp(
    np.asarray(memory.mix_cache(jnp.log(jnp.full(10, 0.1)), p[3], True, 0.5))
  )
  assert mixed[7] == pytest.approx(0.05 + 0.5 * p[3, 7], 1e-5)


def test_outputs_line_up_with_the_baselines_targets(workdir):
  run = runs.from_workdir(str(workdir))
  dataset = predict.load_dataset_of(run)
  out = memory_eval.outputs(run, dataset.valid)
  songs = [dataset.valid.song(i) for i in dataset.valid.originals()]
  for s, stream in enumerate(tokens.STREAMS):
    expected = np.concatenate(
      [list(song[s]) + [tokens.EOS_ID] for song in songs]
    )
    np.testing.assert_array_equal(out.targets[stream], expected)
  assert out.lengths.tolist() == [len(song[0]) + 1 for song in songs]
  # the same distributions as the scorer's, only in song order
  plain = predict.model_distributions(run, dataset.valid)
  for stream in tokens.STREAMS:
    np.testing.assert_allclose(
      np.sort(out.probs[stream][:, 3]),
      np.sort(plain[stream][0][:, 3]),
      rtol=1e-5,
    )


def test_dynamic_evaluation_learns_the_song_and_forgets_it(workdir):
  run = runs.from_workdir(str(workdir))
  dataset = predict.load_dataset_of(run)
  plain = memory_eval.outputs(run, dataset.valid)
  adapted = memory_eval.outputs(run, dataset.valid, learning_rate=0.1)
  starts = np.concatenate([[0], np.cumsum(plain.lengths)[:-1]])
  # before a song's first event nothing of it is heard: the same softmax
  np.testing.assert_allclose(
    adapted.probs["pitch"][starts], plain.probs["pitch"][starts], rtol=1e-5
  )
  later = np.setdiff1d(np.arange(len(plain.hidden)), starts)
  assert not np.allclose(
    adapted.probs["pitch"][later], plain.probs["pitch"][later]
  )


def test_every_memory_is_scored_and_the_short_term_one_helps(workdir):
  run = runs.from_workdir(str(workdir))
  dataset = predict.load_dataset_of(run)
  fitted = baselines.fit(dataset)
  settings, trials = memory_eval.choose_settings(
    run, dataset, fitted, learning_rates=(0.01,)
  )
  assert set(trials) == {
    "learning_rate",
    "cache_pitch",
    "cache_duration",
    "stm_pitch",
    "stm_duration",
    "joint_pitch",
    "joint_duration",
  }
  scores = memory_eval.evaluate(run, dataset, fitted, settings, "valid")
  assert list(scores) == [
    "none",
    "dynamic",
    "cache",
    "stm",
    "dynamic+cache",
    "dynamic+stm",
    "cache+stm",
    "dynamic+cache+stm",
  ]
  plain = predict.score_split(run, "valid", dataset)
  assert scores["none"]["bits_per_note"] == pytest.approx(
    plain["bits_per_note"], 1e-5
  )
  # what was chosen on validation is what scores there
  for stream in tokens.STREAMS:
    rules = trials[f"stm_{stream}"]
    assert settings.stm[stream]["rule"] == min(rules, key=rules.get)
    bits = lambda combo, s=stream: scores[combo][f"bits_per_note_{s}"]  # noqa: E731
    assert bits("stm") == pytest.approx(min(rules.values()), 1e-9)
    assert bits("cache") == pytest.approx(trials[f"cache_{stream}"], 1e-9)
    assert bits("cache+stm") == pytest.approx(trials[f"joint_{stream}"], 1e-9)
    # chosen together, the two are at least as good as either alone
    assert bits("cache+stm") <= min(bits("cache"), bits("stm")) + 1e-12
