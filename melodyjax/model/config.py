"""The model's settings: fields, defaults and checks, in one place.

`ModelConfig` is the frozen, hashable form the model and the jitted steps
take; `defaults()` is the `model` group of a training config
(`configs/default.py` builds from it); `check` names the first bad field of
such a group. The defaults are the reference architecture, the model this
project reimplements (`configs/seed.py`): pitch and duration embeddings of
128 and 32, spatial dropout, layer normalization, LSTMs of 256, 128 and 128
units, a shared Dense of 128 with ReLU and two softmax heads. Every option
beyond it (conditioning, the duration head, the LSTM's implementation) is
off or neutral by default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import ml_collections

from melodyjax import checks, errors

# No JAX here: the commands check a config before JAX starts.
DTYPES = ("float32", "bfloat16", "float16")
LSTM_IMPLS = ("auto", "scan", "fused", "kernel", "onednn", "cudnn")
# The inputs each condition adds: int [batch, time] ids (bar positions in
# grid steps, -1 unknown; label ids, 0 unknown).
CONDITION_INPUTS = {
  "metre": ("bar_position", "time_signature"),
  "mode": ("mode",),
  "style": ("style",),
}
ARCHS = ("lstm", "transformer")
POSITIONS = ("rope", "alibi")  # the Transformer's relative positions
# Fields set from the data (vocabularies, labels), not by a config.
DERIVED = (
  "pitch_vocab_size",
  "duration_vocab_size",
  "time_signature_vocab_size",
  "mode_vocab_size",
  "style_vocab_size",
)
_WIDTHS = (
  "pitch_embed_dim",
  "duration_embed_dim",
  "dense_size",
  "position_embed_dim",
  "time_signature_embed_dim",
  "mode_embed_dim",
  "style_embed_dim",
  "max_bar_steps",
  "transformer_width",
  "transformer_layers",
  "transformer_heads",
  "transformer_ff",
)
# The fields that decide the parameters' shapes or meaning: a run resumes,
# or fine-tunes from another, only with the same values (a config written
# before a field existed has its default).
SHAPE_FIELDS = (
  "pitch_embed_dim",
  "duration_embed_dim",
  "lstm_sizes",
  "dense_size",
  "condition_metre",
  "condition_mode",
  "condition_style",
  "duration_given_pitch",
  "position_embed_dim",
  "time_signature_embed_dim",
  "mode_embed_dim",
  "style_embed_dim",
  "max_bar_steps",
  "arch",
  "transformer_width",
  "transformer_layers",
  "transformer_heads",
  "transformer_ff",
  "transformer_position",
)
_FLAGS = (
  "condition_metre",
  "condition_mode",
  "condition_style",
  "duration_given_pitch",
)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Sizes of the model; hashable, so it can be a static jit argument.

  Attributes:
    pitch_vocab_size: pitch vocabulary size, reserved ids included.
    duration_vocab_size: duration vocabulary size, reserved ids included.
    pitch_embed_dim: pitch embedding width.
    duration_embed_dim: duration embedding width.
    spatial_dropout: share of embedding channels dropped in training (whole
      feature channels, one mask per sequence).
    lstm_sizes: hidden units of each stacked LSTM, bottom first.
    dense_size: units of the shared ReLU layer before the heads.
    dtype: compute dtype of the matrix products ('auto': bfloat16 on GPU
      and TPU, float32 on CPU; or 'float32', 'bfloat16', 'float16');
      parameters, LSTM cell state and logits stay float32.
    lstm_impl: the LSTM's implementation, same math (`LSTM_IMPLS`): 'auto'
      (the fastest here: the compiled CPU kernel, cuDNN on a GPU),
      'kernel', 'onednn', 'cudnn', 'fused' (XLA, hand-written backward) or
      'scan' (XLA, autodiff); see `lstm.resolve_impl`.
    condition_metre: embed the bar position and time signature of the
      predicted event's onset as extra inputs.
    condition_mode: embed the song's mode (major / minor).
    condition_style: embed the song's style (its top-level corpus folder).
    duration_given_pitch: the duration head also reads the pitch of the
      event it predicts (a hidden layer of `dense_size` units over the
      shared layer's output plus an embedding of that pitch); off: the
      reference model's independent heads.
    position_embed_dim, time_signature_embed_dim, mode_embed_dim,
      style_embed_dim: the condition embeddings' widths.
    max_bar_steps: bar positions, in grid steps, with their own embedding
      (later ones share the last; 192 is 16 quarters at 12 steps).
    time_signature_vocab_size, mode_vocab_size, style_vocab_size: label
      vocabulary sizes, unknown included (`data.labels`).
    arch: 'lstm' (the reference model: `lstm_sizes`, `lstm_impl`) or
      'transformer' (`model.transformer`: the same embeddings, conditions
      and heads around a causal decoder; the `transformer_*` fields).
    transformer_width: the Transformer's model width (the embeddings are
      projected to it).
    transformer_layers: decoder blocks.
    transformer_heads: attention heads (they divide the width; an even
      head width for RoPE).
    transformer_ff: the MLP's hidden units.
    transformer_position: 'rope' (rotary embeddings) or 'alibi' (linear
      biases on the distance).
    transformer_dropout: dropout of the attention and MLP outputs in
      training, in [0, 1).
  """

  pitch_vocab_size: int
  duration_vocab_size: int
  pitch_embed_dim: int = 128
  duration_embed_dim: int = 32
  spatial_dropout: float = 0.2
  lstm_sizes: tuple[int, ...] = (256, 128, 128)
  dense_size: int = 128
  dtype: str = "auto"
  lstm_impl: str = "auto"
  condition_metre: bool = False
  condition_mode: bool = False
  condition_style: bool = False
  duration_given_pitch: bool = False
  position_embed_dim: int = 16
  time_signature_embed_dim: int = 8
  mode_embed_dim: int = 4
  style_embed_dim: int = 8
  max_bar_steps: int = 192
  time_signature_vocab_size: int = 1
  mode_vocab_size: int = 1
  style_vocab_size: int = 1
  arch: str = "lstm"
  transformer_width: int = 256
  transformer_layers: int = 4
  transformer_heads: int = 4
  transformer_ff: int = 1024
  transformer_position: str = "rope"
  transformer_dropout: float = 0.1

  def __post_init__(self):
    object.__setattr__(self, "lstm_sizes", tuple(self.lstm_sizes))
    check(dataclasses.asdict(self), prefix="model.")

  @property
  def conditions(self) -> tuple[str, ...]:
    """The condition inputs this model reads (`CONDITION_INPUTS`)."""
    return tuple(
      name
      for kind, names in CONDITION_INPUTS.items()
      if getattr(self, f"condition_{kind}")
      for name in names
    )

  def embeddings(self) -> dict[str, tuple[int, int]]:
    """{condition input: (ids, width)} of the embedded conditions."""
    sizes = {
      "bar_position": (self.max_bar_steps + 1, self.position_embed_dim),
      "time_signature": (
        self.time_signature_vocab_size,
        self.time_signature_embed_dim,
      ),
      "mode": (self.mode_vocab_size, self.mode_embed_dim),
      "style": (self.style_vocab_size, self.style_embed_dim),
    }
    return {name: sizes[name] for name in self.conditions}

  @property
  def input_dim(self) -> int:
    return (
      self.pitch_embed_dim
      + self.duration_embed_dim
      + sum(width for _, width in self.embeddings().values())
    )

  @property
  def compute_dtype(self):
    """'auto' is bfloat16 on GPU and TPU, float32 on CPU."""
    import jax
    import jax.numpy as jnp

    if self.dtype == "auto":
      return jnp.float32 if jax.default_backend() == "cpu" else jnp.bfloat16
    return getattr(jnp, self.dtype)


