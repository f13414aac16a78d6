"""`train.carry_state`: lanes of songs in order and the carried LSTM state.

The lane layout (every window once per epoch, a song's windows at
consecutive steps of one lane), the loss of a carried walk equal to the
loss of whole songs in one window, every LSTM implementation from a given
initial state, jit and pmap on four CPU devices, exact resume, and the
config errors.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from melodyjax import errors
from melodyjax.data import windows as windows_lib
from melodyjax.model import config as model_config_lib
from melodyjax.model import lstm
from melodyjax.model import model as model_lib
from melodyjax.model.kernels import build as kernels_build
from melodyjax.training import checkpoints, loop, parallel
from melodyjax.training import state as state_lib
from melodyjax.training import steps as steps_lib
from tests.helpers import (
  abstract_state,
  assert_trees_equal,
  resume_after_step_10,
  small_dataset,
  tiny_config,
  write_tunes,
)

SEQ_LEN = 8  # events per window: the test songs span 2 to 7 windows


@pytest.fixture(scope="module")
def midi_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("midi")
  write_tunes(root, 48, 40)  # 14 to 53 events
  return root


@pytest.fixture(scope="module")
def dataset(midi_dir, tmp_path_factory):
  return small_dataset(midi_dir, tmp_path_factory.mktemp("data"))


def test_lanes_visit_every_window_once_and_songs_in_order(dataset):
  windows = windows_lib.make_windows(dataset.train, SEQ_LEN, "all")
  lanes = windows_lib.LaneIterator(windows, 4, seed=3)
  first = np.flatnonzero(np.diff(windows.songs, prepend=-1))
  for epoch in range(2):
    layout = lanes.layout(epoch)
    visited = layout[layout >= 0]
    np.testing.assert_array_equal(np.sort(visited), np.arange(len(windows)))
    for column in layout.T:
      real = column[column >= 0]
      assert (column[len(real) :] == -1).all(), "pads only at the end"
      assert real[0] in first
      for before, after in zip(real[:-1], real[1:], strict=True):
        same_song = windows.songs[after] == windows.songs[before]
        assert (same_song and after == before + 1) or after in first
    # Balanced: no lane is longer than the mean by more than one song.
    per_song = np.bincount(windows.songs)
    assert len(layout) <= len(windows) / 4 + per_song.max()
  assert not np.array_equal(lanes.layout(0), lanes.layout(1))


def test_lane_batches_follow_the_layout_and_depend_on_the_step(dataset):
  windows = windows_lib.make_windows(dataset.train, SEQ_LEN, "all")
  lanes = windows_lib.LaneIterator(windows, 4, seed=3)
  epoch_steps = len(lanes.layout(0))
  walked = [next(lanes) for _ in range(epoch_steps + 3)]
  for step in (0, 1, epoch_steps - 1, epoch_steps, epoch_steps + 2):
    fresh = windows_lib.LaneIterator(windows, 4, seed=3, step=step)
    batch = next(fresh)
    epoch, i = (0, step) if step < epoch_steps else (1, step - epoch_steps)
    indices = lanes.layout(epoch)[i]
    expected = windows.gather(indices)
    np.testing.assert_array_equal(batch.pitch, expected.pitch)
    np.testing.assert_array_equal(batch.pitch, walked[step].pitch)
    np.testing.assert_array_equal(batch.continues, walked[step].continues)
    song = windows.songs[np.maximum(indices, 0)]
    previous = lanes.layout(epoch)[i - 1] if i else np.full(4, -1)
    continues = (indices >= 0) & (previous == indices - 1)
    continues &= windows.songs[np.maximum(previous, 0)] == song
    np.testing.assert_array_equal(batch.continues, continues)
  assert walked[epoch_steps].continues.sum() == 0, "epochs start at bos"
  assert sum(b.continues.sum() for b in walked) > 0
  # Two processes take the two halves of the lanes.
  halves = [
    windows_lib.LaneIterator(
      windows, 4, seed=3, step=5, process_index=p, process_count=2
    ).batch_at(5)
    for p in range(2)
  ]
  np.testing.assert_array_equal(
    np.concatenate([h.target_pitch for h in halves]),
    lanes.batch_at(5).target_pitch,
  )


def _tiny_model(dataset, **model_overrides):
  config = tiny.get_config()
  config.model.update(model_overrides)
  return model_lib.MelodyModel(
    model_config_lib.get_model_config(
      config.model, len(dataset.pitch_vocab), len(dataset.duration_vocab)
    )
  ), config


def _setup(dataset, mode, num_devices, lanes, carry_state=True, **train):
  model, config = _tiny_model(dataset, spatial_dropout=0.0)
  config.train.update(train)
  tx = state_lib.create_optimizer(config.train)
  runner = parallel.create(
    mode, parallel.create_mesh(jax.devices()[:num_devices])
  )
  train_step, eval_step = steps_lib.make_steps(
    model, tx, "all", runner, carry_state=carry_state
  )
  state = state_lib.create_train_state(
    jax.random.key(0),
    model,
    tx,
    SEQ_LEN,
    carry_rows=lanes if carry_state else 0,
  )
  windows = windows_lib.make_windows(dataset.train, SEQ_LEN, "all")
  batches = windows_lib.create_iterator(
    windows, lanes, seed=0, carry_state=carry_state
  )
  return model, train_step, eval_step, runner, runner.put_state(state), batches


def _walk(train_step, runner, state, batches, steps, zero_carry=False):
  """(summed sums of `steps` steps, final state)."""
  totals = dict.fromkeys(steps_lib.SUM_KEYS, 0.0)
  for _ in range(steps):
    batch = next(batches).as_dict()
    if zero_carry:
      batch["continues"] = np.zeros_like(batch["continues"])
    state, sums = train_step(state, runner.put_batch(batch), jax.random.key(1))
    for key, value in runner.fetch(sums).items():
      if key in totals:
        totals[key] += float(value)
  return totals, state


@pytest.mark.parametrize(
  "mode, num_devices, lanes", [("jit", 1, 1), ("pmap", 4, 4)]
)
def test_carried_walk_has_the_loss_of_whole_songs(
  dataset, mode, num_devices, lanes
):
  # A learning rate too small to move float32 parameters: every step is
  # a forward pass of the same model.
  model, train_step, _, runner, state, batches = _setup(
    dataset, mode, num_devices, lanes, learning_rate=1e-30
  )
  params = jax.device_get(runner.host_params(state.params))
  epoch_steps = len(batches.layout(0))
  walked, _ = _walk(train_step, runner, state, batches, epoch_steps)
  # Every training song in one window from its bos, from a zero state.
  longest = int(np.diff(dataset.train.offsets).max())
  whole = windows_lib.make_windows(dataset.train, longest + 1, "all")
  assert len(whole) == len(dataset.train)
  sums = steps_lib.compute_sums(
    model, params, whole.gather(np.arange(len(whole))).as_dict(), "all"
  )
  assert walked["count"] == float(sums["count"])
  for key in ("nll_pitch", "nll_duration"):
    np.testing.assert_allclose(walked[key], float(sums[key]), rtol=2e-5)
  # Without the carried state (each window from zeros) the loss differs.
  _, train_step, _, runner, state, batches = _setup(
    dataset, mode, num_devices, lanes, learning_rate=1e-30
  )
  zeroed, _ = _walk(
    train_step, runner, state, batches, epoch_steps, zero_carry=True
  )
  # (An untrained model: 0.4% on the jit, one-lane walk; 100x rtol.)
  total = float(sums["nll_pitch"] + sums["nll_duration"])
  zeroed_total = zeroed["nll_pitch"] + zeroed["nll_duration"]
  assert abs(zeroed_total - total) > 2e-3 * total


def test_jit_and_pmap_agree_with_a_carried_state(dataset):
  results = {}
  for mode in ("jit", "pmap"):
    _, train_step, _, runner, state, batches = _setup(
      dataset, mode, 4, 8, learning_rate=1e-2
    )
    totals, state = _walk(train_step, runner, state, batches, 4)
    saved = jax.device_get(runner.saved_state(state))
    results[mode] = totals, saved
  (totals_jit, saved_jit), (totals_pmap, saved_pmap) = results.values()
  for key in ("nll_pitch", "nll_duration"):
    np.testing.assert_allclose(totals_jit[key], totals_pmap[key], rtol=1e-5)
  assert saved_jit.carry[0][0].shape == (8, 32)
  for a, b in zip(
    jax.tree.leaves((saved_jit.params, saved_jit.carry)),
    jax.tree.leaves((saved_pmap.params, saved_pmap.carry)),
    strict=True,
  ):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=5e-5)
  assert np.abs(saved_jit.carry[0][1]).max() > 0


def _impls():
  available = ["scan", "fused"]
  for impl in ("kernel", "onednn"):
    if kernels_build.unavailable_reason(impl) is None:
      available.append(impl)
  return available


@pytest.mark.parametrize("impl", _impls())
def test_every_lstm_impl_starts_from_a_given_carry(impl):
  sizes, batch, time_steps, dim = (9, 5), 3, 6, 7
  keys = jax.random.split(jax.random.key(0), 8)
  x = jax.random.normal(keys[0], (batch, time_steps, dim))
  carry = tuple(
    (
      0.5 * jax.random.normal(keys[1 + 2 * i], (batch, h)),
      0.5 * jax.random.normal(keys[2 + 2 * i], (batch, h)),
    )
    for i, h in enumerate(sizes)
  )
  reference = lstm.LSTMStack(sizes, dim, impl="scan")
  params = reference.init(keys[7], x)["params"]

  def loss(params, carry, impl):
    stack = lstm.LSTMStack(sizes, dim, impl=impl)
    outputs, final = stack.apply({"params": params}, x, carry)
    weights = jnp.arange(outputs.size, dtype=jnp.float32).reshape(outputs.shape)
    last = sum(jnp.sum(jnp.sin(h) + c * c) for h, c in final)
    return jnp.sum(jnp.tanh(outputs) * weights) / outputs.size + last

  want = jax.value_and_grad(loss, argnums=(0, 1))(params, carry, "scan")
  got = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)), static_argnums=2)(
    params, carry, impl
  )
  np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
  for a, b in zip(
    jax.tree.leaves(got[1]), jax.tree.leaves(want[1]), strict=True
  ):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  # The carry matters: from zeros the value is another one.
  assert abs(float(loss(params, None, impl)) - float(want[0])) > 1e-3


def test_resume_with_a_carried_state_equals_uninterrupted(midi_dir, tmp_path):
  config = tiny_config(midi_dir, tmp_path / "data", carry_state=True)
  (state_full, data_full), (state_cut, data_cut) = resume_after_step_10(
    config, tmp_path
  )
  cut = tmp_path / "cut"
  assert data_full == data_cut == {"step": 20, "seed": 0, "batch_size": 8}
  assert state_cut.carry is not None
  assert np.abs(state_cut.carry[0][0]).max() > 0
  assert_trees_equal(state_full, state_cut)
  # The step after the cut starts from the carry saved at step 10.
  state_10, _ = final_params_at(cut, 10)
  assert not np.array_equal(state_10.carry[0][0], state_cut.carry[0][0])
  # Resuming with the state no longer carried is refused, naming the field.
  config.train.carry_state = False
  config.train.num_train_steps = 30
  with pytest.raises(errors.ConfigError, match="train.carry_state"):
    loop.train_and_evaluate(config, str(cut))


def final_params_at(workdir, step):
  """(train state, data position) of a run's checkpoint at `step`."""
  manager = checkpoints.create_manager(
    str(workdir), max_to_keep=5, keep_best=0, enable_async=False
  )
  try:
    return checkpoints.restore(manager, step, abstract_state(workdir))
  finally:
    manager.close()


def test_carry_state_needs_objective_all(midi_dir, tmp_path):
  config = tiny_config(
    midi_dir, tmp_path / "data", carry_state=True, objective="last"
  )
  with pytest.raises(errors.ConfigError, match="config.train.carry_state"):
    loop.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()
