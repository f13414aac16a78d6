"""Every rule a config (or a sampling request) must follow, in one place.

`check_config` runs once per launch, before anything is written, and names
the first bad field by its dotted path. The data options are the rules of
`data.dataset.CorpusConfig` (shared with the corpus command), the model
fields those of `check_model` (shared with `model.ModelConfig`), and the
sampling fields those of `check_sampling` (shared with `sample_main.py`'s
flags and `sampling.generate`). No JAX: the device count is passed in.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from melodyjax import errors

LSTM_IMPLS = ("auto", "scan", "fused", "kernel", "onednn", "cudnn")
DTYPES = ("auto", "float32", "bfloat16", "float16")
DECAYS = ("cosine", "constant")
OBJECTIVES = ("all", "last")
PARALLEL_MODES = ("jit", "pmap")
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
CONDITION_WIDTHS = (
  "position_embed_dim",
  "time_signature_embed_dim",
  "mode_embed_dim",
  "style_embed_dim",
  "max_bar_steps",
)
STEP_FIELDS = (
  "num_train_steps",
  "log_every_steps",
  "eval_every_steps",
  "checkpoint_every_steps",
  "seq_len",
)


def is_int(value: Any) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _positive_int(value: Any, name: str) -> None:
  if not is_int(value) or value <= 0:
    raise errors.ConfigError(
      f"{name} must be a positive integer, got {value!r}"
    )


def _number(value, name, low, high=None, low_open=False) -> None:
  ok = is_number(value) and (value > low if low_open else value >= low)
  if ok and high is not None:
    ok = value <= high
  if not ok:
    bound = f"> {low}" if low_open else f">= {low}"
    if high is not None:
      bound += f" and <= {high}"
    raise errors.ConfigError(f"{name} must be a number {bound}, got {value!r}")


def _choice(value: Any, name: str, choices: Sequence[str]) -> None:
  if value not in choices:
    raise errors.ConfigError(
      f"{name} must be one of {tuple(choices)}, got {value!r}"
    )


def check_model(
  model: Mapping[str, Any], prefix: str = "config.model."
) -> None:
  """The model group: sizes, dropout, LSTM implementation, dtype.

  Raises:
    ConfigError: the first bad field, as `prefix + name`.
  """
  for field in ("pitch_embed_dim", "duration_embed_dim", "dense_size"):
    _positive_int(model[field], prefix + field)
  sizes = model["lstm_sizes"]
  if (
    not isinstance(sizes, tuple | list)
    or not sizes
    or not all(is_int(size) and size > 0 for size in sizes)
  ):
    raise errors.ConfigError(
      f"{prefix}lstm_sizes must be a tuple of positive integers such "
      f"as (256, 128), got {sizes!r}"
    )
  _number(model["spatial_dropout"], prefix + "spatial_dropout", 0.0, 1.0)
  if model["spatial_dropout"] >= 1:
    raise errors.ConfigError(f"{prefix}spatial_dropout must be below 1")
  _choice(model["lstm_impl"], prefix + "lstm_impl", LSTM_IMPLS)
  _choice(model["dtype"], prefix + "dtype", DTYPES)
  flags = [f"condition_{kind}" for kind in ("metre", "mode", "style")]
  for field in (*flags, "duration_given_pitch"):
    value = model.get(field, False)
    if not isinstance(value, bool):
      raise errors.ConfigError(
        f"{prefix}{field} must be True or False, got {value!r}"
      )
  for field in CONDITION_WIDTHS:
    if field in model:
      _positive_int(model[field], prefix + field)


def check_sampling(
  values: Mapping[str, Any],
  name: Callable[[str], str] = lambda field: f"--{field}",
  shown: Mapping[str, str] | None = None,
) -> None:
  """Sampling settings: counts >= 1, temperatures > 0, top-k, top-p, and
  the limits of one request (`LIMITS`, `MAX_EVENTS_PER_CALL`, `MAX_SEED`).

  Args:
    values: any of num_outputs, num_notes, max_primer_notes, seed (ints),
      temperature, top_k, top_p (a number or a (pitch, duration) pair).
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
    is_number(t) and 0 < t < math.inf for t in pair("temperature")
  ):
    raise errors.ConfigError(
      f"{name('temperature')} must be > 0, got {got('temperature')} "
      "(lower values are more conservative; try 0.8)"
    )
  if "top_p" in values and not all(
    is_number(p) and 0 < p <= 1 for p in pair("top_p")
  ):
    raise errors.ConfigError(
      f"{name('top_p')} must be in (0, 1], got {got('top_p')} "
      "(1 keeps every token)"
    )
  if "top_k" in values and not all(is_int(k) and k >= 0 for k in pair("top_k")):
    raise errors.ConfigError(
      f"{name('top_k')} must be >= 0 (0 keeps every token), got {got('top_k')}"
    )
  for field, (limit, unit) in LIMITS.items():
    if field not in values:
      continue
    if not is_int(values[field]) or values[field] < 1:
      raise errors.ConfigError(
        f"{name(field)} must be >= 1, got {values[field]!r}"
      )
    if values[field] > limit:
      raise errors.ConfigError(
        f"{name(field)} must be at most {limit:,} ({unit}), got "
        f"{values[field]:,}"
      )
  for field in ("beam_size", "branch_factor", "best_of"):
    if field in values and (not is_int(values[field]) or values[field] < 1):
      raise errors.ConfigError(
        f"{name(field)} must be >= 1, got {values[field]!r}"
      )
  if "seed" in values and (
    not is_int(values["seed"])
    or not -MAX_SEED - 1 <= values["seed"] <= MAX_SEED
  ):
    raise errors.ConfigError(
      f"{name('seed')} must be an integer from {-MAX_SEED - 1} to "
      f"{MAX_SEED}, got {values['seed']!r}"
    )
  _check_controls(values, name)
  _check_events(values, name)


