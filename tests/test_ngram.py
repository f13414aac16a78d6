"""The Kneser-Ney n-gram baseline: hand-computed values, normalisation."""

import collections
import math
import os
from fractions import Fraction as Q

import numpy as np
import pytest

from melodyjax import files
from melodyjax.data import config as data_config_lib
from melodyjax.data import dataset as dataset_lib
from melodyjax.evaluation import ngram, scoring
from melodyjax.music import tokens

# A toy stream: pad 0, bos 1, eos 2, unk 3, then a = 4, b = 5, c = 6.
BOS, EOS, UNK, A, B, C = 1, 2, 3, 4, 5, 6
V = 7  # predictable: eos, unk, a, b, c (5 tokens)


def arrays(*songs):
  return [np.array(s, np.int32) for s in songs]


def test_bigram_by_hand():
  # bos a b a eos | bos a a eos | bos b b unk eos
  model = ngram.fit(
    arrays([A, B, A], [A, A], [B, B, UNK]), V, order=2, discounting="plain"
  )
  # Bigram raw counts: (bos,a) 2, (a,eos) 2 and once each (a,b) (b,a)
  # (a,a) (bos,b) (b,b) (b,unk) (unk,eos): n1 = 7, n2 = 2, D2 = 7/11.
  d2 = Q(7, 11)
  # Unigram continuation counts (distinct left neighbours): a {bos,b,a} 3,
  # b {a,bos,b} 3, eos {a,unk} 2, unk {b} 1, c 0; total 9 over 4 types;
  # n1 = 1, n2 = 1, D1 = 1/3. Below it: uniform 1/5.
  d1 = Q(1, 3)
  cont = {A: 3, B: 3, EOS: 2, UNK: 1, C: 0}
  p1 = {w: (max(c - d1, 0) + d1 * 4 * Q(1, 5)) / 9 for w, c in cont.items()}
  assert p1 == {
    A: Q(44, 135),
    B: Q(44, 135),
    EOS: Q(29, 135),
    UNK: Q(14, 135),
    C: Q(4, 135),
  }
  assert np.allclose(
    model.discounts, np.array([[d1] * 3, [d2] * 3], float), atol=1e-15
  )
  # Context a: (a,b) 1, (a,eos) 2, (a,a) 1: total 4, 3 types.
  # Context bos: (bos,a) 2, (bos,b) 1: total 3, 2 types.
  expected = {
    (A, B): (1 - d2 + d2 * 3 * p1[B]) / 4,
    (A, EOS): (2 - d2 + d2 * 3 * p1[EOS]) / 4,
    (A, C): (d2 * 3 * p1[C]) / 4,
    (BOS, A): (2 - d2 + d2 * 2 * p1[A]) / 3,
    (BOS, C): (d2 * 2 * p1[C]) / 3,
    (C, A): p1[A],  # context c never seen: the unigram level alone
    (C, EOS): p1[EOS],
  }
  for (h, w), p in expected.items():
    assert model.prob_dist([h])[w] == pytest.approx(float(p), abs=1e-12)
  # log_prob of [a, c]: a | bos, c | a, eos | c.
  got = model.log_prob(arrays([A, C]))
  want = [expected[BOS, A], expected[A, C], expected[C, EOS]]
  np.testing.assert_allclose(got, [math.log(p) for p in want], atol=1e-9)
  assert model.prob_dist([])[A] == pytest.approx(float(expected[BOS, A]))


