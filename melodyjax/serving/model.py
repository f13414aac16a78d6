"""What the server generates from: one loader, so another source (the
`.mjx` model file of the export issue) is one more branch here."""

from __future__ import annotations

from melodyjax import errors
from melodyjax.sampling import generate


def load(
  *, workdir: str | None = None, model: str | None = None, step="latest"
) -> generate.Run:
  """The run to serve: a training workdir (or, later, a model file).

  Args:
    workdir: a folder written by `train_main.py`.
    model: a `.mjx` model file (not supported yet).
    step: 'latest', 'best' or a step number (with `workdir`).

  Raises:
    UsageError: neither or both given, or a model file (not supported
      yet); GenerateError, CheckpointError: the workdir cannot be used.
  """
  if model is not None:
    raise errors.UsageError(
      f"--model {model}: .mjx model files are not supported yet (they come "
      "with the export command); serve a training run with --workdir"
    )
  if not workdir:
    raise errors.UsageError("give --workdir (a training run) to serve")
  return generate.load_run(workdir, step)