MODES = ("major", "minor")


def _check_controls(values: Mapping[str, Any], name) -> None:
  """The controls of a request whose rules need no run (`sampling.plan`
  checks them against the run)."""
  for field in ("bars", "steps_per_iteration"):
    if field in values and (not is_int(values[field]) or values[field] < 0):
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


def _check_train(config, num_devices: int | None) -> None:
  train = config.train
  _choice(train.objective, "config.train.objective", OBJECTIVES)
  _choice(train.parallel, "config.train.parallel", PARALLEL_MODES)
  carry_state = train.get("carry_state", False)
  if not isinstance(carry_state, bool):
    raise errors.ConfigError(
      f"config.train.carry_state must be True or False, got {carry_state!r}"
    )
  if carry_state and train.objective != "all":
    raise errors.ConfigError(
      "config.train.carry_state=True needs config.train.objective='all' "
      f"(the windows of a song in order), got {train.objective!r}"
    )
  if num_devices is not None:
    for field, value in (
      ("train.batch_size", train.batch_size),
      ("eval.batch_size", config.eval.batch_size),
    ):
      if not is_int(value) or value <= 0 or value % num_devices:
        raise errors.ConfigError(
          f"config.{field}={value} must be a positive multiple of the "
          f"{num_devices} devices"
        )
  for field in STEP_FIELDS:
    if not is_int(train[field]) or train[field] <= 0:
      raise errors.ConfigError(f"config.train.{field} must be positive")
  if not is_int(train.sample_every_steps) or train.sample_every_steps < 0:
    raise errors.ConfigError("config.train.sample_every_steps must be >= 0")
  _number(train.learning_rate, "config.train.learning_rate", 0.0, low_open=True)
  if not is_int(train.warmup_steps) or train.warmup_steps < 0:
    raise errors.ConfigError(
      "config.train.warmup_steps must be an integer >= 0, got "
      f"{train.warmup_steps!r}"
    )
  _choice(train.decay, "config.train.decay", DECAYS)
  _number(train.end_lr_fraction, "config.train.end_lr_fraction", 0.0, 1.0)
  _number(train.weight_decay, "config.train.weight_decay", 0.0)
  _number(train.grad_clip_norm, "config.train.grad_clip_norm", 0.0)
  ema = train.get("ema_decay", 0.0)
  if not is_number(ema) or not 0 <= ema < 1:
    raise errors.ConfigError(
      f"config.train.ema_decay must be a number >= 0 and < 1 (0: off), got "
      f"{ema!r}"
    )
  start = train.get("ema_start_step", 0)
  if not is_int(start) or start < 0:
    raise errors.ConfigError(
      f"config.train.ema_start_step must be an integer >= 0, got {start!r}"
    )


