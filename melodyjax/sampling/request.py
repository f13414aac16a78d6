"""A sampling request's settings: fields, defaults, limits and checks. No JAX.

`Request` holds every setting of one generation call (`sample_main.py`'s
flags, a server request, the `sample` group of a training config) and is
what a sidecar records; `check_values` applies the rules and the limits of
one request, whoever makes it, naming each field as its caller spells it;
`defaults()` is the `sample` group of a training config (`configs/default.py`
builds from it) and `from_group`/`check_group` read and check it. Rules that
need the run (a style it was not trained with) are `sampling.plan`'s.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections

from melodyjax import checks, errors
from melodyjax.music import tonality

MODES = (tonality.MAJOR, tonality.MINOR)
# The limits of one generation request (sample_main.py, the server, the
# training config's `sample` group), checked before anything runs. The
# sampler's buffers are [num_outputs, 1 + max_primer_notes + num_notes] and
# its time grows with them (one scan step per event), so a request past
# these is refused up front rather than run for minutes or out of memory.
MAX_NUM_NOTES = 8192
MAX_NUM_OUTPUTS = 1024
MAX_PRIMER_NOTES = 1024
MAX_EVENTS_PER_CALL = 1 << 20  # num_outputs x (1 + max_primer + num_notes)
MAX_SEED = 2**63 - 1  # JAX's keys take a signed 64-bit seed
MAX_TEMPO_BPM = 1000.0  # quarter notes per minute, MIDI and WAV
LIMITS = {
  "num_notes": (MAX_NUM_NOTES, "events per melody"),
  "num_outputs": (MAX_NUM_OUTPUTS, "melodies per request"),
  "max_primer_notes": (MAX_PRIMER_NOTES, "primer events"),
}
SAMPLERS = ("scan", "window")
# The short-term model's orders (`model.memory.ppm`): the longest context
# is order - 1 events. Each order is its own compilation of the sampler.
MAX_SHORT_TERM_ORDER = 12
DEFAULT_SHORT_TERM_ORDER = 4
DEFAULT_SHORT_TERM_ORDERS = (DEFAULT_SHORT_TERM_ORDER, DEFAULT_SHORT_TERM_ORDER)
PAIRS = ("temperature", "top_k", "top_p", "short_term", "short_term_order")


def _pair(value) -> tuple:
  """A value for both streams, or a (pitch, duration) pair, as a pair."""
  if isinstance(value, tuple | list):
    return tuple(value) if len(value) == 2 else (value[0], value[0])
  return (value, value)


@dataclasses.dataclass(frozen=True)
class Request:
  """Every setting of one generation call (the sidecar records them).

  Attributes:
    num_outputs: melodies to generate.
    num_notes: events generated after the primer at most.
    temperature, top_k, top_p: (pitch, duration) pairs (a number is used
      for both streams).
    seed: the same seed and settings give the same notes.
    sampler: 'scan' (carry the LSTM state) or 'window' (the reference
      generator's way: re-read the last events for each note).
    max_primer_notes: primer capacity (one compilation serves every primer
      up to this length).
    primer: the primer as text ('C4:1 D4:0.5'), as given.
    primer_midi: the primer MIDI file, as given, or None.
    time_signature, mode, style: the wanted metre ('3/4'), mode ('major',
      'minor') and style label; '' for the run's most common one (a
      conditioned run) or none.
    key: the tonic the output is transposed to ('D'; '': the normalised
      key, C major or A minor).
    bars: stop at the end of this bar (0: no limit).
    end_on_tonic: the last note is the key's tonic.
    beam_size, branch_factor, steps_per_iteration: beam search (Magenta's
      meaning; 1, 1: none).
    best_of: sample this many per melody, keep the likeliest.
    short_term: (pitch, duration) weights of the short-term model of the
      melody so far (primer included) in each head's distribution where
      it is confident (`draw.short_term_bands`), in [0, 1)
      (`model.memory.mix_short_term`; 0, 0: none, nothing computed).
    short_term_order: (pitch, duration) orders of that model.
  """

  num_outputs: int = 4
  num_notes: int = 128
  temperature: tuple[float, float] = (1.0, 1.0)
  top_k: tuple[int, int] = (0, 0)
  top_p: tuple[float, float] = (1.0, 1.0)
  seed: int = 0
  sampler: str = "scan"
  max_primer_notes: int = 64
  primer: str = ""
  primer_midi: str | None = None
  time_signature: str = ""
  mode: str = ""
  style: str = ""
  key: str = ""
  bars: int = 0
  end_on_tonic: bool = False
  beam_size: int = 1
  branch_factor: int = 1
  steps_per_iteration: int = 1
  best_of: int = 1
  short_term: tuple[float, float] = (0.0, 0.0)
  short_term_order: tuple[int, int] = DEFAULT_SHORT_TERM_ORDERS

  def __post_init__(self):
    for name in PAIRS:
      object.__setattr__(self, name, _pair(getattr(self, name)))

  def check(self) -> None:
    """Raises GenerateError for a setting out of range."""
    if self.sampler not in SAMPLERS:
      raise errors.GenerateError(
        f"--sampler must be 'scan' or 'window', got {self.sampler!r}"
      )
    try:
      check_values(dataclasses.asdict(self))
    except errors.ConfigError as e:
      raise errors.GenerateError(str(e)) from None

  @property
  def short_term_orders(self) -> tuple[int, int] | None:
    """The short-term model's orders, None when its weights are 0 (the
    sampler's static `short_term_order`)."""
    return self.short_term_order if any(self.short_term) else None

  @property
  def search_shape(self) -> tuple[int, int]:
    """The sampler's static (beam_size, branch_factor): best-of-N is a
    beam of 1 with N branches."""
    if self.best_of > 1:
      return (1, self.best_of)
    return (self.beam_size, self.branch_factor)

  def to_json(self) -> dict[str, Any]:
    return {
      **dataclasses.asdict(self),
      **{k: list(getattr(self, k)) for k in PAIRS},
    }