def test_trigram_by_hand_with_bos_rule():
  # bos bos a b eos | bos bos a a eos
  model = ngram.fit(
    arrays([A, B], [A, A]), V, order=3, discounting="plain", framing="padded"
  )
  # Trigrams: (bos,bos,a) 2, (bos,a,b) (a,b,eos) (bos,a,a) (a,a,eos) 1:
  # n1 = 4, n2 = 1, D3 = 4/6.
  d3 = Q(2, 3)
  # Bigrams: (bos,a) starts with bos, so its raw count 2 (a continuation
  # count would be 1); (a,b) (b,eos) (a,a) (a,eos) one left neighbour each:
  # n1 = 4, n2 = 1, D2 = 2/3.
  d2 = Q(2, 3)
  # Unigrams: a {bos,a} 2, b {a} 1, eos {b,a} 2; total 5 over 3 types;
  # n1 = 1, n2 = 2, D1 = 1/5.
  d1 = Q(1, 5)
  assert np.allclose(
    model.discounts, np.array([[d1] * 3, [d2] * 3, [d3] * 3], float)
  )
  # Modified KN falls back to these: every order lacks n3 or n4.
  modified = ngram.fit(arrays([A, B], [A, A]), V, order=3, framing="padded")
  assert modified.discounts == model.discounts

  def p1(w):
    return (max({A: 2, B: 1, EOS: 2}.get(w, 0) - d1, 0) + d1 * 3 / 5) / 5

  assert [p1(w) for w in (A, B, EOS, UNK)] == [
    Q(48, 125),
    Q(23, 125),
    Q(48, 125),
    Q(3, 125),
  ]
  # Bigram contexts: bos {a: 2}; a {b: 1, a: 1, eos: 1}; b {eos: 1}.
  p2_a_bos = (2 - d2 + d2 * 1 * p1(A)) / 2
  p2_b_a = (1 - d2 + d2 * 3 * p1(B)) / 3
  p2_eos_a = (1 - d2 + d2 * 3 * p1(EOS)) / 3
  p2_a_b = (d2 * 1 * p1(A)) / 1
  # Trigram contexts: (bos,bos) {a: 2}; (bos,a) {b: 1, a: 1}; (a,b) {eos}.
  p3_a = (2 - d3 + d3 * 1 * p2_a_bos) / 2  # a | bos bos
  p3_b = (1 - d3 + d3 * 2 * p2_b_a) / 2  # b | bos a
  p3_a_ab = (d3 * 1 * p2_a_b) / 1  # a | a b
  p_eos = p2_eos_a  # eos | b a: context (b,a) unseen, the bigram level
  got = model.log_prob(arrays([A, B, A]))
  want = [p3_a, p3_b, p3_a_ab, p_eos]
  np.testing.assert_allclose(got, [math.log(p) for p in want], atol=1e-9)


def test_modified_unigram_by_hand():
  # Order 1 uses raw counts: a 1, b 2, c 3, eos 4 (four songs); total 10.
  model = ngram.fit(arrays([C, B, A], [C, B], [C], []), V, order=1)
  # n1 = n2 = n3 = n4 = 1: Y = 1/3, D(1) = 1 - 2Y = 1/3,
  # D(2) = 2 - 3Y = 1, D(3+) = 3 - 4Y = 5/3.
  d = {1: Q(1, 3), 2: Q(1), 3: Q(5, 3)}
  assert np.allclose(
    model.discounts, np.array([[d[1], d[2], d[3]]], float), atol=1e-15
  )
  # gamma = D(1) + D(2) + 2 D(3+) = 14/3, spread uniformly over 5 tokens.
  gamma = d[1] + d[2] + 2 * d[3]
  assert gamma == Q(14, 3)
  counts = {A: 1, B: 2, C: 3, EOS: 4, UNK: 0}
  want = {
    w: (c - d.get(min(c, 3), 0) + gamma / 5) / 10 for w, c in counts.items()
  }
  assert want == {
    A: Q(24, 150),
    B: Q(29, 150),
    C: Q(34, 150),
    EOS: Q(49, 150),
    UNK: Q(14, 150),
  }
  dist = model.prob_dist([A, B])  # order 1: the context is ignored
  for w, p in want.items():
    assert dist[w] == pytest.approx(float(p), abs=1e-12)


def reference_kn(train, vocab_size, order, discounting, framing="single"):
  """A direct, slow transcription of the model, for cross-checking."""
  raw = collections.Counter()
  for seq in train:
    framed = [BOS] * (order - 1) + list(seq) + [EOS]
    for t in range(order - 1, len(framed)):
      for n in range(1, order + 1):
        gram = tuple(framed[t - n + 1 : t + 1])
        if framing == "single" and gram[:2] == (BOS, BOS):
          continue  # one bos per song
        raw[gram] += 1
  adjusted = {n: {} for n in range(1, order + 1)}
  for g, count in raw.items():
    if len(g) == order or g[0] == BOS:
      adjusted[len(g)][g] = count
    else:
      left = {u[0] for u in raw if len(u) == len(g) + 1 and u[1:] == g}
      adjusted[len(g)][g] = len(left)
  discount = {}  # order -> {count: discount}, 3 standing for 3+
  for n, table in adjusted.items():
    nk = [sum(1 for c in table.values() if c == k) for k in range(5)]
    plain = max(nk[1] / max(nk[1] + 2 * nk[2], 1), ngram.MIN_DISCOUNT)
    discount[n] = {k: plain for k in (1, 2, 3)}
    if discounting == "modified" and min(nk[1:]) > 0:
      y = nk[1] / (nk[1] + 2 * nk[2])
      for k in (1, 2, 3):
        dk = k - (k + 1) * y * nk[k + 1] / nk[k]
        discount[n][k] = min(max(dk, ngram.MIN_DISCOUNT), k)

  def prob(history, w):
    n = len(history) + 1
    if n == 1:
      lower = 1 / (vocab_size - 2)
    else:
      lower = prob(history[1:], w)
    followers = {
      g[-1]: c for g, c in adjusted[n].items() if g[:-1] == tuple(history)
    }
    if not followers:
      return lower
    d = discount[n]
    gamma = sum(d[min(c, 3)] for c in followers.values())
    count = followers.get(w, 0)
    mass = count - (d[min(count, 3)] if count else 0) + gamma * lower
    return mass / sum(followers.values())

  return prob


