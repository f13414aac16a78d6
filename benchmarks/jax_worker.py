"""One melodyjax contender of a benchmark, alone in its process.

  python -m benchmarks.jax_worker '{"task": "train", "objective": "all", ...}'

Run by the drivers (bench_train, bench_lstm, bench_memory, device_check)
through `harness.run_worker`, one process per contender per round. The
process sets itself up as the mains do (`cli/runtime.py`'s allocator, then
JAX on its default backend) and prints one `@@RESULT` JSON line. Tasks:

  peak    a 2048^3 float32 matmul (jax, numpy): GFLOP/s
  train   the train step (`train.make_steps`, 'jit', one device) on random
          ids; with "breakdown" also forward, forward + backward and the
          LSTM stack alone (forward + backward) in the same process
  stack   the LSTM stack alone, forward + backward (and forward)
  sample  `sampler.sample`, notes/s for each batch size
  parity  each LSTM path's values and gradients against 'scan' here
  memory  XLA's memory plan and the measured peak of a step (bench_memory)
"""

from __future__ import annotations

import json
import os
import statistics
import sys

if __name__ == "__main__":
  from melodyjax.cli import runtime

  runtime.reexec_with_fast_malloc()  # before JAX allocates anything

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import harness  # noqa: E402
from melodyjax.model import arch, lstm  # noqa: E402
from melodyjax.model import model as model_lib  # noqa: E402
from melodyjax.sampling import draw, sampler  # noqa: E402
from melodyjax.training import parallel  # noqa: E402
from melodyjax.training import state as state_lib  # noqa: E402
from melodyjax.training import steps as steps_lib  # noqa: E402


def make_config(task: dict) -> model_lib.ModelConfig:
  """The reference LSTM, or with "model": "transformer" the melody
  Transformer (`harness.TRANSFORMER_MODEL`)."""
  transformer = task.get("model") == "transformer"
  return model_lib.ModelConfig(
    harness.PITCH_VOCAB,
    harness.DURATION_VOCAB,
    dtype=task.get("dtype", "float32"),
    lstm_impl=task.get("lstm_impl", "auto"),
    arch="transformer" if transformer else "lstm",
    **(harness.TRANSFORMER_MODEL if transformer else {}),
  )


class JaxTrainer:
  """melodyjax's jitted train step on one device, state carried."""

  def __init__(self, config: model_lib.ModelConfig, ids: dict, objective):
    self.model = arch.create_model(config)
    self.objective = objective
    mesh = parallel.create_mesh(jax.devices()[:1])
    tx = state_lib.create_optimizer(harness.TRAIN_CONFIG)
    runner = parallel.create("jit", mesh)
    self.train_step, _ = steps_lib.make_steps(self.model, tx, objective, runner)
    init_key, self.dropout_key = jax.random.split(jax.random.key(0))
    self.state = runner.put_state(
      state_lib.create_train_state(
        init_key, self.model, tx, ids["pitch"].shape[1]
      )
    )
    self.batch = runner.put_batch(ids)
    self.local_batch = {k: jnp.asarray(v) for k, v in ids.items()}

  def step(self, i=0):
    del i
    self.state, sums = self.train_step(self.state, self.batch, self.dropout_key)
    jax.block_until_ready((self.state, sums))

  def phase_fns(self) -> dict:
    """Forward (loss) and forward + backward (gradients) alone, compiled."""
    model, objective, batch = self.model, self.objective, self.local_batch
    config = model.config
    mask = model_lib.spatial_dropout_mask(
      self.dropout_key, batch["rows"], config.input_dim, config.spatial_dropout
    )

    dropout = None
    if config.arch == "transformer":
      dropout = (self.dropout_key, batch["rows"])

    def loss_fn(params):
      sums, _ = steps_lib.forward_sums(
        model, params, batch, objective, mask, dropout=dropout
      )
      return (sums["nll_pitch"] + sums["nll_duration"]) / sums["count"]

    forward = jax.jit(loss_fn)
    gradients = jax.jit(jax.grad(loss_fn))
    params = jax.tree.map(jnp.copy, self.state.params)  # the step donates
    return {
      "forward": lambda i: jax.block_until_ready(forward(params)),
      "forward_backward": lambda i: jax.block_until_ready(gradients(params)),
    }


def stack_fns(config, batch: int, seq_len: int, seed: int = 0) -> dict:
  """The model's LSTM stack alone on random input [batch, seq_len, D]:
  forward + backward (gradients of x and every parameter for a fixed
  cotangent of the top outputs) and forward alone, compiled."""
  sizes, d = config.lstm_sizes, config.input_dim
  module = lstm.LSTMStack(sizes, d, config.compute_dtype, config.lstm_impl)
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.standard_normal((batch, seq_len, d), np.float32))
  cot = jnp.asarray(
    rng.standard_normal((batch, seq_len, sizes[-1]), np.float32)
  )
  variables = module.init(jax.random.key(seed), x[:, :1])

  def loss(x, variables):
    return jnp.sum(module.apply(variables, x)[0] * cot)

  train = jax.jit(jax.grad(loss, argnums=(0, 1)))
  forward = jax.jit(lambda x, v: module.apply(v, x)[0])
  return {
    "stack": lambda i: jax.block_until_ready(train(x, variables)),
    "stack_forward": lambda i: jax.block_until_ready(forward(x, variables)),
  }