# The controls: fields of `Request` and of the `sample` config group.
CONTROLS = (
  "time_signature",
  "mode",
  "style",
  "key",
  "bars",
  "end_on_tonic",
  "beam_size",
  "branch_factor",
  "steps_per_iteration",
  "best_of",
)
# The other fields the `sample` group shares with `Request`.
_GROUP_FIELDS = ("num_outputs", "num_notes", "temperature", "top_p", "seed")


def check_values(
  values: Mapping[str, Any],
  name: Callable[[str], str] = lambda field: f"--{field}",
  shown: Mapping[str, str] | None = None,
) -> None:
  """Sampling settings: counts >= 1, temperatures > 0, top-k, top-p, and
  the limits of one request (`LIMITS`, `MAX_EVENTS_PER_CALL`, `MAX_SEED`).

  Args:
    values: any of num_outputs, num_notes, max_primer_notes, seed (ints),
      temperature, top_k, top_p, short_term, short_term_order (a number or
      a (pitch, duration) pair), sampler.
    name: a field's name in messages (a flag by default).
    shown: a field's value as the user wrote it, for messages.

  Raises:
    ConfigError: the first bad setting.
  """
  shown = shown or {}

  def pair(field):
    value = values[field]
    return list(value) if isinstance(value, tuple | list) else [value]

  def got(field):
    return shown.get(field, ",".join(str(v) for v in pair(field)))

  if "temperature" in values and not all(
    checks.is_number(t) and 0 < t < math.inf for t in pair("temperature")
  ):
    raise errors.ConfigError(
      f"{name('temperature')} must be > 0, got {got('temperature')} "
      "(lower values are more conservative; try 0.8)"
    )
  if "top_p" in values and not all(
    checks.is_number(p) and 0 < p <= 1 for p in pair("top_p")
  ):
    raise errors.ConfigError(
      f"{name('top_p')} must be in (0, 1], got {got('top_p')} "
      "(1 keeps every token)"
    )
  _check_short_term(lambda f: pair(f) if f in values else None, name, got)
  if values.get("sampler") == "window" and any(values.get("short_term", ())):
    raise errors.ConfigError(
      f"{name('short_term')} needs {name('sampler')}=scan (the window "
      "sampler has no memory of the song)"
    )
  if "top_k" in values and not all(
    checks.is_int(k) and k >= 0 for k in pair("top_k")
  ):
    raise errors.ConfigError(
      f"{name('top_k')} must be >= 0 (0 keeps every token), got {got('top_k')}"
    )
  _check_counts(values, name)
  if "seed" in values and (
    not checks.is_int(values["seed"])
    or not -MAX_SEED - 1 <= values["seed"] <= MAX_SEED
  ):
    raise errors.ConfigError(
      f"{name('seed')} must be an integer from {-MAX_SEED - 1} to "
      f"{MAX_SEED}, got {values['seed']!r}"
    )
  _check_controls(values, name)
  _check_events(values, name)


