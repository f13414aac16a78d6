"""Parity of the compiled LSTM kernels with the pure-JAX reference.

Written against a copy of the reference math, not melodyjax's own scans,
so that a mistake shared by both cannot pass.

Values and every gradient (x, input and recurrent kernels, bias, h0, c0,
through jax.vjp with random cotangents for hs and the final state), for the
reference model's shapes, batch 1, odd sizes and T = 1; under jit and
shard_map over four CPU devices (conftest.py); every path of the kernel (the
widest instruction set here, AVX2 forced by MELODYJAX_LSTM_ISA, the previous
layer with XLA's input projection by MELODYJAX_LSTM_FOLD=0); the fallback
reasons; 'auto''s calibration; the cuDNN packing (checked against
jax.experimental.rnn.lstm_ref on CPU).
"""

import ctypes
import functools
import pathlib
import stat

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from melodyjax.model import lstm
from melodyjax.model.kernels import build, ops

# --- The reference: a copy of model.py's lstm_recurrence math (autodiff). --


def ref_layer(x, input_kernel, recurrent_kernel, bias, h0, c0):
  projected = x @ input_kernel + bias
  hidden = h0.shape[-1]

  def body(carry, p):
    h, c = carry
    z = p + h @ recurrent_kernel
    s = jax.nn.sigmoid(z)
    i, f, o = s[:, :hidden], s[:, hidden : 2 * hidden], s[:, 3 * hidden :]
    g = jnp.tanh(z[:, 2 * hidden : 3 * hidden])
    c = f * c + i * g
    h = o * jnp.tanh(c)
    return (h, c), h

  (h, c), hs = jax.lax.scan(body, (h0, c0), projected)
  return hs, (h, c)


# ----------------------------------------------------------------------------

SHAPES = [  # T, B, D, H
  (64, 64, 160, 256),  # the reference model's three layers
  (64, 64, 256, 128),
  (64, 64, 128, 128),
  (16, 1, 160, 256),  # batch 1
  (5, 3, 7, 9),  # odd sizes
  (1, 4, 6, 8),  # T = 1
  (1, 1, 3, 1),
  (7, 13, 33, 33),  # tails of the 6-row and 16-unit tiles
  (3, 25, 40, 48),  # tails of the 12-row tiles
]

IMPLS = list(build.IMPLS)
# The kernel's paths: environment that selects each (read at trace time).
KERNEL_PATHS = {
  "widest": {},
  "avx2": {"MELODYJAX_LSTM_ISA": "avx2"},
  "projected": {"MELODYJAX_LSTM_FOLD": "0"},
  "projected_avx2": {"MELODYJAX_LSTM_FOLD": "0", "MELODYJAX_LSTM_ISA": "avx2"},
}


def _inputs(T, B, D, H, seed=0):
  k = jax.random.split(jax.random.key(seed), 9)
  n = jax.random.normal
  x = n(k[0], (T, B, D))
  wi = n(k[1], (D, 4 * H)) / np.sqrt(D)
  wh = n(k[2], (H, 4 * H)) / np.sqrt(H)
  b = 0.3 * n(k[3], (4 * H,))
  h0 = 0.5 * n(k[4], (B, H))
  c0 = 0.5 * n(k[5], (B, H))
  cot = (n(k[6], (T, B, H)), (n(k[7], (B, H)), n(k[8], (B, H))))
  return (x, wi, wh, b, h0, c0), cot


def _close(got, want, name, tol=2e-5):
  got, want = np.asarray(got), np.asarray(want)
  assert got.shape == want.shape, name
  scale = max(float(np.abs(want).max()), 1e-3)
  err = float(np.abs(got - want).max()) / scale
  assert err <= tol, f"{name}: max error {err:.2e} of max |ref| {scale:.3g}"


def _check(fn, args, cot, ref=ref_layer, tol=2e-5):
  (hs, (h, c)), vjp = jax.vjp(fn, *args)
  (rhs, (rh, rc)), rvjp = jax.vjp(ref, *args)
  _close(hs, rhs, "hs", tol)
  _close(h, rh, "h_T", tol)
  _close(c, rc, "c_T", tol)
  names = ("dx", "d_input_kernel", "d_recurrent_kernel", "d_bias", "dh0", "dc0")
  if len(args) == 4:
    names = ("d_projected", "d_recurrent_kernel", "dh0", "dc0")
  for name, g, r in zip(names, vjp(cot), rvjp(cot), strict=True):
    _close(g, r, name, tol)


def _need(impl):
  # Both build here: `make test` installs oneDNN (the dev extra) on x86-64
  # Linux and the machine has g++; elsewhere the kernels are skipped.
  reason = build.unavailable_reason(impl)
  if reason:
    pytest.skip(f"{impl} unavailable here: {reason}")


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
  "shape", SHAPES, ids=lambda s: "T{}B{}D{}H{}".format(*s)
)
def test_values_and_gradients(impl, shape):
  _need(impl)
  args, cot = _inputs(*shape)
  _check(lambda *a: ops.lstm_layer(*a, impl=impl), args, cot)


