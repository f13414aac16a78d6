"""Metrics: JSON lines and TensorBoard on process 0, and their reader."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import ml_collections

from melodyjax.listening import hook


class _MetricWriter:
  """JSON lines and TensorBoard events on process 0; nothing elsewhere."""

  def __init__(self, workdir: str, active: bool):
    self.active = active
    if not active:
      return
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top

    self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
    self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, metrics: Mapping[str, float]) -> None:
    if not self.active:
      return
    self._jsonl.write(json.dumps({"step": step, **metrics}) + "\n")
    self._jsonl.flush()
    for name, value in metrics.items():
      self._tb.add_scalar(name, value, step)
    self._tb.flush()

  def write_media(self, step: int, media: Mapping[str, Any]) -> None:
    if self.active:
      hook.write_media(self._tb, step, media)

  def write_hparams(self, config: ml_collections.ConfigDict) -> None:
    if self.active:
      self._tb.add_text(
        "config", "```\n" + config.to_json(indent=2) + "\n```", 0
      )

  def close(self) -> None:
    if self.active:
      self._jsonl.close()
      self._tb.close()
