"""The model of each architecture (`model.arch`), behind the same calls."""

from __future__ import annotations

from melodyjax.model import model, transformer
from melodyjax.model.config import ModelConfig


def create_model(config: ModelConfig) -> model.MelodyModel:
  """`model.MelodyModel` (the LSTM, the reference architecture) or
  `transformer.MelodyTransformer` (a subclass with the same calls:
  `__call__`, `step`, `initial_carry`)."""
  if config.arch == "transformer":
    return transformer.MelodyTransformer(config)
  return model.MelodyModel(config)
