"""What the server generates from: a training workdir or a model file."""

from __future__ import annotations

from melodyjax import errors
from melodyjax.training import runs


def load(
  *, workdir: str | None = None, model: str | None = None, step="latest"
) -> runs.Run:
  """The run to serve.

  Args:
    workdir: a folder written by `train_main.py`.
    model: a `.mjx` model file written by `melodyjax-export`.
    step: 'latest', 'best' or a step number (with `workdir`).

  Raises:
    UsageError: neither or both given; GenerateError, CheckpointError: the
      workdir or model file cannot be used.
  """
  if bool(workdir) == bool(model):
    raise errors.UsageError(
      "give --workdir (a training run) or --model (a .mjx file) to serve"
    )
  return (
    runs.from_model_file(model) if model else runs.from_workdir(workdir, step)
  )
