"""What the server generates from: a training workdir or a model file."""

from __future__ import annotations

from melodyjax import errors
from melodyjax.sampling import generate


def load(
  *, workdir: str | None = None, model: str | None = None, step="latest"
) -> generate.Run:
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
  if model:
    return generate.load_model_file(model)
  return generate.load_run(workdir, step)
