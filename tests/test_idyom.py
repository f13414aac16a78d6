"""Short-term models and IDyOM's combination, by hand and by property."""

import numpy as np
import pytest

from melodyjax.evaluation import idyom

V = 7  # pad, bos, eos, unk, and tokens 4, 5, 6


def test_ppm_c_by_hand():
  # Song 4 5 4 5, order 2 (contexts of one token).
  p = idyom.ppm_distributions(np.array([4, 5, 4, 5]), V, 2)
  uniform = np.array([0, 0, 1, 1, 1, 1, 1]) / 5
  np.testing.assert_allclose(p[0], uniform)
  # After one 4: order 0 counts {4: 1}, N = 1, T = 1; no context '4' yet.
  order0 = (np.eye(V)[4] + uniform) / 2
  np.testing.assert_allclose(p[1], order0)
  # Before event 2 (a 4) after '4 5': order 0 {4: 1, 5: 1}; context '5' unseen.
  order0 = (np.eye(V)[4] + np.eye(V)[5] + 2 * uniform) / 4
  np.testing.assert_allclose(p[2], order0)
  # Before event 3 (a 5) after '4 5 4': context '4' has seen {5: 1}.
  order0 = (2 * np.eye(V)[4] + np.eye(V)[5] + 2 * uniform) / 5
  np.testing.assert_allclose(p[3], (np.eye(V)[5] + order0) / 2)


@pytest.mark.parametrize("kind", idyom.SHORT_TERM)
def test_short_term_models_are_distributions_of_the_past_only(kind):
  rng = np.random.default_rng(0)
  song = rng.integers(3, V, 30)
  changed = song.copy()
  changed[20:] = 4
  a = idyom.short_term_distributions([song], V, 3, kind)
  b = idyom.short_term_distributions([changed], V, 3, kind)
  assert a.shape == (31, V)
  np.testing.assert_allclose(a.sum(axis=1), 1.0)
  assert np.all(a[:, :2] == 0) and np.all(a[:, 2:] > 0)
  np.testing.assert_array_equal(a[:21], b[:21])  # event 20 and before
  # A repeated pattern is learnt within the song.
  loop = np.tile([4, 5, 6], 10)
  p = idyom.short_term_distributions([loop], V, 3, kind)
  assert p[-2, 6] > 0.8 and p[1, 5] < 0.5


def test_combination():
  confident = np.array([[0, 0, 0.01, 0.01, 0.96, 0.01, 0.01]])
  flat = np.array([[0, 0, 0.2, 0.2, 0.2, 0.2, 0.2]])
  even = idyom.combine([confident, flat], 0.0)
  geometric = np.sqrt(confident * flat)
  np.testing.assert_allclose(even, geometric / geometric.sum())
  biased = idyom.combine([confident, flat], 6.0)
  assert biased[0, 4] > even[0, 4] > flat[0, 4]
  np.testing.assert_allclose(biased.sum(), 1.0)
  targets = np.array([4])
  best, bits = idyom.choose_bias([confident, flat], targets)
  assert best == max(idyom.BIASES) and bits[best] < bits[0.0]