def _check_data(config) -> None:
  # Here, not at the top: the model checks its fields with this module and
  # must not depend on the data package.
  from melodyjax.data import dataset as dataset_lib  # pylint: disable=g-import-not-at-top

  for field in ("midi_dir", "dataset_dir"):
    value = config.data[field]
    if not isinstance(value, str) or not value.strip():
      raise errors.ConfigError(f"config.data.{field} must be a folder path")
  shifts = config.data.transpositions
  if not isinstance(shifts, tuple | list) or not all(map(is_int, shifts)):
    raise errors.ConfigError(
      "config.data.transpositions must be a tuple of semitones such as "
      f"(-2, -1, 1, 2), got {shifts!r}"
    )
  dataset_lib.CorpusConfig.from_config(config.data)


def check_tempo(tempo: Any, name: str) -> None:
  """A tempo in quarter notes per minute: > 0 and at most MAX_TEMPO_BPM.

  Raises:
    ConfigError: names `name`.
  """
  if not is_number(tempo) or not tempo > 0:
    raise errors.ConfigError(
      f"{name} must be > 0 (quarters per minute), got {tempo}"
    )
  if tempo > MAX_TEMPO_BPM:
    raise errors.ConfigError(
      f"{name} must be at most {MAX_TEMPO_BPM:g} quarters per minute, "
      f"got {tempo}"
    )


def _check_finite(value: Any, name: str) -> None:
  """No NaN or infinity anywhere: config.json is strict JSON."""
  if isinstance(value, Mapping):
    for key, item in value.items():
      _check_finite(item, f"{name}.{key}")
  elif isinstance(value, tuple | list):
    for item in value:
      _check_finite(item, name)
  elif isinstance(value, float) and not math.isfinite(value):
    raise errors.ConfigError(f"{name} must be a finite number, got {value}")


def check_config(config, num_devices: int | None = None) -> None:
  """Types and ranges of every field of a training config.

  Args:
    config: an ml_collections ConfigDict such as `configs/default.py`'s.
    num_devices: the global batch sizes must be multiples of it (None:
      not checked).

  Raises:
    ConfigError (CorpusError for the data options): the first bad field.
  """
  if not is_int(config.seed):
    raise errors.ConfigError(
      f"config.seed must be an integer, got {config.seed!r}"
    )
  _check_finite(config.to_dict(), "config")
  check_model(config.model)
  _check_train(config, num_devices)
  _positive_int(config.checkpoint.max_to_keep, "config.checkpoint.max_to_keep")
  keep_best = config.checkpoint.keep_best
  if not is_int(keep_best) or keep_best < 0:
    raise errors.ConfigError(
      f"config.checkpoint.keep_best must be an integer >= 0, got {keep_best!r}"
    )
  _check_data(config)
  for name, value in (
    ("init_from", config.init_from),
    ("data.vocab_from", config.data.vocab_from),
  ):
    if not isinstance(value, str):
      raise errors.ConfigError(
        f"config.{name} must be a workdir or .mjx path (or empty), got "
        f"{value!r}"
      )
  _number(config.data.max_unk_share, "config.data.max_unk_share", 0.0, 1.0)
  check_sampling(
    {
      name: config.sample[name]
      for name in (
        "num_outputs",
        "num_notes",
        "temperature",
        "top_p",
        "seed",
        *SAMPLE_CONTROLS,
      )
      if name in config.sample
    },
    name=lambda field: f"config.sample.{field}",
  )
  check_tempo(config.sample.tempo_bpm, "config.sample.tempo_bpm")


# The controls of the `sample` config group and of `generate.Request`.
SAMPLE_CONTROLS = (
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