def _check_counts(values: Mapping[str, Any], name) -> None:
  """The counts, where given: integers >= 1, those of `LIMITS` at most
  their limit."""
  for field, (limit, unit) in LIMITS.items():
    if field not in values:
      continue
    if not checks.is_int(values[field]) or values[field] < 1:
      raise errors.ConfigError(
        f"{name(field)} must be >= 1, got {values[field]!r}"
      )
    if values[field] > limit:
      raise errors.ConfigError(
        f"{name(field)} must be at most {limit:,} ({unit}), got "
        f"{values[field]:,}"
      )
  for field in ("beam_size", "branch_factor", "best_of"):
    if field in values and (
      not checks.is_int(values[field]) or values[field] < 1
    ):
      raise errors.ConfigError(
        f"{name(field)} must be >= 1, got {values[field]!r}"
      )


def _check_short_term(pair, name, got) -> None:
  """The short-term model's weights and orders, where given (`pair(field)`
  their values, None if absent)."""
  weights, orders = pair("short_term"), pair("short_term_order")
  if weights is not None and not all(
    checks.is_number(w) and 0 <= w < 1 for w in weights
  ):
    raise errors.ConfigError(
      f"{name('short_term')} must be in [0, 1), got {got('short_term')} "
      "(the short-term model's weight; 0: none; try 0.2)"
    )
  if orders is not None and not all(
    checks.is_int(o) and 1 <= o <= MAX_SHORT_TERM_ORDER for o in orders
  ):
    raise errors.ConfigError(
      f"{name('short_term_order')} must be an integer from 1 to "
      f"{MAX_SHORT_TERM_ORDER}, got {got('short_term_order')}"
    )


def _check_controls(values: Mapping[str, Any], name) -> None:
  """The controls of a request whose rules need no run (`sampling.plan`
  checks them against the run)."""
  for field in ("bars", "steps_per_iteration"):
    if field in values and (
      not checks.is_int(values[field]) or values[field] < 0
    ):
      raise errors.ConfigError(
        f"{name(field)} must be an integer >= 0, got {values[field]!r}"
      )
  for field in ("time_signature", "mode", "style", "key"):
    if field in values and not isinstance(values[field], str):
      raise errors.ConfigError(
        f"{name(field)} must be a text ('' for the run's default), got "
        f"{values[field]!r}"
      )
  if values.get("mode") and values["mode"] not in MODES:
    raise errors.ConfigError(
      f"{name('mode')} must be major or minor, got {values['mode']!r}"
    )
  if "end_on_tonic" in values and not isinstance(values["end_on_tonic"], bool):
    raise errors.ConfigError(f"{name('end_on_tonic')} must be True or False")
  if values.get("best_of", 1) > 1 and (
    values.get("beam_size", 1) > 1 or values.get("branch_factor", 1) > 1
  ):
    raise errors.ConfigError(
      f"give {name('best_of')} or {name('beam_size')}/"
      f"{name('branch_factor')}, not both"
    )


def events_per_call(
  num_outputs: int, num_notes: int, primer: int, rows: int = 1
) -> int:
  """The sampler buffer's size: melodies x rows searched per melody (beam
  x branch, or best-of) x (bos + primer + notes)."""
  return num_outputs * rows * (1 + primer + num_notes)


