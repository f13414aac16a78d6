"""One PyTorch contender of a benchmark, alone in its process.

  python -m benchmarks.torch_worker '{"task": "train", "objective": "all", ...}'

The PyTorch reference (`benchmarks/torch_reference.py`) as a PyTorch user
runs it: the process's own defaults (its thread count, OpenMP settings
and allocator untouched; the driver passes the user's environment), eager
mode, Adam (fused where that is faster, `adam` in the task) with gradient
clipping; with "model": "transformer" the same for
`benchmarks/torch_transformer.py`. Prints one `@@RESULT` JSON line. Tasks
as in `jax_worker`:

  peak    a 2048^3 float32 matmul (MKL's sgemm, oneDNN's linear): GFLOP/s
  train   the train step; with "breakdown" also forward, forward + backward
          and the model's three nn.LSTM layers alone, in the same process
  stack   three nn.LSTM layers alone, forward + backward (and forward)
  sample  the reference's loop carrying (h, c), its fastest of four forms
          (the Transformer's: its key/value cache, 1 thread or the default)
  memory  the measured peak of a step (bench_memory)

"device": "cuda" runs on the GPU ("dtype": "bfloat16" under autocast).
"""

from __future__ import annotations

import contextlib
import json
import statistics
import sys

import numpy as np
import torch

from benchmarks import harness, torch_reference, torch_transformer


def _sync(device: str) -> None:
  if device == "cuda":
    torch.cuda.synchronize()


def _autocast(task: dict):
  if task.get("dtype", "float32") == "float32":
    return contextlib.nullcontext()
  return torch.autocast(task.get("device", "cpu"), dtype=torch.bfloat16)


def make_model(task: dict, seed: int = 0) -> torch_reference.TorchMelodyModel:
  """The reference LSTM, or with "model": "transformer" the Transformer
  (`torch_transformer`, sized as `harness.TRANSFORMER_MODEL`)."""
  torch.manual_seed(seed)
  vocabs = harness.PITCH_VOCAB, harness.DURATION_VOCAB
  if task.get("model") == "transformer":
    sizes = harness.TRANSFORMER_MODEL
    model = torch_transformer.TorchMelodyTransformer(
      *vocabs,
      width=sizes["transformer_width"],
      layers=sizes["transformer_layers"],
      heads=sizes["transformer_heads"],
      ff=sizes["transformer_ff"],
      dropout=sizes["transformer_dropout"],
    )
  else:
    model = torch_reference.TorchMelodyModel(*vocabs)
  return model.to(task.get("device", "cpu"))


class TorchTrainer:
  """The reference's eager train step on the given ids."""

  def __init__(self, task: dict, ids: dict):
    self.task, self.device = task, task.get("device", "cpu")
    self.model = make_model(task)
    self.objective = task["objective"]
    self.train_step = torch_reference.make_train_step(
      self.model,
      self.objective,
      harness.TRAIN_CONFIG["learning_rate"],
      harness.TRAIN_CONFIG["grad_clip_norm"],
      adam=task.get("adam", "fused"),
    )
    self.batch = {
      k: torch.from_numpy(v.astype(np.int64)).to(self.device)
      for k, v in ids.items()
    }

  def step(self, i=0):
    del i
    with _autocast(self.task):
      self.train_step(self.batch)
    _sync(self.device)

  def phase_fns(self) -> dict:
    """Forward (recording for autograd), forward + backward, and the three
    nn.LSTM layers alone (forward + backward) on the same batch."""
    model, batch, task = self.model, self.batch, self.task
    model.train()
    nll = torch.nn.functional.cross_entropy
    last_only = self.objective == "last"

    def forward():
      with _autocast(task):
        pitch_logits, duration_logits = model(
          batch["pitch"], batch["duration"], last_only=last_only
        )
        return (
          nll(pitch_logits.reshape(-1, pitch_logits.shape[-1]),
              batch["target_pitch"].reshape(-1))
          + nll(duration_logits.reshape(-1, duration_logits.shape[-1]),
                batch["target_duration"].reshape(-1))
        )  # fmt: skip

    def forward_backward():
      model.zero_grad(set_to_none=True)
      forward().backward()
      _sync(self.device)

    fns = {
      "forward": lambda i: (forward(), _sync(self.device)),
      "forward_backward": lambda i: forward_backward(),
    }
    if len(model.lstms):
      with torch.no_grad():
        x = model._features(batch["pitch"], batch["duration"]).detach()
      fns["stack"] = stack_fns(task, list(model.lstms), x)["stack"]
    return fns