def task_train(task: dict) -> dict:
  config = make_config(task)
  ids = harness.random_ids(task["batch"], task["seq_len"], task["objective"])
  trainer = JaxTrainer(config, ids, task["objective"])
  fns = {"step": trainer.step}
  if task.get("breakdown"):
    fns.update(trainer.phase_fns())
    if config.arch == "lstm":
      stack = stack_fns(config, task["batch"], task["seq_len"])
      fns["stack"] = stack["stack"]
  return harness.run_blocks(
    fns, task["steps"], task.get("blocks", 1), task["warmup"]
  )


def task_stack(task: dict) -> dict:
  config = make_config(task)
  fns = stack_fns(config, task["batch"], task["seq_len"])
  if not task.get("forward"):
    del fns["stack_forward"]
  return harness.run_blocks(
    fns, task["steps"], task.get("blocks", 1), task["warmup"]
  )


def task_peak(task: dict) -> dict:
  n = task.get("n", 2048)
  flops = 2.0 * n**3
  rng = np.random.default_rng(0)
  a = rng.standard_normal((n, n), np.float32)
  b = rng.standard_normal((n, n), np.float32)
  ja, jb = jnp.asarray(a), jnp.asarray(b)
  dot = jax.jit(jnp.dot)
  fns = {
    "jax": lambda i: dot(ja, jb).block_until_ready(),
    "numpy": lambda i: np.dot(a, b),
  }
  out = {}
  for name, fn in fns.items():
    fn(0)
    times = harness.timed(fn, task.get("repeats", 7))
    out[name] = flops / statistics.median(times) / 1e9
  return {"gflops": out}


def task_sample(task: dict) -> dict:
  model = arch.create_model(make_config(task))
  dummy = jnp.zeros((1, 4), jnp.int32)
  params = model.init(jax.random.key(0), dummy, dummy)
  settings = draw.make_settings(1.0)
  out = {}
  for batch in task["batches"]:
    primer = (jnp.zeros((batch, 1), jnp.int32),) * 2 + (
      jnp.zeros(batch, jnp.int32),
    )

    def run(i, primer=primer):
      jax.block_until_ready(
        sampler.sample(
          model,
          params,
          *primer,
          jax.random.key(i),
          settings,
          num_notes=task["num_notes"],
        )
      )

    run(0)  # compile
    block = harness.timed_block(run, task["repeats"])
    rate = batch * task["num_notes"] / statistics.median(block["times"])
    out[str(batch)] = {"notes_per_s": rate, "others": block["others"]}
    print(f"sample {batch}: {rate:,.0f} notes/s", flush=True)
  return out


def task_parity(task: dict) -> dict:
  """Each LSTM path against 'scan' on this device: the largest relative
  error of the outputs and of every gradient, in float32 and bfloat16."""
  sizes, d, batch, seq_len = (32, 16), 24, 4, 8
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((batch, seq_len, d), np.float32))
  cot = jnp.asarray(
    rng.standard_normal((batch, seq_len, sizes[-1]), np.float32)
  )
  out = {}
  for dtype in task.get("dtypes", ("float32", "bfloat16")):
    grads = {}
    for impl in ["scan", *task["impls"]]:
      module = lstm.LSTMStack(sizes, d, jnp.dtype(dtype), impl)
      variables = module.init(jax.random.key(0), x[:, :1])

      def loss(x, v, module=module):
        return jnp.sum(module.apply(v, x)[0] * cot)

      try:
        got = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(x, variables)
        grads[impl] = [np.asarray(g, np.float32) for g in jax.tree.leaves(got)]
      except Exception as e:  # noqa: BLE001 -- reported, not raised
        out[f"{impl}_{dtype}"] = {"error": f"{type(e).__name__}: {e}"[:300]}
    for impl in task["impls"]:
      if impl in grads and "scan" in grads:
        errors = [
          float(np.abs(g - r).max() / max(np.abs(r).max(), 1e-6))
          for g, r in zip(grads[impl], grads["scan"], strict=True)
        ]
        finite = all(np.isfinite(g).all() for g in grads[impl])
        out[f"{impl}_{dtype}"] = {
          "max_rel_error": max(errors),
          "finite": finite,
        }
  return {"parity": out}


def describe() -> dict:
  from melodyjax.cli import runtime

  return {
    "framework": f"jax {jax.__version__}",
    "backend": jax.default_backend(),
    "device": str(jax.devices()[0].device_kind),
    "device_count": jax.device_count(),
    "allocator": runtime.active_allocator(),
  }


TASKS = {
  "train": task_train,
  "stack": task_stack,
  "peak": task_peak,
  "sample": task_sample,
  "parity": task_parity,
}


def main(argv) -> None:
  task = json.loads(argv[1])
  if task.get("threads") is not None:  # our kernel's threads, read at trace
    os.environ["MELODYJAX_LSTM_THREADS"] = str(task["threads"])
  if task["task"] == "memory":
    from benchmarks import bench_memory

    harness.emit(bench_memory.measure_jax(task, JaxTrainer, make_config))
    return
  result = describe()
  dtype = task.get("dtype", "float32")
  result["lstm"] = lstm.resolve_impl(task.get("lstm_impl", "auto"), dtype)[1]
  print(f"{result['framework']} {result['backend']}, {result['lstm']}")
  result.update(TASKS[task["task"]](task))
  harness.emit(result)


if __name__ == "__main__":
  main(sys.argv)
