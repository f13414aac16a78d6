"""The compiled LSTM layers as differentiable JAX functions.

Each is a `jax.custom_vjp` around the XLA FFI custom calls of `build`:

  lstm_layer(x, Wi, Wh, b, h0, c0, impl="kernel"|"onednn")
      one layer over a whole sequence, gradients for every argument. For
      "kernel" the custom calls do the recurrence with the input projection
      folded into each step (forward: x_t @ Wi, bias; backward: dz_t @
      Wi^T) and the weight and bias gradients summed inside; "onednn" is
      oneDNN's primitive for the whole layer.
  lstm_recurrence(projected, Wh, h0, c0)
      the "kernel" recurrence on given projections.
  lstm_layer_cudnn(...)
      the same layer through `jax.experimental.rnn.lstm` (cuDNN on a GPU),
      with our weights packed into its flat vector.

Environment, read when a call is traced: MELODYJAX_LSTM_THREADS (0: auto),
MELODYJAX_LSTM_ISA (auto, avx2 or avx512: the kernel's register tiles,
'auto' the widest this CPU has), MELODYJAX_LSTM_FOLD=0 (the previous
"kernel" layer, XLA's input projection around the recurrence, kept to
measure against).

The layout is ours (the checkpoint's) everywhere: x [T, B, D] time-major,
Wi [D, 4H], Wh [H, 4H], one bias [4H], gates in the order input, forget,
cell, output (oneDNN's order too; cuDNN's as well); float32.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from melodyjax.model.kernels import build


def _threads() -> np.int64:
  return np.int64(int(os.environ.get("MELODYJAX_LSTM_THREADS", "0")))


def _varying(*arrays) -> frozenset:
  """Mesh axes over which any of `arrays` varies (inside shard_map)."""
  axes = frozenset()
  for a in arrays:
    kind = getattr(jax.typeof(a), "manual_axis_type", None)
    axes |= getattr(kind, "varying", frozenset())
  return axes


def _call(target, results, *args, **attrs):
  """jax.ffi.ffi_call; results (shape, dtype) vary where the inputs do.

  Under shard_map, outputs of a custom call are otherwise typed as equal
  on every device, which the custom_vjp type checks reject.
  """
  structs = tuple(jax.ShapeDtypeStruct(s, dtype) for s, dtype in results)
  # vmap (not needed by the model) would run the call once per element.
  outs = jax.ffi.ffi_call(target, structs, vmap_method="sequential")(
    *args, **attrs
  )
  axes = tuple(sorted(_varying(*args)))
  if axes:
    outs = [jax.lax.pcast(o, axes, to="varying") for o in outs]
  return outs


def _match_varying(*arrays):
  """`arrays`, each made to vary over the mesh axes that any of them does.

  Called before entering a custom_vjp: a replicated kernel then enters as
  varying, its cotangent leaves as varying, and JAX's transpose of this
  cast sums it over the devices (as for any replicated parameter).
  """
  axes = _varying(*arrays)
  if not axes:
    return arrays
  out = []
  for a in arrays:
    missing = tuple(sorted(axes - _varying(a)))
    out.append(jax.lax.pcast(a, missing, to="varying") if missing else a)
  return tuple(out)


def _f32(*shape):
  return (shape, jnp.float32)


def _check_f32(*arrays):
  for a in arrays:
    if a.dtype != jnp.float32:
      raise TypeError(f"LSTM kernels take float32, got {a.dtype}")


# ---------------------------------------------------------------------------
# "kernel": the recurrence over projected = x @ Wi + b.


def lstm_recurrence(projected, recurrent_kernel, h0, c0):
  """Our kernel's recurrence; `lstm_recurrence` of model.py, float32.

  Args:
    projected: [T, B, 4H] input projections, bias included.
    recurrent_kernel: [H, 4H].
    h0, c0: [B, H].

  Returns:
    (hs [T, B, H], (h_T, c_T)).
  """
  return _fused_recurrence(*_match_varying(projected, recurrent_kernel, h0, c0))


@jax.custom_vjp
def _fused_recurrence(projected, recurrent_kernel, h0, c0):
  build.require("kernel")
  _check_f32(projected, recurrent_kernel, h0, c0)
  t, b, g = projected.shape
  hs, cs = _call(
    "MjxFusedLstmFwdInfer",
    (_f32(t, b, g // 4), _f32(t, b, g // 4)),
    projected,
    recurrent_kernel,
    h0,
    c0,
    threads=_threads(),
  )
  return hs, (hs[-1], cs[-1])


def _fused_fwd(projected, recurrent_kernel, h0, c0):
  build.require("kernel")
  _check_f32(projected, recurrent_kernel, h0, c0)
  t, b, g = projected.shape
  hs, cs, gates = _call(
    "MjxFusedLstmFwd",
    (_f32(t, b, g // 4), _f32(t, b, g // 4), _f32(t, b, g)),
    projected,
    recurrent_kernel,
    h0,
    c0,
    threads=_threads(),
  )
  residuals = (recurrent_kernel, h0, c0, hs, cs, gates)
  return (hs, (hs[-1], cs[-1])), residuals


def _fused_bwd(residuals, cotangents, weights=True):
  recurrent_kernel, h0, c0, hs, cs, gates = residuals
  d_hs, (d_h_last, d_c_last) = cotangents
  t, b, h = hs.shape
  d_z, d_h0, d_c0 = _call(
    "MjxFusedLstmBwd",
    (_f32(t, b, 4 * h), _f32(b, h), _f32(b, h)),
    recurrent_kernel,
    c0,
    cs,
    gates,
    d_hs.astype(jnp.float32),
    d_h_last.astype(jnp.float32),
    d_c_last.astype(jnp.float32),
    threads=_threads(),
  )
  if not weights:
    return d_z, None, d_h0, d_c0
  # The recurrent kernel's gradient: one large matmul over all steps.
  h_prev = jnp.concatenate([h0[None], hs[:-1]], axis=0).reshape(t * b, h)
  d_kernel = h_prev.T @ d_z.reshape(t * b, 4 * h)
  return d_z, d_kernel, d_h0, d_c0


_fused_recurrence.defvjp(_fused_fwd, _fused_bwd)


# ---------------------------------------------------------------------------
# "onednn": the whole layer in oneDNN.


def _onednn_workspace(lib, t, b, d, h) -> int:
  n = lib.mjx_onednn_workspace_bytes(t, b, d, h)
  if n < 0:
    raise RuntimeError(f"oneDNN refused an LSTM of T={t} B={b} D={d} H={h}")
  return max(int(n), 1)


def _onednn_forward(x, input_kernel, recurrent_kernel, bias, h0, c0):
  lib = build.require("onednn")
  _check_f32(x, input_kernel, recurrent_kernel, bias, h0, c0)
  t, b, d = x.shape
  h = h0.shape[-1]
  ws = _onednn_workspace(lib, t, b, d, h)
  return _call(
    "MjxOnednnLstmFwd",
    (_f32(t, b, h), _f32(b, h), _f32(b, h), ((ws,), jnp.uint8)),
    x,
    input_kernel,
    recurrent_kernel,
    bias,
    h0,
    c0,
  )


@jax.custom_vjp
def _onednn_layer(x, input_kernel, recurrent_kernel, bias, h0, c0):
  hs, h_last, c_last, _ = _onednn_forward(
    x, input_kernel, recurrent_kernel, bias, h0, c0
  )
  return hs, (h_last, c_last)


def _onednn_fwd(x, input_kernel, recurrent_kernel, bias, h0, c0):
  hs, h_last, c_last, ws = _onednn_forward(
    x, input_kernel, recurrent_kernel, bias, h0, c0
  )
  residuals = (x, input_kernel, recurrent_kernel, bias, h0, c0, hs, h_last)
  return (hs, (h_last, c_last)), residuals + (c_last, ws)


def _onednn_bwd(residuals, cotangents):
  x, input_kernel, recurrent_kernel, bias, h0, c0 = residuals[:6]
  d_hs, (d_h_last, d_c_last) = cotangents
  primals = (x, input_kernel, recurrent_kernel, bias, h0, c0)
  grads = _call(
    "MjxOnednnLstmBwd",
    tuple(_f32(*a.shape) for a in primals),
    *residuals,
    d_hs.astype(jnp.float32),
    d_h_last.astype(jnp.float32),
    d_c_last.astype(jnp.float32),
  )
  return tuple(grads)


_onednn_layer.defvjp(_onednn_fwd, _onednn_bwd)


# ---------------------------------------------------------------------------
# "kernel", the whole layer with the input projection folded in: the
# forward step's GEMM is [x_t, h_{t-1}] @ [Wi; Wh] (bias in its epilogue),
# the backward step's dz_{t+1} @ [Wh^T | Wi^T] gives dh and dx together, so
# no [T, B, 4H] projection is written and read. The weight and bias
# gradients are summed inside too, each thread over its own columns at each
# step ([x_t, h_{t-1}]^T dz_t), so dz never leaves the kernel (two steps of
# it live there).


def _kernel_attrs():
  return {"threads": _threads(), "isa": np.int64(build.requested_isa())}


def _layer_forward(x, input_kernel, recurrent_kernel, bias, h0, c0, gates):
  build.require("kernel")
  _check_f32(x, input_kernel, recurrent_kernel, bias, h0, c0)
  t, b, _ = x.shape
  h = h0.shape[-1]
  results = (_f32(t, b, h), _f32(t, b, h))
  if gates:
    results += (_f32(t, b, 4 * h),)
  target = "MjxLstmLayerFwd" if gates else "MjxLstmLayerFwdInfer"
  return _call(
    target,
    results,
    x,
    input_kernel,
    recurrent_kernel,
    bias,
    h0,
    c0,
    **_kernel_attrs(),
  )


@jax.custom_vjp
def _fused_layer(x, input_kernel, recurrent_kernel, bias, h0, c0):
  hs, cs = _layer_forward(
    x, input_kernel, recurrent_kernel, bias, h0, c0, gates=False
  )
  return hs, (hs[-1], cs[-1])


def _fused_layer_fwd(x, input_kernel, recurrent_kernel, bias, h0, c0):
  hs, cs, gates = _layer_forward(
    x, input_kernel, recurrent_kernel, bias, h0, c0, gates=True
  )
  residuals = (x, input_kernel, recurrent_kernel, h0, c0, hs, cs, gates)
  return (hs, (hs[-1], cs[-1])), residuals


def _fused_layer_bwd(residuals, cotangents):
  x, input_kernel, recurrent_kernel, h0, c0, hs, cs, gates = residuals
  d_hs, (d_h_last, d_c_last) = cotangents
  t, b, d = x.shape
  h = h0.shape[-1]
  return tuple(
    _call(
      "MjxLstmLayerBwd",
      (
        _f32(t, b, d),
        _f32(d, 4 * h),
        _f32(h, 4 * h),
        _f32(4 * h),
        _f32(b, h),
        _f32(b, h),
      ),
      x,
      input_kernel,
      recurrent_kernel,
      h0,
      c0,
      hs,
      cs,
      gates,
      d_hs.astype(jnp.float32),
      d_h_last.astype(jnp.float32),
      d_c_last.astype(jnp.float32),
      **_kernel_attrs(),
    )
  )


_fused_layer.defvjp(_fused_layer_fwd, _fused_layer_bwd)


# ---------------------------------------------------------------------------
# "kernel" with XLA's input projection (MELODYJAX_LSTM_FOLD=0, the
# previous layer; kept to measure the folded one against): our own backward
# for the projection's matmuls.
#
# Autodiff of x @ Wi + b made XLA transpose dz [T, B, 4H] twice and copy it
# once (16 MB each for the reference model's first layer) and run x^T dz through
# Eigen; written as plain 2-D matmuls of row-major operands the copies go
# (3-layer fwd+bwd about 13% faster, median under load).


@jax.custom_vjp
def _projected_layer(x, input_kernel, recurrent_kernel, bias, h0, c0):
  projected = x @ input_kernel + bias
  return _fused_recurrence(projected, recurrent_kernel, h0, c0)


def _projected_layer_fwd(x, input_kernel, recurrent_kernel, bias, h0, c0):
  projected = x @ input_kernel + bias
  out, (_, h0, c0, hs, cs, gates) = _fused_fwd(
    projected, recurrent_kernel, h0, c0
  )
  return out, (x, input_kernel, recurrent_kernel, h0, c0, hs, cs, gates)


def _projected_layer_bwd(residuals, cotangents):
  x, input_kernel, recurrent_kernel, h0, c0, hs, cs, gates = residuals
  d_z, _, d_h0, d_c0 = _fused_bwd(
    (recurrent_kernel, h0, c0, hs, cs, gates), cotangents, weights=False
  )
  t, b, d = x.shape
  g = d_z.shape[-1]
  d_z2 = d_z.reshape(t * b, g)
  h_prev = jnp.concatenate([h0[None], hs[:-1]], axis=0).reshape(t * b, -1)
  d_input_kernel = x.reshape(t * b, d).T @ d_z2
  d_recurrent_kernel = h_prev.T @ d_z2
  d_x = (d_z2 @ input_kernel.T).reshape(t, b, d)
  return d_x, d_input_kernel, d_recurrent_kernel, d_z2.sum(0), d_h0, d_c0


_projected_layer.defvjp(_projected_layer_fwd, _projected_layer_bwd)


# ---------------------------------------------------------------------------
# The layer.


def lstm_layer(
  x, input_kernel, recurrent_kernel, bias, h0, c0, impl: str = "kernel"
):
  """One LSTM layer over a sequence, differentiable in every argument.

  Args:
    x: [T, B, D] float32, time-major.
    input_kernel: [D, 4H]; recurrent_kernel: [H, 4H]; bias: [4H].
    h0, c0: [B, H].
    impl: "kernel" or "onednn" (see `build`).

  Returns:
    (hs [T, B, H], (h_T, c_T)).
  """
  args = _match_varying(x, input_kernel, recurrent_kernel, bias, h0, c0)
  if impl == "kernel":
    if os.environ.get("MELODYJAX_LSTM_FOLD", "1") == "0":
      return _projected_layer(*args)
    return _fused_layer(*args)
  if impl == "onednn":
    return _onednn_layer(*args)
  raise ValueError(f"impl must be one of {build.IMPLS}, got {impl!r}")


# ---------------------------------------------------------------------------
# GPU: cuDNN through jax.experimental.rnn, with our weights packed.


def pack_cudnn_weights(input_kernel, recurrent_kernel, bias):
  """Our (Wi [D, 4H], Wh [H, 4H], b [4H]) as jax.experimental.rnn's vector.

  Its layout (cuDNN's, one layer, one direction): W_ih [4H, D], W_hh
  [4H, H], then b_ih [4H], b_hh [4H], gates i, f, g, o like ours. cuDNN
  adds two biases; ours goes into b_ih and b_hh is zero, so the gradient
  of our bias is b_ih's (which equals b_hh's: both enter z the same way).
  Differentiable, so gradients come back in our layout by autodiff.
  """
  return jnp.concatenate(
    [
      input_kernel.T.reshape(-1),
      recurrent_kernel.T.reshape(-1),
      bias,
      jnp.zeros_like(bias),
    ]
  )


def lstm_layer_cudnn(
  x, input_kernel, recurrent_kernel, bias, h0, c0, precision=None, ref=False
):
  """`lstm_layer` through cuDNN (GPU). Same arguments and results.

  `ref=True` runs jax.experimental.rnn.lstm_ref on the unpacked weights
  instead (any backend), which is how the CPU tests check the packing.
  On ROCm, MIOpen's gate order differs: jax.experimental.rnn has
  `swap_lstm_gates` for that (untested here).
  """
  from jax.experimental import rnn

  t, b, d = x.shape
  h = h0.shape[-1]
  weights = pack_cudnn_weights(input_kernel, recurrent_kernel, bias)
  xb = jnp.swapaxes(x, 0, 1)  # batch-major
  lengths = jnp.full((b,), t, jnp.int32)
  if ref:
    w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(weights, d, h, 1, False)
    y, h_n, c_n = rnn.lstm_ref(
      xb,
      h0[None],
      c0[None],
      w_ih,
      w_hh,
      b_ih,
      b_hh,
      lengths,
      d,
      h,
      1,
      0.0,
      False,
    )
  else:
    y, h_n, c_n = rnn.lstm(
      xb,
      h0[None],
      c0[None],
      weights,
      lengths,
      input_size=d,
      hidden_size=h,
      num_layers=1,
      dropout=0.0,
      bidirectional=False,
      precision=precision,
    )
  return jnp.swapaxes(y, 0, 1), (h_n[0], c_n[0])