def default(field: str) -> Any:
  """`ModelConfig`'s default of a field."""
  return {f.name: f.default for f in dataclasses.fields(ModelConfig)}[field]


def defaults() -> ml_collections.ConfigDict:
  """The `model` group of a training config: `ModelConfig`'s defaults (the
  reference architecture), without the fields the data sets."""
  return ml_collections.ConfigDict(
    {
      field.name: field.default
      for field in dataclasses.fields(ModelConfig)
      if field.name not in DERIVED
    }
  )


def check(model: Mapping[str, Any], prefix: str = "config.model.") -> None:
  """The model group: sizes, dropout, LSTM implementation, dtype.

  Args:
    model: the `model` group of a config (or a ModelConfig as a dict).
    prefix: prepended to a field's name in messages.

  Raises:
    ConfigError: the first bad field, as `prefix + name`.
  """
  for field in _WIDTHS:
    if field in model:
      checks.positive_int(model[field], prefix + field)
  sizes = model["lstm_sizes"]
  if (
    not isinstance(sizes, tuple | list)
    or not sizes
    or not all(checks.is_int(size) and size > 0 for size in sizes)
  ):
    raise errors.ConfigError(
      f"{prefix}lstm_sizes must be a tuple of positive integers such "
      f"as (256, 128), got {sizes!r}"
    )
  checks.number(model["spatial_dropout"], prefix + "spatial_dropout", 0.0, 1.0)
  if model["spatial_dropout"] >= 1:
    raise errors.ConfigError(f"{prefix}spatial_dropout must be below 1")
  checks.choice(model["lstm_impl"], prefix + "lstm_impl", LSTM_IMPLS)
  checks.choice(model["dtype"], prefix + "dtype", ("auto", *DTYPES))
  _check_transformer(model, prefix)
  for field in _FLAGS:
    checks.boolean(model.get(field, False), prefix + field)


def _check_transformer(model: Mapping[str, Any], prefix: str) -> None:
  checks.choice(model.get("arch", "lstm"), prefix + "arch", ARCHS)
  checks.choice(
    model.get("transformer_position", "rope"),
    prefix + "transformer_position",
    POSITIONS,
  )
  rate = model.get("transformer_dropout", 0.0)
  if not checks.is_number(rate) or not 0 <= rate < 1:
    raise errors.ConfigError(
      f"{prefix}transformer_dropout must be a number >= 0 and < 1, got {rate!r}"
    )
  width = model.get("transformer_width", 256)
  heads = model.get("transformer_heads", 4)
  if checks.is_int(width) and checks.is_int(heads) and heads > 0:
    head = width // heads
    if width % heads or head % 2:
      raise errors.ConfigError(
        f"{prefix}transformer_heads={heads} must divide "
        f"{prefix}transformer_width={width} into an even head width"
      )


def get_model_config(
  model_config: Mapping[str, Any],
  pitch_vocab_size: int,
  duration_vocab_size: int,
  label_sizes: Mapping[str, int] | None = None,
) -> ModelConfig:
  """Builds a ModelConfig from the `model` group of a config (one place).

  Args:
    model_config: the `model` group.
    pitch_vocab_size, duration_vocab_size: the token vocabularies' sizes.
    label_sizes: {'time_signature' | 'mode' | 'style': vocabulary size}.
  """
  names = {f.name for f in dataclasses.fields(ModelConfig)}
  fields = {k: v for k, v in dict(model_config).items() if k in names}
  for kind, size in (label_sizes or {}).items():
    fields[f"{kind}_vocab_size"] = size
  return ModelConfig(
    pitch_vocab_size=pitch_vocab_size,
    duration_vocab_size=duration_vocab_size,
    **fields,
  )
