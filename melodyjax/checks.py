"""The small rules every layer's settings are checked with. No JAX.

Each layer owns its settings and their checks (`data.config`,
`model.config`, `training.config`, `sampling.request`); this module holds
only what they share: is a value an integer, a number in a range, one of a
layer's choices, a boolean, finite. Every failure is a `ConfigError` whose
message names the field as the caller spells it (`config.model.dtype`,
`--temperature`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from melodyjax import errors


def is_int(value: Any) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def positive_int(value: Any, name: str) -> None:
  if not is_int(value) or value <= 0:
    raise errors.ConfigError(
      f"{name} must be a positive integer, got {value!r}"
    )


def int_at_least(value: Any, name: str, low: int = 0) -> None:
  if not is_int(value) or value < low:
    raise errors.ConfigError(
      f"{name} must be an integer >= {low}, got {value!r}"
    )


def number(
  value: Any,
  name: str,
  low: float,
  high: float | None = None,
  low_open: bool = False,
) -> None:
  """`value` is a number >= low (> low if `low_open`) and <= high."""
  ok = is_number(value) and (value > low if low_open else value >= low)
  if ok and high is not None:
    ok = value <= high
  if not ok:
    bound = f"> {low}" if low_open else f">= {low}"
    if high is not None:
      bound += f" and <= {high}"
    raise errors.ConfigError(f"{name} must be a number {bound}, got {value!r}")


def choice(value: Any, name: str, choices: Sequence[str]) -> None:
  if value not in choices:
    raise errors.ConfigError(
      f"{name} must be one of {tuple(choices)}, got {value!r}"
    )


def boolean(value: Any, name: str) -> None:
  if not isinstance(value, bool):
    raise errors.ConfigError(f"{name} must be True or False, got {value!r}")


def text(value: Any, name: str, what: str) -> None:
  """`value` is a string; `what` says what it holds, for the message."""
  if not isinstance(value, str):
    raise errors.ConfigError(f"{name} must be {what}, got {value!r}")


def finite(value: Any, name: str) -> None:
  """No NaN or infinity anywhere in a (nested) value: config.json is strict
  JSON."""
  if isinstance(value, Mapping):
    for key, item in value.items():
      finite(item, f"{name}.{key}")
  elif isinstance(value, tuple | list):
    for item in value:
      finite(item, name)
  elif isinstance(value, float) and not math.isfinite(value):
    raise errors.ConfigError(f"{name} must be a finite number, got {value}")