@pytest.mark.parametrize("path", ["avx2", "projected", "projected_avx2"])
@pytest.mark.parametrize(
  "shape",
  [(32, 64, 160, 256), (16, 1, 160, 256), (5, 3, 7, 9), (1, 1, 3, 1),
   (7, 13, 33, 33), (3, 25, 40, 48)],
  ids=lambda s: "T{}B{}D{}H{}".format(*s),
)  # fmt: skip
def test_every_kernel_path(path, shape, monkeypatch):
  """The paths test_values_and_gradients does not take (it runs the
  widest): tiles of 6 and 12 rows, 8 and 16 units, and their tails."""
  _need("kernel")
  for name, value in KERNEL_PATHS[path].items():
    monkeypatch.setenv(name, value)
  args, cot = _inputs(*shape, seed=11)
  _check(jax.jit(lambda *a: ops.lstm_layer(*a, impl="kernel")), args, cot)


@pytest.mark.parametrize("path", ["widest", "avx2"])
def test_every_kernel_path_under_shard_map(path, monkeypatch):
  _need("kernel")
  for name, value in KERNEL_PATHS[path].items():
    monkeypatch.setenv(name, value)
  test_shard_map_four_devices("kernel")


def test_kernel_isa_in_the_description(monkeypatch):
  _need("kernel")
  lstm.resolve_impl.cache_clear()
  try:
    line = lstm.resolve_impl("kernel")[1]
    wide = "AVX-512" if "avx512f" in build.cpu_description() else "AVX2 + FMA"
    assert line.endswith(f"; {wide} tiles)"), line
    monkeypatch.setenv("MELODYJAX_LSTM_ISA", "avx2")
    lstm.resolve_impl.cache_clear()
    assert "AVX2 + FMA tiles" in lstm.resolve_impl("kernel")[1]
  finally:
    lstm.resolve_impl.cache_clear()


@pytest.mark.parametrize(
  "shape", [(64, 64, 160, 256), (5, 3, 7, 9), (1, 2, 3, 4)]
)
def test_recurrence_on_projected(shape):
  """lstm_recurrence(projected, Wh, h0, c0), the model's call, vs ours."""
  _need("kernel")
  (x, wi, wh, b, h0, c0), cot = _inputs(*shape, seed=7)
  projected = x @ wi + b

  def ref(projected, wh, h0, c0):
    eye = jnp.eye(projected.shape[-1], dtype=projected.dtype)
    return ref_layer(projected, eye, wh, jnp.zeros_like(b), h0, c0)

  _check(ops.lstm_recurrence, (projected, wh, h0, c0), cot, ref=ref)


@pytest.mark.parametrize("impl", IMPLS)
def test_under_jit(impl):
  _need(impl)
  args, cot = _inputs(9, 5, 11, 24, seed=1)
  layer = jax.jit(lambda *a: ops.lstm_layer(*a, impl=impl))
  _check(layer, args, cot)

  # A jitted training-style step: loss and gradients in one program.
  def loss(fn, *a):
    hs, (h, c) = fn(*a)
    return jnp.sum(hs * cot[0]) + jnp.sum(h * cot[1][0]) + jnp.sum(c)

  got = jax.jit(jax.grad(functools.partial(loss, layer), argnums=range(6)))(
    *args
  )
  want = jax.grad(functools.partial(loss, ref_layer), argnums=range(6))(*args)
  for g, w in zip(got, want, strict=True):
    _close(g, w, "grad")


@pytest.mark.parametrize("impl", IMPLS)
def test_stacked_layers(impl):
  """The reference model's three layers in a row, as LSTMStack._fused runs
  them."""
  _need(impl)
  sizes, T, B, D = (256, 128, 128), 12, 8, 160
  key = jax.random.key(3)
  x = jax.random.normal(key, (T, B, D))
  params = []
  d = D
  for i, h in enumerate(sizes):
    (_, wi, wh, b, h0, c0), _ = _inputs(1, B, d, h, seed=10 + i)
    params.append((wi, wh, b, h0, c0))
    d = h

  def stack(layer, x, params):
    for p in params:
      x, _ = layer(x, *p)
    return jnp.sum(x**2)

  kernel = lambda *a: ops.lstm_layer(*a, impl=impl)
  got = jax.jit(jax.value_and_grad(functools.partial(stack, kernel), (0, 1)))(
    x, params
  )
  want = jax.value_and_grad(functools.partial(stack, ref_layer), (0, 1))(
    x, params
  )
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    _close(g, w, "stack")


