"""A JSON body to a checked generation request, or one line saying why not.

The fields are `sample_main.py`'s settings, named as its flags: `primer`
(text such as "C4:1 D4:0.5") or `primer_abc` (an ABC tune), `temperature`,
`top_k`, `top_p`, `short_term`, `short_term_order` (a number or a [pitch,
duration] pair), `seed`, `num_notes`, `num_outputs`, the controls
(`time_signature`, `mode`, `style`, `key`, `bars`, `end_on_tonic`,
`beam_size`, `branch_factor`, `steps_per_iteration`, `best_of`) and the
rendering (`tempo` in quarter notes per minute, `program`, `velocity`).
They are checked by `sampling.request.check_values` (the command line's
rules and limits) and `sampling.plan.make_plan` (what the run was trained
with), then against the server's own, lower limits (`Limits`); a message
names each field as the body does.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any

from melodyjax import checks, errors
from melodyjax.music import abc_reader
from melodyjax.sampling import constraints, generate
from melodyjax.sampling import plan as plan_lib
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
  "time_signature": "",
  "mode": "",
  "style": "",
  "key": "",
  "bars": 0,
  "end_on_tonic": False,
  "beam_size": 1,
  "branch_factor": 1,
  "steps_per_iteration": 1,
  "best_of": 1,
  "primer_abc": "",
  "tempo": 100.0,
  "program": 0,
  "velocity": 80,
}
PAIRS = request_lib.PAIRS
INTS = (
  "top_k",
  "short_term_order",
  "seed",
  "num_notes",
  "num_outputs",
  "bars",
  "beam_size",
  "branch_factor",
  "steps_per_iteration",
  "best_of",
  "program",
  "velocity",
)
TEXTS = ("primer", "primer_abc", "time_signature", "mode", "style", "key")
BOOLS = ("end_on_tonic",)
# The rendering's fields: not the sampler's.
RENDERING = ("tempo", "program", "velocity", "primer_abc")


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
  """A request ready to sample.

  Attributes:
    request: the sampler's settings.
    primer_pitch, primer_duration: the primer's ids.
    tempo: quarter notes per minute (MIDI, ABC and WAV).
    plan: the controls resolved against the run (`sampling.plan`).
    controls: the sampler's controls for the request's rows padded to
      their bucket (`batcher.ROW_BUCKETS`).
    program, velocity: General MIDI program and note velocity.
    primer_abc: the primer as ABC, as given ('' if none).
  """

  request: request_lib.Request
  primer_pitch: list[int]
  primer_duration: list[int]
  tempo: float
  plan: plan_lib.Plan | None = None
  controls: constraints.Controls | None = None
  program: int = 0
  velocity: int = 80
  primer_abc: str = ""

  def settings(self) -> dict[str, Any]:
    """Every setting of the answer: the request's and the rendering's."""
    return {
      **self.request.to_json(),
      "primer_abc": self.primer_abc,
      "tempo": self.tempo,
      "program": self.program,
      "velocity": self.velocity,
    }


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
      if field in TEXTS:
        ok = isinstance(item, str)
      elif field in BOOLS:
        ok = isinstance(item, bool)
      elif field in INTS:
        ok = checks.is_int(item)
      else:
        ok = checks.is_number(item)
      if not ok:
        kind = (
          "a text"
          if field in TEXTS
          else "true or false"
          if field in BOOLS
          else "an integer"
          if field in INTS
          else "a number"
        )
        raise RequestError(f"{field} must be {kind}, got {value!r}")


def _fields(message: str) -> str:
  """A command-line message with each flag named as a body's field."""
  return re.sub(r"--(\w+)", r"\1", message)


def _check_values(values: Mapping[str, Any], pairs, limits: Limits) -> None:
  """The command line's rules and limits, then the server's."""
  sampled = {k: v for k, v in values.items() if k not in RENDERING}
  try:
    request_lib.check_values(
      {**sampled, **pairs, "max_primer_notes": limits.max_primer_notes},
      name=lambda field: field,
    )
    request_lib.check_sound(
      values["tempo"],
      values["program"],
      values["velocity"],
      name=lambda field: field,
    )
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


def _primer(values: Mapping[str, Any], run: runs.Run, limits: Limits):
  """(field, events) of the primer given as text or ABC."""
  if values["primer"] and values["primer_abc"]:
    raise RequestError("give primer or primer_abc, not both")
  field = "primer_abc" if values["primer_abc"] else "primer"
  text = values[field]
  if len(text) > 16 * limits.max_primer_notes:
    raise RequestError(
      f"{field} is {len(text):,} characters, more than this server's "
      f"{16 * limits.max_primer_notes:,} (16 per event)"
    )
  if field == "primer":
    return field, generate.parse_primer_text(text)
  try:
    song = abc_reader.read_tune(text).to_song()
  except abc_reader.AbcError as e:
    raise RequestError(f"primer_abc: {e}") from None
  return field, generate.normalise_key(song, run, field)


def check(values: Mapping[str, Any], run: runs.Run, limits: Limits) -> Checked:
  """Checks a request's fields (defaults for those absent) against the
  run and the server's limits.

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
  _check_values(values, pairs, limits)
  try:
    field, events = _primer(values, run, limits)
    if len(events) > limits.max_primer_notes:
      raise RequestError(
        f"{field}: {len(events)} events, more than this server's "
        f"{limits.max_primer_notes} (melodyjax-serve --max_primer_notes)"
      )
    pitch, duration = generate.encode_primer(events, run, field)
    request = request_lib.Request(
      num_outputs=values["num_outputs"],
      num_notes=values["num_notes"],
      seed=values["seed"],
      max_primer_notes=limits.max_primer_notes,
      primer=values["primer"],
      **pairs,
      **{name: values[name] for name in request_lib.CONTROLS},
    )
    resolved = plan_lib.make_plan(run, request)
    controls = plan_lib.make_controls(resolved, run, request)
  except errors.GenerateError as e:
    raise RequestError(_fields(str(e))) from None
  return Checked(
    request,
    pitch,
    duration,
    float(values["tempo"]),
    resolved,
    controls,
    values["program"],
    values["velocity"],
    values["primer_abc"],
  )