@pytest.mark.parametrize("framing", ngram.FRAMINGS)
@pytest.mark.parametrize("discounting", ngram.DISCOUNTING)
@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_matches_slow_reference(order, discounting, framing):
  rng = np.random.default_rng(order)
  # Skewed token frequencies, so that modified KN has n1..n4 > 0 at low
  # orders and falls back to the plain discount at high ones.
  weights = np.array([0.1, 0.05, 0.45, 0.25, 0.15])
  train = [
    rng.choice(np.arange(2, V), size=rng.integers(0, 12), p=weights)
    for _ in range(30)
  ]
  test = [rng.integers(2, V, size=rng.integers(0, 7)) for _ in range(5)]
  model = ngram.fit(train, V, order, discounting, framing=framing)
  reference = reference_kn(train, V, order, discounting, framing)
  want = []
  for seq in test:
    framed = [BOS] * (order - 1) + list(seq) + [EOS]
    for t in range(order - 1, len(framed)):
      want.append(math.log(reference(framed[t - order + 1 : t], framed[t])))
  np.testing.assert_allclose(model.log_prob(test), want, atol=1e-12)


@pytest.mark.parametrize("discounting", ngram.DISCOUNTING)
@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_distributions_sum_to_one(order, discounting):
  rng = np.random.default_rng(order)
  train = [rng.integers(2, V, size=rng.integers(0, 12)) for _ in range(30)]
  model = ngram.fit(train, V, order, discounting)
  contexts = [[], [A], [B, A], [A, B, A], [C, C, C, C], [UNK], [EOS, A]]
  for context in contexts:
    dist = model.prob_dist(context)
    assert dist.shape == (V,)
    assert dist[tokens.PAD_ID] == 0 and dist[tokens.BOS_ID] == 0
    assert np.all(dist[2:] > 0)  # unseen tokens too
    assert dist.sum() == pytest.approx(1.0, abs=1e-12)
  # Leading bos in the context changes nothing.
  np.testing.assert_array_equal(model.prob_dist([BOS, A]), model.prob_dist([A]))


def test_unseen_token_has_probability():
  model = ngram.fit(arrays([A, B, A], [A, A]), V, order=3)
  for context in ([], [A], [A, B], [C]):
    assert model.prob_dist(context)[C] > 0
    assert model.prob_dist(context)[UNK] > 0
  assert np.isfinite(model.log_prob(arrays([C, UNK, C]))).all()


def test_log_prob_agrees_with_prob_dist():
  train = arrays([A, B, A, C], [A, A, B], [B, B, UNK, A])
  model = ngram.fit(train, V, order=3)
  seq = [A, B, C, A]
  want = [
    math.log(model.prob_dist(seq[:i])[w]) for i, w in enumerate(seq + [EOS])
  ]
  np.testing.assert_allclose(model.log_prob(arrays(seq)), want, atol=1e-12)
  probs, targets = model.distributions(arrays(seq))
  np.testing.assert_array_equal(targets, seq + [EOS])
  np.testing.assert_allclose(
    np.log(probs[np.arange(len(targets)), targets]), want, atol=1e-12
  )


def repetition_songs(rng, count):
  """x b b x b b x: the token three back decides the next one."""
  songs = []
  for _ in range(count):
    x = int(rng.choice([A, C]))
    songs.append(np.array([x, B, B, x, B, B, x], np.int32))
  return songs


def test_higher_order_helps_and_order_selection():
  rng = np.random.default_rng(0)
  train, valid = repetition_songs(rng, 200), repetition_songs(rng, 50)
  bits = {
    n: ngram.bits_per_token(ngram.fit(train, V, n), valid) for n in (2, 4)
  }
  # Order 4 sees x in (x, b, b) and predicts it; order 2 sees only b.
  assert bits[4] < bits[2] - 0.3
  best, searched = ngram.select_order(train, valid, V, max_order=6)
  assert list(searched) == [1, 2, 3, 4, 5, 6]
  assert searched[best] == min(searched.values())
  assert best >= 4
  assert searched[2] == pytest.approx(bits[2])
  # bits per token is the mean of -log2 p.
  model = ngram.fit(train, V, 3)
  assert ngram.bits_per_token(model, valid) == pytest.approx(
    -np.mean(model.log_prob(valid)) / math.log(2)
  )