@pytest.mark.parametrize("impl", IMPLS)
def test_shard_map_four_devices(impl):
  _need(impl)
  devices = jax.devices("cpu")
  assert len(devices) == 4, "conftest.py sets 4 CPU devices"
  mesh = Mesh(np.array(devices), ("d",))
  args, cot = _inputs(6, 8, 10, 16, seed=2)

  def sharded(x, wi, wh, b, h0, c0):
    f = jax.shard_map(
      lambda *a: ops.lstm_layer(*a, impl=impl),
      mesh=mesh,
      in_specs=(P(None, "d"), P(), P(), P(), P("d"), P("d")),
      out_specs=(P(None, "d"), (P("d"), P("d"))),
    )
    return f(x, wi, wh, b, h0, c0)

  _check(jax.jit(sharded), args, cot)


@pytest.mark.parametrize("impl", IMPLS)
def test_pmap_four_devices(impl):
  _need(impl)
  args, _ = _inputs(4, 8, 6, 8, seed=4)
  x, wi, wh, b, h0, c0 = args

  def per_device(x, h0, c0):
    return ops.lstm_layer(x, wi, wh, b, h0, c0, impl=impl)[0]

  split = lambda a, axis: jnp.stack(jnp.split(a, 4, axis=axis))
  got = jax.pmap(per_device)(split(x, 1), split(h0, 0), split(c0, 0))
  want = ref_layer(*args)[0]
  _close(jnp.concatenate(list(got), axis=1), want, "pmap hs")


def test_float32_only():
  _need("kernel")
  args, _ = _inputs(2, 2, 3, 4)
  with pytest.raises(TypeError, match="float32"):
    ops.lstm_layer(*(a.astype(jnp.bfloat16) for a in args), impl="kernel")


@pytest.mark.parametrize("isa", ["avx2", "widest"])
def test_fast_math_accuracy(isa):
  lib, reason = build.load("kernel")
  assert lib is not None, reason
  x = np.concatenate(
    [
      np.linspace(-100, 100, 200_001, dtype=np.float32),
      np.geomspace(1e-30, 1, 1001, dtype=np.float32),
      -np.geomspace(1e-30, 1, 1001, dtype=np.float32),
      np.float32([0.0, 0.625, -0.625, 0.62499994, 9.0, -9.0]),
    ]
  )
  out = np.empty_like(x)
  ptr = ctypes.POINTER(ctypes.c_float)
  fn = functools.partial(
    lib.mjx_fused_eval_math_isa, build.ISAS["avx2" if isa == "avx2" else "auto"]
  )
  lib.mjx_fused_eval_math_isa.argtypes = [
    ctypes.c_int64,
    ctypes.c_int,
    ctypes.c_int64,
    ptr,
    ptr,
  ]
  x64 = x.astype(np.float64)
  with np.errstate(over="ignore"):
    exact = {
      0: np.exp(x64),
      1: 1 / (1 + np.exp(-x64)),
      2: np.tanh(x64),
    }
  for kind, want in exact.items():
    fn(kind, x.size, x.ctypes.data_as(ptr), out.ctypes.data_as(ptr))
    keep = np.abs(x) < (87 if kind == 0 else 1e9)
    # Relative error, absolute below 1e-30 (the sigmoid's far tail, where
    # ours is ~1e-39 for x < -88 instead of underflowing further).
    rel = np.abs(out[keep] - want[keep]) / np.maximum(np.abs(want[keep]), 1e-30)
    assert rel.max() < 5e-7, (kind, float(rel.max()), x[keep][rel.argmax()])


# --- Fallback reasons. ------------------------------------------------------


def test_reason_without_compiler(tmp_path, monkeypatch):
  monkeypatch.setenv("MELODYJAX_KERNEL_CACHE", str(tmp_path))
  for impl in IMPLS:
    reason = build.unavailable_reason(impl, cxx="/nonexistent/g++")
    assert reason == "C++ compiler '/nonexistent/g++' not found", reason


def test_reason_when_compiling_fails(tmp_path, monkeypatch):
  monkeypatch.setenv("MELODYJAX_KERNEL_CACHE", str(tmp_path / "cache"))
  fake = tmp_path / "fake-g++"
  fake.write_text(
    "#!/bin/sh\n"
    'if [ "$1" = --version ]; then echo "fake 1.0"; exit 0; fi\n'
    "echo 'lstm_fused.cc:1:1: error: something broke' >&2\nexit 1\n"
  )
  fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
  reason = build.unavailable_reason("kernel", cxx=str(fake))
  assert reason.startswith("compiling lstm_fused.cc failed: "), reason
  assert "something broke" in reason and "\n" not in reason
  assert not list(pathlib.Path(tmp_path / "cache").rglob("*.so*"))


