"""Metrics of a run: JSON lines and TensorBoard on process 0, and the reader.

`metrics.jsonl` holds one JSON object per logged step and kind (`{"step":
500, "train/loss": ...}`); a kill can cut its last line, which `read_metrics`
skips. TensorBoard event files go to `tensorboard/` (tensorboardX, which
needs no TensorFlow).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np

from melodyjax import errors, files
from melodyjax.training import workdir as workdir_lib

# The checkpoint metric that "best" means: the lowest validation loss.
BEST_KEY = "eval/loss"


class MetricWriter:
  """JSON lines and TensorBoard events on process 0; nothing elsewhere."""

  def __init__(self, workdir: str, active: bool):
    self.active = active
    if not active:
      return
    from tensorboardX import SummaryWriter

    self._path = workdir_lib.path(workdir, workdir_lib.METRICS_FILE)
    self._jsonl = open(self._path, "a", encoding="utf-8")
    if not _ends_a_line(self._path):
      # A kill or a full disk cut the last line: the next record starts on
      # a line of its own (the cut one is skipped by `read_metrics`).
      self._jsonl.write("\n")
    self._tb = SummaryWriter(
      workdir_lib.path(workdir, workdir_lib.TENSORBOARD_DIR)
    )

  def write(self, step: int, metrics: Mapping[str, float]) -> None:
    """One JSON line and a TensorBoard scalar per metric."""
    if not self.active:
      return
    # Strict JSON: an undefined value (a NaN validation loss) is null.
    record = files.finite_or_null({"step": step, **metrics})
    try:
      self._jsonl.write(files.to_json(record) + "\n")
      self._jsonl.flush()
    except OSError as e:  # name the file (a full disk, for one)
      raise type(e)(e.errno, e.strerror, self._path) from e
    for name, value in metrics.items():
      self._tb.add_scalar(name, value, step)
    self._tb.flush()

  def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    """TensorBoard images, each float [height, width, 3] in [0, 1]."""
    if not self.active:
      return
    for name, image in images.items():
      self._tb.add_image(name, image, step, dataformats="HWC")
    self._tb.flush()

  def write_audio(
    self, step: int, audio: Mapping[str, tuple[np.ndarray, int]]
  ) -> None:
    """TensorBoard audio: {name: (mono samples in [-1, 1], rate in Hz)}."""
    if not self.active:
      return
    for name, (samples, rate) in audio.items():
      self._tb.add_audio(name, samples[:, None], step, sample_rate=rate)
    self._tb.flush()

  def write_hparams(self, config: ml_collections.ConfigDict) -> None:
    if self.active:
      self._tb.add_text(
        "config", "```\n" + config.to_json(indent=2) + "\n```", 0
      )

  def close(self) -> None:
    if self.active:
      self._jsonl.close()
      self._tb.close()


def _ends_a_line(path: str) -> bool:
  """Whether a file is empty or ends with a newline."""
  with open(path, "rb") as f:
    f.seek(0, 2)
    if f.tell() == 0:
      return True
    f.seek(-1, 2)
    return f.read(1) == b"\n"


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """metrics.jsonl's records ([] before the first), skipping a cut line."""
  return files.read_jsonl(workdir_lib.path(workdir, workdir_lib.METRICS_FILE))


def best_step(workdir: str, steps: Sequence[int]) -> int:
  """The step among `steps` with the lowest logged validation loss.

  Raises:
    GenerateError: no validation loss is logged for any of them.
  """
  losses = {
    record["step"]: record[BEST_KEY]
    for record in read_metrics(workdir)
    if isinstance(record.get(BEST_KEY), int | float)
    and record.get("step") in steps
  }
  if not losses:
    raise errors.GenerateError(
      f"no validation loss logged for any checkpoint in "
      f"{workdir}; use --step latest or a step number"
    )
  return min(losses, key=lambda s: (losses[s], -s))