def _check_events(values: Mapping[str, Any], name) -> None:
  if not {"num_outputs", "num_notes"} <= set(values):
    return
  primer = values.get("max_primer_notes", 0)
  rows = max(
    values.get("best_of", 1),
    values.get("beam_size", 1) * values.get("branch_factor", 1),
  )
  events = events_per_call(
    values["num_outputs"], values["num_notes"], primer, rows
  )
  if events > MAX_EVENTS_PER_CALL:
    sizes = f"{name('num_outputs')}"
    if rows > 1:
      sizes += (
        f" x {name('best_of')}"
        if values.get("best_of", 1) > 1
        else f" x {name('beam_size')} x {name('branch_factor')}"
      )
    sizes += f" x (1 + {name('num_notes')}"
    sizes += f" + {name('max_primer_notes')})" if primer else ")"
    raise errors.ConfigError(
      f"{sizes} = {events:,} events, more than the {MAX_EVENTS_PER_CALL:,} "
      "that one request may sample (the time and memory grow with it): "
      "ask for fewer melodies, notes or rows"
    )


def check_tempo(tempo: Any, name: str) -> None:
  """A tempo in quarter notes per minute: > 0 and at most MAX_TEMPO_BPM.

  Raises:
    ConfigError: names `name`.
  """
  if not checks.is_number(tempo) or not tempo > 0:
    raise errors.ConfigError(
      f"{name} must be > 0 (quarters per minute), got {tempo}"
    )
  if tempo > MAX_TEMPO_BPM:
    raise errors.ConfigError(
      f"{name} must be at most {MAX_TEMPO_BPM:g} quarters per minute, "
      f"got {tempo}"
    )


def defaults() -> ml_collections.ConfigDict:
  """The `sample` group of a training config: melodies sampled while
  training, into workdir/samples/<step>/ (README, "Ask for a melody")."""
  sample = ml_collections.ConfigDict()
  sample.num_outputs = 4  # melodies per sampled step
  sample.num_notes = 64  # events after bos at most (eos may end a melody)
  sample.temperature = 1.0  # softmax temperature of both heads
  sample.top_p = 1.0  # nucleus mass of both heads (1: all tokens)
  sample.seed = 0  # the same seed at every step: the same draws, compared
  sample.tempo_bpm = 100.0  # quarter notes per minute (MIDI and WAV)
  # Controls: '' and 0 are the run's default / off; see `Request`.
  request = Request()
  for name in CONTROLS:
    sample[name] = getattr(request, name)
  return sample


def from_group(sample: Mapping[str, Any]) -> Request:
  """The request of a training config's `sample` group (a group written
  before a control existed lacks it: its default)."""
  return Request(
    **{
      name: sample[name]
      for name in (*_GROUP_FIELDS, *CONTROLS)
      if name in sample
    }
  )


def check_group(
  sample: Mapping[str, Any], prefix: str = "config.sample."
) -> None:
  """The `sample` group of a training config.

  Raises:
    ConfigError: the first bad field, as `prefix + name`.
  """
  check_values(
    {
      name: sample[name]
      for name in (*_GROUP_FIELDS, *CONTROLS)
      if name in sample
    },
    name=lambda field: prefix + field,
  )
  check_tempo(sample["tempo_bpm"], prefix + "tempo_bpm")


def check_sound(
  tempo: Any,
  program: Any,
  velocity: Any,
  name: Callable[[str], str] = lambda field: f"--{field}",
) -> None:
  """The rendering's settings: a tempo (`check_tempo`), a General MIDI
  program 0-127 and a note velocity 1-127.

  Raises:
    ConfigError: the first bad one, named by `name`.
  """
  check_tempo(tempo, name("tempo"))
  for field, value, low in (("velocity", velocity, 1), ("program", program, 0)):
    if not (checks.is_int(value) and low <= value <= 127):
      raise errors.ConfigError(f"{name(field)} must be {low}-127, got {value}")
