"""A JSON body to a checked generation request, or one line saying why not.

The fields are `sample_main.py`'s settings, named as its flags: `primer`
(text such as "C4:1 D4:0.5"), `temperature`, `top_k`, `top_p`,
`short_term`, `short_term_order` (a number or a [pitch, duration] pair),
`seed`, `num_notes`, `num_outputs` and
`tempo` (quarter notes per minute, for the MIDI file). They are checked
by `sampling.request.check_values` (the command line's rules and limits),
then against the server's own, lower limits (`Limits`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from melodyjax import checks, errors
from melodyjax.sampling import generate
from melodyjax.sampling import request as request_lib
from melodyjax.training import runs

DEFAULTS = {
  "primer": "",
  "temperature": 1.0,
  "top_k": 0,
  "top_p": 1.0,
  "short_term": 0.0,
  "short_term_order": request_lib.DEFAULT_SHORT_TERM_ORDER,
  "seed": 0,
  "num_notes": 128,
  "num_outputs": 1,
  "tempo": 100.0,
}
PAIRS = request_lib.PAIRS
INTS = ("top_k", "short_term_order", "seed", "num_notes", "num_outputs")


class RequestError(errors.MelodyjaxError):
  """A request the server refuses; `status` is the HTTP status to answer."""

  def __init__(self, message: str, status: int = 400):
    super().__init__(message)
    self.status = status


@dataclasses.dataclass(frozen=True)
class Limits:
  """The server's limits (each at most the command line's).

  Attributes:
    max_notes: events generated per melody at most.
    max_outputs: melodies per request at most.
    max_primer_notes: primer events at most (the compiled primer size).
    max_body_bytes: a request body's size at most.
  """

  max_notes: int = 1024
  max_outputs: int = 16
  max_primer_notes: int = 64
  max_body_bytes: int = 64 << 10

  def check(self) -> None:
    """Raises UsageError for a limit past the command line's."""
    for field, flag, bound in (
      ("max_notes", "--max_notes", request_lib.MAX_NUM_NOTES),
      ("max_outputs", "--max_outputs", request_lib.MAX_NUM_OUTPUTS),
      (
        "max_primer_notes",
        "--max_primer_notes",
        request_lib.MAX_PRIMER_NOTES,
      ),
      ("max_body_bytes", "--max_body_bytes", 16 << 20),
    ):
      value = getattr(self, field)
      if not checks.is_int(value) or not 1 <= value <= bound:
        raise errors.UsageError(f"{flag} must be 1 to {bound:,}, got {value}")


@dataclasses.dataclass(frozen=True)
class Checked:
  """A request ready to sample: settings, primer ids and tempo."""

  request: request_lib.Request
  primer_pitch: list[int]
  primer_duration: list[int]
  tempo: float


def parse_body(body: bytes) -> dict[str, Any]:
  """The fields of a JSON object body.

  Raises:
    RequestError: not UTF-8, not strict JSON (NaN is not JSON), not an
      object, or an unknown field.
  """

  def refuse(constant):
    raise ValueError(f"{constant} is not JSON")

  try:
    values = json.loads(body.decode("utf-8"), parse_constant=refuse)
  except UnicodeDecodeError:
    raise RequestError("the body is not UTF-8 text") from None
  except json.JSONDecodeError as e:
    raise RequestError(f"the body is not JSON: {e}") from None
  except ValueError as e:
    raise RequestError(f"the body is not JSON: {e}") from None
  if not isinstance(values, dict):
    raise RequestError(
      f'the body must be a JSON object such as {{"num_notes": 64}}, got '
      f"{type(values).__name__}"
    )
  unknown = sorted(set(values) - set(DEFAULTS))
  if unknown:
    raise RequestError(
      f"unknown field {unknown[0]!r} (fields: {', '.join(DEFAULTS)})"
    )
  return values


def _check_types(values: Mapping[str, Any]) -> None:
  for field, value in values.items():
    items = value if field in PAIRS and isinstance(value, list) else [value]
    if field in PAIRS and not 1 <= len(items) <= 2:
      raise RequestError(
        f"{field} must be a number or a [pitch, duration] pair, got {value!r}"
      )
    for item in items:
      if field == "primer":
        ok = isinstance(item, str)
      elif field in INTS:
        ok = checks.is_int(item)
      else:
        ok = checks.is_number(item)
      if not ok:
        kind = {"primer": "a text"}.get(
          field, "an integer" if field in INTS else "a number"
        )
        raise RequestError(f"{field} must be {kind}, got {value!r}")


def check(values: Mapping[str, Any], run: runs.Run, limits: Limits) -> Checked:
  """Checks a request's fields (defaults for those absent).

  Raises:
    RequestError: the first bad field, by name, with the limit it passes.
  """
  _check_types(values)
  values = {**DEFAULTS, **values}
  pairs = {
    k: tuple(v) if isinstance(v, list) else v
    for k, v in values.items()
    if k in PAIRS
  }
  try:
    request_lib.check_values(
      {**values, **pairs, "max_primer_notes": limits.max_primer_notes},
      name=lambda field: field,
    )
    request_lib.check_tempo(values["tempo"], "tempo")
  except errors.ConfigError as e:
    raise RequestError(str(e)) from None
  for field, limit, flag in (
    ("num_notes", limits.max_notes, "--max_notes"),
    ("num_outputs", limits.max_outputs, "--max_outputs"),
  ):
    if values[field] > limit:
      raise RequestError(
        f"{field} must be at most {limit:,} on this server (melodyjax-serve "
        f"{flag}), got {values[field]:,}"
      )
  primer = values["primer"]
  if len(primer) > 16 * limits.max_primer_notes:
    raise RequestError(
      f"primer is {len(primer):,} characters, more than this server's "
      f"{16 * limits.max_primer_notes:,} (16 per event)"
    )
  try:
    events = generate.parse_primer_text(primer)
    if len(events) > limits.max_primer_notes:
      raise RequestError(
        f"primer: {len(events)} events, more than this server's "
        f"{limits.max_primer_notes} (melodyjax-serve --max_primer_notes)"
      )
    pitch, duration = generate.encode_primer(events, run, "primer")
  except errors.GenerateError as e:
    raise RequestError(str(e)) from None
  request = request_lib.Request(
    num_outputs=values["num_outputs"],
    num_notes=values["num_notes"],
    seed=values["seed"],
    max_primer_notes=limits.max_primer_notes,
    primer=primer,
    **pairs,
  )
  return Checked(request, pitch, duration, float(values["tempo"]))
