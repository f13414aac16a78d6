"""Model shapes, causality, and the single-step path."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from melodyjax.model import config as model_config_lib
from melodyjax.model import lstm
from melodyjax.model import model as model_lib
from melodyjax.model.kernels import build

CONFIG = model_config_lib.ModelConfig(
  pitch_vocab_size=30,
  duration_vocab_size=12,
  pitch_embed_dim=16,
  duration_embed_dim=8,
  lstm_sizes=(24, 16, 16),
  dense_size=16,
)


def inputs(batch=3, time=9, seed=0):
  rng = np.random.default_rng(seed)
  return (
    jnp.asarray(rng.integers(0, 30, (batch, time)), jnp.int32),
    jnp.asarray(rng.integers(0, 12, (batch, time)), jnp.int32),
  )


@pytest.fixture(scope="module")
def params():
  pitch, duration = inputs()
  return model_lib.MelodyModel(CONFIG).init(jax.random.key(0), pitch, duration)


def test_reference_architecture_sizes():
  config = model_config_lib.ModelConfig(
    pitch_vocab_size=49, duration_vocab_size=42
  )
  model = model_lib.MelodyModel(config)
  pitch, duration = inputs(1, 4)
  shapes = jax.tree.map(
    jnp.shape, jax.eval_shape(model.init, jax.random.key(0), pitch, duration)
  )["params"]
  assert shapes["pitch_embed"]["embedding"] == (49, 128)
  assert shapes["duration_embed"]["embedding"] == (42, 32)
  assert shapes["lstm"]["input_kernel_0"] == (160, 4 * 256)
  assert shapes["lstm"]["recurrent_kernel_1"] == (128, 4 * 128)
  assert shapes["lstm"]["recurrent_kernel_2"] == (128, 4 * 128)
  assert shapes["dense"]["kernel"] == (128, 128)
  assert shapes["pitch_head"]["kernel"] == (128, 49)
  assert shapes["duration_head"]["kernel"] == (128, 42)


def test_shapes_and_finiteness(params):
  pitch, duration = inputs()
  model = model_lib.MelodyModel(CONFIG)
  pitch_logits, duration_logits, carry = model.apply(params, pitch, duration)
  assert pitch_logits.shape == (3, 9, 30)
  assert duration_logits.shape == (3, 9, 12)
  assert [c[0].shape for c in carry] == [(3, 24), (3, 16), (3, 16)]
  assert np.isfinite(pitch_logits).all() and np.isfinite(duration_logits).all()
  last = model.apply(params, pitch, duration, last_only=True)
  np.testing.assert_allclose(last[0][:, 0], pitch_logits[:, -1], atol=1e-6)


def test_causality(params):
  """The output at t has no gradient from inputs after t."""
  model = model_lib.MelodyModel(CONFIG)
  pitch, duration = inputs(1, 9)

  def output_at(t, features):
    x = model.apply(params, features, method=lambda m, f: m.lstm(f)[0])
    return jnp.sum(x[0, t])

  features = model.apply(
    params, pitch, duration, method=lambda m, p, d: m._features(p, d)
  )
  for t in (0, 4, 8):
    grad = jax.grad(output_at, argnums=1)(t, features)
    per_step = np.abs(np.asarray(grad[0])).sum(-1)
    assert np.all(per_step[t + 1 :] == 0), t
    assert np.all(per_step[: t + 1] > 0), t


@pytest.mark.parametrize("stacked", [False, True])
def test_step_equals_sequence(params, stacked, monkeypatch):
  if stacked:  # one [x, h] matmul per upper layer, as for large batches
    monkeypatch.setattr(lstm, "STACKED_MATMUL_MIN_BATCH", 1)
  model = model_lib.MelodyModel(CONFIG)
  pitch, duration = inputs()
  full_pitch, full_duration, full_carry = model.apply(params, pitch, duration)
  carry = model.apply(params, 3, method=model_lib.MelodyModel.initial_carry)
  step = jax.jit(
    lambda p, d, c: model.apply(
      params, p, d, c, method=model_lib.MelodyModel.step
    )
  )
  for t in range(pitch.shape[1]):
    p, d, carry = step(pitch[:, t], duration[:, t], carry)
    np.testing.assert_allclose(p, full_pitch[:, t], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d, full_duration[:, t], rtol=1e-5, atol=1e-5)
  for (h, c), (h2, c2) in zip(carry, full_carry, strict=True):
    np.testing.assert_allclose(h, h2, atol=1e-5)
    np.testing.assert_allclose(c, c2, atol=1e-5)


def test_step_with_input_table_equals_step(params):
  model = model_lib.MelodyModel(CONFIG)
  table = model.apply(params, method=model_lib.MelodyModel.input_table)
  assert table.shape == (30, 12, 4 * 24)
  pitch, duration = inputs(batch=5, time=6, seed=1)
  step = jax.jit(
    lambda p, d, c, table: model.apply(
      params, p, d, c, table, method=model_lib.MelodyModel.step
    )
  )
  carry = model.apply(params, 5, method=model_lib.MelodyModel.initial_carry)
  looked_up = carry
  for t in range(pitch.shape[1]):
    p, d, carry = step(pitch[:, t], duration[:, t], carry, None)
    p2, d2, looked_up = step(pitch[:, t], duration[:, t], looked_up, table)
    np.testing.assert_allclose(p2, p, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d2, d, rtol=1e-5, atol=1e-5)
  for (h, c), (h2, c2) in zip(carry, looked_up, strict=True):
    np.testing.assert_allclose(h2, h, atol=1e-5)
    np.testing.assert_allclose(c2, c, atol=1e-5)


def test_bfloat16_compute_keeps_float32_params_and_logits():
  config = model_config_lib.ModelConfig(
    **{**CONFIG.__dict__, "dtype": "bfloat16"}
  )
  model = model_lib.MelodyModel(config)
  pitch, duration = inputs()
  params = model.init(jax.random.key(0), pitch, duration)
  assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype("float32")}
  logits = model.apply(params, pitch, duration)[0]
  assert logits.dtype == jnp.float32 and np.isfinite(logits).all()


def test_spatial_dropout_masks_whole_channels_per_row():
  key = jax.random.key(3)
  rows = jnp.arange(64)
  mask = model_lib.spatial_dropout_mask(key, rows, 40, 0.25)
  np.testing.assert_allclose(np.unique(mask), [0.0, 1 / 0.75], rtol=1e-6)
  assert abs(float((mask == 0).mean()) - 0.25) < 0.05
  # A row's mask depends on its global index only, not on the batch split.
  again = model_lib.spatial_dropout_mask(key, rows[32:], 40, 0.25)
  np.testing.assert_array_equal(mask[32:], again)


@pytest.mark.parametrize(
  "impl, dtype",
  [
    ("fused", "float32"),
    ("fused", "bfloat16"),
    ("kernel", "float32"),
    ("onednn", "float32"),
  ],
)
def test_lstm_implementations_equal_scan_in_values_and_gradients(impl, dtype):
  """Every implementation matches autodiff of the plain scan in the model."""
  if impl in build.IMPLS and build.unavailable_reason(impl):
    pytest.skip(f"{impl}: {build.unavailable_reason(impl)}")
  assert lstm.resolve_impl(impl, dtype)[0] == impl  # no silent fallback
  configs = {
    name: model_config_lib.ModelConfig(
      **{**CONFIG.__dict__, "lstm_impl": name, "dtype": dtype}
    )
    for name in ("scan", impl)
  }
  pitch, duration = inputs(4, 11)
  params = model_lib.MelodyModel(configs["scan"]).init(
    jax.random.key(2), pitch, duration
  )
  rng = np.random.default_rng(1)
  weights = jnp.asarray(rng.normal(size=(4, 11, 30)), jnp.float32)

  def loss(params, impl):
    logits, _, carry = model_lib.MelodyModel(configs[impl]).apply(
      params, pitch, duration
    )
    # Depends on every output and on the final state.
    return jnp.sum(logits * weights) + sum(
      jnp.sum(h * 0.3) + jnp.sum(c * 0.7) for h, c in carry
    )

  tol = {"float32": 1e-5, "bfloat16": 2e-2}[dtype]
  values = {name: loss(params, name) for name in configs}
  np.testing.assert_allclose(values[impl], values["scan"], rtol=tol)
  grads = {name: jax.grad(loss)(params, name) for name in configs}
  for (path, a), b in zip(
    jax.tree_util.tree_flatten_with_path(grads["scan"])[0],
    jax.tree.leaves(grads[impl]),
    strict=True,
  ):
    scale = float(jnp.max(jnp.abs(a))) + 1e-6
    np.testing.assert_allclose(
      b / scale, a / scale, atol=tol, err_msg=jax.tree_util.keystr(path)
    )