def test_ranks_and_topk():
  probs = np.array([[0.0, 0.0, 0.5, 0.3, 0.2], [0.0, 0.0, 0.4, 0.4, 0.2]])
  np.testing.assert_array_equal(scoring.ranks(probs, np.array([3, 3])), [1, 1])
  np.testing.assert_array_equal(scoring.ranks(probs, np.array([2, 4])), [0, 2])
  model = ngram.fit(arrays([A, B, A, B, A, B]), V, order=2)
  accuracy = ngram.topk_accuracy(model, arrays([A, B, A, B]))
  assert accuracy[1] == pytest.approx(4 / 5)  # all but the eos
  assert accuracy[5] == 1.0


def test_joint_ranks():
  pitch = np.array([[0.0, 0.0, 0.6, 0.4]])
  duration = np.array([[0.0, 0.0, 0.3, 0.7]])
  # Pairs: (2,3) .42, (3,3) .28, (2,2) .18, (3,2) .12.
  for p, d, rank in [(2, 3, 0), (3, 3, 1), (2, 2, 2), (3, 2, 3)]:
    got = scoring.joint_ranks(pitch, np.array([p]), duration, np.array([d]))
    assert got.tolist() == [rank]


def test_bad_input():
  with pytest.raises(ValueError, match="bos"):
    ngram.fit(arrays([A, BOS]), V, 2)
  with pytest.raises(ValueError, match="pad"):
    ngram.fit(arrays([A, 0]), V, 2)
  with pytest.raises(ValueError, match="ids"):
    ngram.fit(arrays([A, V]), V, 2)
  with pytest.raises(ValueError, match="overflows"):
    ngram.fit(arrays([A]), 300, 8)
  with pytest.raises(ValueError, match="discounting"):
    ngram.fit(arrays([A]), V, 2, discounting="absolute")


def toy_dataset():
  pitch_vocab = tokens.build_vocab("pitch", {"C4": 5, "D4": 3, "E4": 2})
  duration_vocab = tokens.build_vocab("duration", {"1.0": 5, "0.5": 3})

  def split(songs, shifts):
    pitch = [pitch_vocab.encode(p) for p, _ in songs]
    duration = [duration_vocab.encode(d) for _, d in songs]
    lengths = [len(p) for p, _ in songs]
    return dataset_lib.Split(
      pitch=np.concatenate(pitch),
      duration=np.concatenate(duration),
      offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
      sources=np.array([f"s{i}" for i in range(len(songs))]),
      transpositions=np.array(shifts, np.int32),
    )

  song = (["C4", "D4", "E4", "C4"], ["1.0", "0.5", "0.5", "1.0"])
  other = (["E4", "D4", "C4"], ["0.5", "0.5", "1.0"])
  splits = {
    "train": split([song, other, song], [0, 0, 2]),
    "valid": split([song, other], [0, 0]),
    "test": split([other, song, other], [0, 0, 1]),
  }
  return dataset_lib.Dataset(
    "toy",
    data_config_lib.CorpusConfig(),
    splits,
    pitch_vocab,
    duration_vocab,
    {},
  )


def test_streams_on_a_toy_dataset():
  dataset = toy_dataset()
  fitted = ngram.fit_streams(dataset, max_order=3)
  for stream in tokens.STREAMS:
    f = fitted[stream]
    assert f["order"] in (1, 2, 3)
    assert f["valid_bits"][f["order"]] == min(f["valid_bits"].values())
    assert f["model"].order == f["order"]
  result = ngram.evaluate_streams(dataset, fitted)
  assert result["num_targets"] == 3 + 4 + 2  # the transposed copy is skipped
  assert result["bits_per_note"] == pytest.approx(
    result["bits_per_note_pitch"] + result["bits_per_note_duration"]
  )
  for name in ("pitch", "duration"):
    assert 0 <= result[f"top1_{name}"] <= result[f"top5_{name}"] <= 1
  assert result["top1"] <= min(result["top1_pitch"], result["top1_duration"])
  assert result["top1"] <= result["top5"]
  songs = ngram.split_songs(dataset.test, "pitch")
  model = fitted["pitch"]["model"]
  assert result["bits_per_note_pitch"] == pytest.approx(
    ngram.bits_per_token(model, songs)
  )
  assert "test bits per note" in ngram.format_results(fitted, result)


ESAC = files.cache_dir("datasets", "esac")


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(ESAC), reason="no ESAC dataset cached")
def test_esac_baseline():
  dataset = dataset_lib.load_dataset(ESAC)
  fitted = ngram.fit_streams(dataset, max_order=8)
  result = ngram.evaluate_streams(dataset, fitted)
  for stream in tokens.STREAMS:
    assert fitted[stream]["fit_seconds"] < 5
  assert result["num_targets"] == 22878 + 416
  assert 3.0 < result["bits_per_note"] < 5.0
