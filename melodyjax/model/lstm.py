"""The LSTM stack behind one interface, and its implementations.

`LSTMStack.__call__` maps a whole sequence to outputs and the final carry (a
`lax.scan` over time, no Python loop over notes), `LSTMStack.step` maps one
step to one step. Both run the same cell, so training and sampling cannot
drift apart, and a faster implementation can replace the scan behind the
same two calls.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from melodyjax.model.config import LSTM_IMPLS
from melodyjax.model.kernels import build, calibrate, ops

# Per layer (h, c), each [batch, hidden], float32.
Carry = tuple[tuple[jax.Array, jax.Array], ...]


# From this batch size on, a step of the upper LSTM layers (the sampler's
# path) multiplies [x, h] by the stacked kernels at once: faster for 64
# melodies, slower for one (BENCHMARKS.md).
STACKED_MATMUL_MIN_BATCH = 16


def _matmul(x: jax.Array, w: jax.Array, dtype) -> jax.Array:
  return jnp.dot(
    x.astype(dtype), w.astype(dtype), preferred_element_type=jnp.float32
  )


def _gates(z: jax.Array) -> tuple[jax.Array, ...]:
  """Activated gates (input, forget, cell, output) from pre-activations.

  The sigmoid runs once over all four gates and the result is sliced: on
  XLA:CPU that is about 4x faster per step than splitting first and
  activating each quarter separately.
  """
  hidden = z.shape[-1] // 4
  s = jax.nn.sigmoid(z)
  i = s[..., :hidden]
  f = s[..., hidden : 2 * hidden]
  o = s[..., 3 * hidden :]
  g = jnp.tanh(z[..., 2 * hidden : 3 * hidden])
  return i, f, g, o


def lstm_cell(
  recurrent_kernel: jax.Array,
  carry: tuple[jax.Array, jax.Array],
  projected_input: jax.Array,
  dtype=jnp.float32,
) -> tuple[jax.Array, jax.Array]:
  """One LSTM step; gates in the order input, forget, cell, output.

  Args:
    recurrent_kernel: [hidden, 4 * hidden].
    carry: (h, c), each [batch, hidden].
    projected_input: x @ input_kernel + bias, [batch, 4 * hidden].
    dtype: compute dtype of the matrix product.

  Returns:
    The new (h, c).
  """
  h, c, _ = _cell_with_gates(recurrent_kernel, carry, projected_input, dtype)
  return h, c


def _cell_with_gates(recurrent_kernel, carry, projected_input, dtype):
  """`lstm_cell` that also returns the activated gates, each [batch, hidden].

  Kept as four arrays: slicing one [batch, 4 * hidden] residual inside the
  backward loop made that loop about 45% slower on XLA:CPU.
  """
  h, c = carry
  return _cell_from_preactivations(
    projected_input + _matmul(h, recurrent_kernel, dtype), c
  )


def _cell_from_preactivations(z, c):
  """(h, c, gates) from the pre-activations z = x Wi + h Wh + b."""
  i, f, g, o = _gates(z)
  c = f * c + i * g
  h = o * jnp.tanh(c)
  return h, c, (i, f, g, o)


def _recurrence_forward(
  projected, recurrent_kernel, h0, c0, dtype, keep_gates=True
):
  def body(carry, projected_t):
    h, c, gates = _cell_with_gates(recurrent_kernel, carry, projected_t, dtype)
    return (h, c), (h, c, gates if keep_gates else None)

  _, (hs, cs, gates) = jax.lax.scan(body, (h0, c0), projected)
  return hs, cs, gates


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def lstm_recurrence(projected, recurrent_kernel, h0, c0, dtype=jnp.float32):
  """A layer's recurrence over time, with a hand-written backward pass.

  The same cell as `lstm_cell`. The backward pass keeps only the activated
  gates and cell states, runs the recurrence in reverse with one small
  matmul per step, and computes the recurrent kernel's gradient after the
  loop as one large matmul (instead of accumulating it at every step).

  Args:
    projected: [time, batch, 4 * hidden] input projections (bias included).
    recurrent_kernel: [hidden, 4 * hidden].
    h0, c0: [batch, hidden] initial state.
    dtype: compute dtype of the matrix products (static).

  Returns:
    (hs [time, batch, hidden], (h, c) final state).
  """
  hs, cs, _ = _recurrence_forward(
    projected, recurrent_kernel, h0, c0, dtype, keep_gates=False
  )
  return hs, (hs[-1], cs[-1])


def _recurrence_fwd(projected, recurrent_kernel, h0, c0, dtype):
  hs, cs, gates = _recurrence_forward(
    projected, recurrent_kernel, h0, c0, dtype
  )
  residuals = (recurrent_kernel, h0, c0, hs, cs, gates)
  return (hs, (hs[-1], cs[-1])), residuals


def _recurrence_bwd(dtype, residuals, cotangents):
  recurrent_kernel, h0, c0, hs, cs, gates = residuals
  d_hs, (d_h_last, d_c_last) = cotangents
  c_prev = jnp.concatenate([c0[None], cs[:-1]], axis=0)
  kernel_t = recurrent_kernel.T

  def body(carry, xs):
    d_h_next, d_c_next = carry
    d_h_t, (i, f, g, o), c_t, c_prev_t = xs
    d_h = d_h_t + d_h_next
    tanh_c = jnp.tanh(c_t)
    d_c = d_c_next + d_h * o * (1.0 - tanh_c * tanh_c)
    d_z = jnp.concatenate(
      [
        d_c * g * i * (1.0 - i),
        d_c * c_prev_t * f * (1.0 - f),
        d_c * i * (1.0 - g * g),
        d_h * tanh_c * o * (1.0 - o),
      ],
      axis=-1,
    )
    return (_matmul(d_z, kernel_t, dtype), d_c * f), d_z

  d_hs = d_hs.at[-1].add(d_h_last)
  (d_h0, d_c0), d_z = jax.lax.scan(
    body,
    (jnp.zeros_like(h0), d_c_last),
    (d_hs, gates, cs, c_prev),
    reverse=True,
  )
  h_prev = jnp.concatenate([h0[None], hs[:-1]], axis=0)
  d_kernel = jnp.einsum(
    "tbh,tbg->hg",
    h_prev.astype(dtype),
    d_z.astype(dtype),
    preferred_element_type=jnp.float32,
  )
  return d_z, d_kernel.astype(recurrent_kernel.dtype), d_h0, d_c0


lstm_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)


def _forget_bias_init(key, shape, dtype=jnp.float32):
  del key
  hidden = shape[0] // 4
  # Forget gate starts open (Keras' unit_forget_bias).
  return jnp.zeros(shape, dtype).at[hidden : 2 * hidden].set(1.0)


IMPLS = LSTM_IMPLS  # the settings owner: model.config
_DESCRIPTIONS = {
  "scan": "XLA, one scan over every layer, autodiff backward",
  "fused": "XLA, one scan per layer, hand-written backward",
  "kernel": "compiled fused LSTM kernel (C++, XLA FFI)",
  "onednn": "oneDNN's LSTM primitive (XLA FFI)",
  "cudnn": "cuDNN through jax.experimental.rnn",
}


@functools.cache
def resolve_impl(
  impl: str, dtype: str = "float32", shape: tuple | None = None
) -> tuple[str, str]:
  """The LSTM implementation that runs for `impl`, and a line saying why.

  'auto' is the fastest available here: on a CPU the faster of the
  compiled kernel and oneDNN's primitive, measured once per machine and
  shape (`kernels/calibrate.py`; the kernel when `shape` is not given, or
  too small to measure), else 'fused'; cuDNN on a GPU; 'fused' elsewhere
  (TPU). The compiled CPU kernels take float32 only; an unavailable one
  (no compiler, no AVX2, no oneDNN) falls back to 'fused'.

  Args:
    impl: one of `IMPLS`.
    dtype: the compute dtype's name.
    shape: (time, batch, input width, hidden sizes) of the stack, if known.

  Returns:
    (implementation, description such as 'kernel: compiled fused LSTM
    kernel (C++, XLA FFI; AVX-512 tiles)' or 'fused: ... (kernel
    unavailable: ...)').
  """
  backend = jax.default_backend()
  if impl == "auto":
    wanted = {"cpu": ("kernel", "onednn"), "gpu": ("cudnn",)}
    candidates = wanted.get(backend, ())
  else:
    candidates = (impl,)
  problems, available = [], []
  for candidate in candidates:
    problem = None
    if candidate in ("kernel", "onednn"):
      if backend != "cpu":
        problem = f"{candidate} runs on CPUs only"
      elif dtype != "float32":
        problem = f"{candidate} takes float32, not {dtype}"
      else:
        problem = build.unavailable_reason(candidate)
    elif candidate == "cudnn" and backend != "gpu":
      problem = "cudnn needs a GPU"
    if problem is None:
      available.append(candidate)
    else:
      problems.append(problem)
  if available:
    pick, note = available[0], ""
    if impl == "auto" and len(available) == 2 and shape is not None:
      pick, note = calibrate.choose(shape)
      note = f"; auto: {note}"
    return pick, f"{pick}: {_describe(pick)}{note}"
  if impl in ("scan", "fused"):
    return impl, f"{impl}: {_DESCRIPTIONS[impl]}"
  why = f" ({'; '.join(problems)})" if problems else ""
  return "fused", f"fused: {_DESCRIPTIONS['fused']}{why}"


def _describe(impl: str) -> str:
  if impl != "kernel":
    return _DESCRIPTIONS[impl]
  return f"{_DESCRIPTIONS[impl][:-1]}; {build.kernel_isa()} tiles)"


@functools.cache
def _announce_once(line: str) -> None:
  logging.warning("lstm: %s", line)


class LSTMStack(nn.Module):
  """Stacked LSTMs: a whole sequence at once, or one step at a time.

  Attributes:
    sizes: hidden units per layer, bottom first.
    input_dim: width of the input features.
    dtype: compute dtype of the matrix products.
    impl: one of `IMPLS` (see `resolve_impl`). Every implementation has
      the same parameters and the same values and gradients (to float32
      rounding): a checkpoint trains, resumes or samples with any of them.
  """

  sizes: Sequence[int]
  input_dim: int
  dtype: Any = jnp.float32
  impl: str = "scan"

  def setup(self):
    layers = []
    d = self.input_dim
    for i, h in enumerate(self.sizes):
      layers.append(
        {
          "input_kernel": self.param(
            f"input_kernel_{i}", nn.initializers.glorot_uniform(), (d, 4 * h)
          ),
          "recurrent_kernel": self.param(
            f"recurrent_kernel_{i}", nn.initializers.orthogonal(), (h, 4 * h)
          ),
          "bias": self.param(f"bias_{i}", _forget_bias_init, (4 * h,)),
        }
      )
      d = h
    self.layers = layers

  def initial_carry(self, batch_size: int) -> Carry:
    """Zero state, float32."""
    return tuple(
      (
        jnp.zeros((batch_size, h), jnp.float32),
        jnp.zeros((batch_size, h), jnp.float32),
      )
      for h in self.sizes
    )

  def input_projection(self, x: jax.Array) -> jax.Array:
    """The bottom layer's x @ input_kernel + bias, [..., 4 * sizes[0]]."""
    first = self.layers[0]
    return _matmul(x, first["input_kernel"], self.dtype) + first["bias"]

  def _advance(
    self, x: jax.Array, carry: Carry, first_projected: jax.Array | None = None
  ):
    new_carry = []
    batch = carry[0][0].shape[0]
    for i, layer in enumerate(self.layers):
      if i > 0 and batch >= STACKED_MATMUL_MIN_BATCH:
        # One matmul [x, h] @ [input_kernel; recurrent_kernel] instead of
        # two (the kernels' concatenation is loop-invariant in a scan).
        kernel = jnp.concatenate(
          [layer["input_kernel"], layer["recurrent_kernel"]], axis=0
        )
        z = _matmul(jnp.concatenate([x, carry[i][0]], -1), kernel, self.dtype)
        x, c, _ = _cell_from_preactivations(z + layer["bias"], carry[i][1])
      else:
        if i == 0 and first_projected is not None:
          projected = first_projected
        elif i == 0:
          projected = self.input_projection(x)
        else:
          projected = (
            _matmul(x, layer["input_kernel"], self.dtype) + layer["bias"]
          )
        x, c = lstm_cell(
          layer["recurrent_kernel"], carry[i], projected, self.dtype
        )
      new_carry.append((x, c))
    return x, tuple(new_carry)

  def step(
    self,
    x: jax.Array | None,
    carry: Carry,
    projected: jax.Array | None = None,
  ) -> tuple[jax.Array, Carry]:
    """One time step through every layer.

    Args:
      x: [batch, input_dim], or None when `projected` is given.
      carry: from `initial_carry` or a previous call.
      projected: the bottom layer's `input_projection(x)`, if known.

    Returns:
      (top layer output [batch, sizes[-1]], new carry).
    """
    return self._advance(x, carry, projected)

  def __call__(
    self, x: jax.Array, carry: Carry | None = None
  ) -> tuple[jax.Array, Carry]:
    """The whole sequence, scanned over time.

    Args:
      x: [batch, time, input_dim].
      carry: initial state (default: zeros).

    Returns:
      (top layer outputs [batch, time, sizes[-1]], final carry).
    """
    if carry is None:
      carry = self.initial_carry(x.shape[0])
    shape = (x.shape[1], x.shape[0], x.shape[2], tuple(self.sizes))
    impl, line = resolve_impl(self.impl, jnp.dtype(self.dtype).name, shape)
    if self.impl == "auto" and "auto: measured" in line:
      _announce_once(line)
    if impl != "scan":
      return self._per_layer(x, carry, impl)
    # The bottom layer's input projection for all steps is one large matmul.
    projected = self.input_projection(x)

    def body(carry, projected_t):
      return self._advance(None, carry, projected_t)[::-1]

    carry, outputs = jax.lax.scan(body, carry, jnp.swapaxes(projected, 0, 1))
    return jnp.swapaxes(outputs, 0, 1), carry

  def _per_layer(
    self, x: jax.Array, carry: Carry, impl: str
  ) -> tuple[jax.Array, Carry]:
    """One call per layer over the whole sequence (time-major inside)."""
    x = jnp.swapaxes(x, 0, 1)
    final = []
    for layer, (h0, c0) in zip(self.layers, carry, strict=True):
      weights = (layer["input_kernel"], layer["recurrent_kernel"])
      if impl == "fused":
        projected = _matmul(x, weights[0], self.dtype) + layer["bias"]
        x, last = lstm_recurrence(projected, weights[1], h0, c0, self.dtype)
      elif impl == "cudnn":
        x, last = ops.lstm_layer_cudnn(x, *weights, layer["bias"], h0, c0)
      else:
        x, last = ops.lstm_layer(
          x.astype(jnp.float32), *weights, layer["bias"], h0, c0, impl=impl
        )
      final.append(last)
    return jnp.swapaxes(x, 0, 1), tuple(final)