def stack_fns(task: dict, layers, x) -> dict:
  """Forward + backward of `layers` (batch-first nn.LSTMs) on x, for a
  fixed cotangent of the top outputs; and forward alone."""
  device = task.get("device", "cpu")
  x = x.clone().requires_grad_(True)
  generator = torch.Generator().manual_seed(1)
  shape = (*x.shape[:2], layers[-1].hidden_size)
  cot = torch.randn(shape, generator=generator).to(device)

  def stack():
    y = x
    with _autocast(task):
      for m in layers:
        y, _ = m(y)
    return y

  def train(i):
    for m in layers:
      m.zero_grad(set_to_none=True)
    x.grad = None
    (stack().float() * cot).sum().backward()
    _sync(device)

  def forward(i):
    stack()
    _sync(device)

  return {"stack": train, "stack_forward": forward}


def task_train(task: dict) -> dict:
  ids = harness.random_ids(task["batch"], task["seq_len"], task["objective"])
  trainer = TorchTrainer(task, ids)
  fns = {"step": trainer.step}
  if task.get("breakdown"):
    fns.update(trainer.phase_fns())
  return harness.run_blocks(
    fns, task["steps"], task.get("blocks", 1), task["warmup"]
  )


def task_stack(task: dict) -> dict:
  model = make_model(task)
  rng = np.random.default_rng(0)
  d = harness.SEED_MODEL["input_dim"]
  x = torch.from_numpy(
    rng.standard_normal((task["batch"], task["seq_len"], d), np.float32)
  ).to(task.get("device", "cpu"))
  fns = stack_fns(task, list(model.lstms), x)
  if not task.get("forward"):
    del fns["stack_forward"]
  return harness.run_blocks(
    fns, task["steps"], task.get("blocks", 1), task["warmup"]
  )


def task_peak(task: dict) -> dict:
  n = task.get("n", 2048)
  flops = 2.0 * n**3
  a, b = torch.randn(n, n), torch.randn(n, n)
  da, db = a.to_mkldnn(), b.t().contiguous().to_mkldnn()
  linear = torch._C._nn.mkldnn_linear
  fns = {"torch": lambda i: torch.mm(a, b), "onednn": lambda i: linear(da, db)}
  out = {}
  for name, fn in fns.items():
    fn(0)
    times = harness.timed(fn, task.get("repeats", 7))
    out[name] = flops / statistics.median(times) / 1e9
  return {"gflops": out}


def task_sample(task: dict) -> dict:
  """Notes/s of the reference's loop at its fastest of LSTM cells or
  nn.LSTM on one step, with 1 thread or the default count."""
  model = make_model(task)
  generator = torch.Generator().manual_seed(0)
  default_threads = torch.get_num_threads()
  out = {}
  for batch in task["batches"]:
    rates = {}
    for cell in (True, False) if len(model.lstms) else (True,):
      for threads in task.get("sample_threads") or sorted({1, default_threads}):
        torch.set_num_threads(threads)

        def run(i, batch=batch, cell=cell):
          torch_reference.sample(
            model, batch, task["num_notes"], generator, use_cell=cell
          )

        run(0)
        block = harness.timed_block(run, task["repeats"])
        form = "cell" if cell else "lstm"
        form = "kv_cache" if not len(model.lstms) else form
        name = f"{form}_{threads}t"
        rates[name] = (
          batch * task["num_notes"] / statistics.median(block["times"])
        )
    torch.set_num_threads(default_threads)
    best = max(rates, key=rates.get)
    out[str(batch)] = {"notes_per_s": rates[best], "form": best, "all": rates}
    print(f"sample {batch}: {rates}", flush=True)
  return out


TASKS = {
  "train": task_train,
  "stack": task_stack,
  "peak": task_peak,
  "sample": task_sample,
}


def main(argv) -> None:
  task = json.loads(argv[1])
  if task["task"] == "memory":
    from benchmarks import bench_memory

    harness.emit(bench_memory.measure_torch(task, TorchTrainer))
    return
  device = task.get("device", "cpu")
  result = {
    "framework": f"torch {torch.__version__}",
    "backend": device,
    "threads": torch.get_num_threads(),
    "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
  }
  print(f"{result['framework']} on {device}, {result['threads']} threads")
  result.update(TASKS[task["task"]](task))
  harness.emit(result)


if __name__ == "__main__":
  main(sys.argv)