def test_reason_without_onednn(tmp_path, monkeypatch):
  monkeypatch.setenv("MELODYJAX_KERNEL_CACHE", str(tmp_path))
  monkeypatch.setenv("MELODYJAX_ONEDNN_ROOT", str(tmp_path / "nowhere"))
  for impl in ("onednn",):
    reason = build.unavailable_reason(impl, cxx="c++")
    assert reason and "oneDNN headers not found" in reason, reason


def test_unknown_impl():
  assert "unknown LSTM kernel" in build.unavailable_reason("nope")
  with pytest.raises(ValueError):
    ops.lstm_layer(*_inputs(1, 1, 1, 1)[0], impl="nope")


def test_build_is_cached(tmp_path, monkeypatch):
  """A second build of the same source finds the library, compiles nothing."""
  monkeypatch.setenv("MELODYJAX_KERNEL_CACHE", str(tmp_path))
  first = build.build("kernel")
  mtime = first.stat().st_mtime_ns
  assert build.build("kernel") == first
  assert first.stat().st_mtime_ns == mtime
  assert (first.parent / "command.txt").exists()
  assert not list(tmp_path.rglob("*.tmp"))


# --- cuDNN packing, checked on CPU through lstm_ref. ------------------------


@pytest.mark.parametrize("shape", [(5, 3, 7, 9), (8, 4, 16, 32)])
def test_cudnn_packing(shape):
  args, cot = _inputs(*shape, seed=5)
  ref_packed = lambda *a: ops.lstm_layer_cudnn(*a, ref=True)
  _check(ref_packed, args, cot)


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="needs a GPU")
def test_cudnn_on_gpu():
  args, cot = _inputs(8, 4, 16, 32, seed=6)
  cudnn = lambda *a: ops.lstm_layer_cudnn(
    *a, precision=jax.lax.Precision.HIGHEST
  )
  _check(cudnn, args, cot, tol=1e-4)


def test_auto_picks_the_kernel_and_falls_back_with_a_reason(monkeypatch):
  lstm.resolve_impl.cache_clear()
  impl, line = lstm.resolve_impl("auto", "float32")
  assert impl == ("kernel" if not build.unavailable_reason("kernel") else impl)
  impl, line = lstm.resolve_impl("auto", "bfloat16")
  assert impl == "fused" and "takes float32, not bfloat16" in line
  monkeypatch.setattr(
    build, "unavailable_reason", lambda impl, cxx=None: f"no {impl} here"
  )
  lstm.resolve_impl.cache_clear()
  try:
    impl, line = lstm.resolve_impl("kernel")
    assert impl == "fused" and line.endswith("(no kernel here)"), line
    assert lstm.resolve_impl("auto")[1].endswith(
      "(no kernel here; no onednn here)"
    )
  finally:
    lstm.resolve_impl.cache_clear()


# --- 'auto' on a CPU: calibrated per machine and shape. ---------------------


def test_calibration_picks_the_faster_and_caches_it(tmp_path, monkeypatch):
  from melodyjax.model.kernels import calibrate

  _need("kernel")
  _need("onednn")
  monkeypatch.setattr(
    calibrate, "_cache_file", lambda: (tmp_path / "calibration.json", "m")
  )
  calls = []

  def fake(shape, others=0.0):
    calls.append(shape)
    return {"kernel": 30.0, "onednn": 20.0, "others": others}

  monkeypatch.setattr(calibrate, "_measure_in_process", fake)
  shape = (64, 64, 160, (256, 128, 128))
  pick, note = calibrate.choose(shape)
  assert pick == "onednn" and "kernel 30.0 ms, onednn 20.0 ms" in note, note
  assert calibrate.choose(shape)[0] == "onednn" and len(calls) == 1
  assert list(tmp_path.rglob("calibration.json"))
  # Too small to measure; switched off; measured under load: not cached.
  assert calibrate.choose((4, 2, 8, (8,))) == (
    "kernel",
    "not measured: a small stack",
  )
  monkeypatch.setenv("MELODYJAX_LSTM_CALIBRATE", "0")
  assert calibrate.choose(shape)[0] == "kernel"
  monkeypatch.delenv("MELODYJAX_LSTM_CALIBRATE")
  monkeypatch.setattr(
    calibrate, "_measure_in_process", lambda s: fake(s, others=0.6)
  )
  other = (32, 64, 160, (256, 128, 128))
  assert "under load: not cached" in calibrate.choose(other)[1]
  calibrate.choose(other)
  assert len(calls) == 3


def test_calibration_measures_in_a_process_of_its_own(tmp_path, monkeypatch):
  from melodyjax.model.kernels import calibrate

  _need("kernel")
  _need("onednn")
  got = calibrate._measure_in_process([3, 2, 8, [8, 4]])
  assert set(got) >= {"kernel", "onednn"} and got["kernel"] > 0
