"""A request read against its run: what each control resolves to, the
sampler's `Controls`, and the key the output is written in.

Each wanted value is checked against what the run was trained with: a
label the run's vocabulary lacks, or a condition the run was trained
without, is a one-line error listing the valid values. A conditioned run
asked for nothing gets its training songs' most common label. The bar
length comes from the time signature asked for (conditioned or not; 4/4
by default for an unconditioned run). Keys: the corpus is normalised to C
major / A minor, so the tonic is C for major and A for minor. The key a
melody is written in (MIDI key signature, ABC `K:`) is the mode asked of a
mode-conditioned run, else major: C, or the tonic of `--key`; so
`--end_on_tonic` ends every melody on the tonic of the key its file names
(C, or A for `--mode=minor`), and `--key` transposes from that key to the
wanted tonic, by the fewest semitones (an octave the other way if a pitch
would leave 0-127). A run without mode conditioning may still write a
minor-sounding melody: under the major key's signature, which is also its
relative minor's.

Promises are kept or refused: `--bars N` is refused before sampling when
`--num_notes` cannot hold N bars even of the longest duration, and
`outcome` says of each melody what it met (its bars, whether it ends on the
tonic), which sample_main.py reports and the sidecar records.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from melodyjax import errors
from melodyjax.data import labels as labels_lib
from melodyjax.music import metre, tonality
from melodyjax.music.events import Event
from melodyjax.sampling import constraints

NORMALISED_TONIC = {tonality.MAJOR: 0, tonality.MINOR: 9}


@dataclasses.dataclass(frozen=True)
class Plan:
  """The resolved controls of one request.

  Attributes:
    time_signature: for the bars, the MIDI file and a metre-conditioned
      model.
    bar_steps: its bar in grid steps.
    mode: 'major', 'minor', or None (the model's choice).
    style: the style label fed to the model, or None.
    key_tonic: the pitch class the output is transposed to (None: kept in
      the normalised key).
    label_ids: (time signature, mode, style) ids fed to the model.
  """

  time_signature: tuple[int, int]
  bar_steps: int
  mode: str | None
  style: str | None
  key_tonic: int | None
  label_ids: tuple[int, int, int]

  @property
  def written_mode(self) -> str:
    """The mode of the key the melodies are written in."""
    return self.mode or tonality.MAJOR

  @property
  def tonic_classes(self) -> frozenset[int]:
    """Pitch classes a melody may end on, in the normalised key."""
    return frozenset({NORMALISED_TONIC[self.written_mode]})


def _label(run, request, kind: str, flag: str) -> str | None:
  """The label of `kind` asked for, checked against the run."""
  asked = getattr(request, flag)
  if not getattr(run.model.config, f"condition_{_group(kind)}"):
    if asked and kind != "time_signature":
      raise errors.GenerateError(
        f"--{flag} {asked}: this run was trained without {kind} "
        f"conditioning (config.model.condition_{_group(kind)}=False)"
      )
    return None
  vocab = run.labels[kind]
  if not asked:
    asked = vocab.most_common()
    if asked is None:
      raise errors.GenerateError(
        f"--{flag}: the run knows no {kind} label ({labels_lib.FILE})"
      )
  if asked not in vocab.known:
    raise errors.GenerateError(
      f"--{flag} {asked}: not a {kind} this run was trained with (valid: "
      f"{', '.join(vocab.known)})"
    )
  return asked


def _group(kind: str) -> str:
  return "metre" if kind == "time_signature" else kind


def make_plan(run, request) -> Plan:
  """Resolves `request`'s controls against `run` (see the module docstring).

  Raises:
    GenerateError: a value the run cannot take, in one line.
  """
  signature_label = _label(run, request, "time_signature", "time_signature")
  text = signature_label or request.time_signature or "4/4"
  try:
    signature = metre.parse_signature(text)
  except ValueError as e:
    raise errors.GenerateError(f"--time_signature {e}") from None
  grid = run.config.data.grid
  steps = metre.bar_steps(signature, grid)
  if steps is None:
    raise errors.GenerateError(
      f"--time_signature {text}: its bar is not a whole number of grid "
      f"steps (config.data.grid={grid})"
    )
  mode = _label(run, request, "mode", "mode")
  style = _label(run, request, "style", "style")
  normalised = run.config.data.normalize_key
  for flag in ("key", "end_on_tonic"):
    if getattr(request, flag) and not normalised:
      raise errors.GenerateError(
        f"--{flag} needs a key-normalised run (config.data.normalize_key="
        "True): this run's songs keep their own keys"
      )
  key_tonic = None
  if request.key:
    try:
      key_tonic = tonality.parse_tonic(request.key)
    except ValueError:
      raise errors.GenerateError(
        f"--key {request.key}: not a tonic (valid: "
        f"{', '.join(tonality.TONIC_NAMES)})"
      ) from None
  ids = (
    run.labels.time_signature.id(signature_label),
    run.labels.mode.id(mode),
    run.labels.style.id(style),
  )
  resolved = Plan(signature, steps, mode, style, key_tonic, ids)
  _check_bars_fit(resolved, run, request)
  return resolved


def _check_bars_fit(plan: Plan, run, request) -> None:
  """Refuses `--bars` that `--num_notes` cannot hold: even the longest
  duration that fits a bar needs this many events."""
  if not request.bars:
    return
  steps = constraints.duration_steps(
    run.duration_vocab.tokens, run.config.data.grid
  )
  longest = max((int(s) for s in steps if 0 < s <= plan.bar_steps), default=0)
  if not longest:
    raise errors.GenerateError(
      f"--bars {request.bars}: no duration of the run fits a bar of "
      f"{metre.signature_label(plan.time_signature)}"
    )
  needed = -(-request.bars * plan.bar_steps // longest)
  if needed > request.num_notes:
    raise errors.GenerateError(
      f"--bars {request.bars:,} in {metre.signature_label(plan.time_signature)}"
      f" needs at least {needed:,} events (of the longest duration that "
      f"fits a bar), more than --num_notes={request.num_notes:,}"
    )


def outcome(plan: Plan, request, events: Sequence[Event], grid: int) -> dict:
  """What a melody (in its written key) met of the request's promises:
  its length in bars, and, when asked, whether it has exactly `--bars`
  bars and ends on the tonic of its written key."""
  steps = sum(event.quarters for event in events) * grid
  met = {"bars": float(steps / plan.bar_steps)}
  if request.bars:
    met["bars_met"] = steps == request.bars * plan.bar_steps
  if request.end_on_tonic:
    notes = [event for event in events if event.pitches]
    tonic = NORMALISED_TONIC[plan.written_mode]
    if plan.key_tonic is not None:
      tonic = plan.key_tonic
    met["ends_on_tonic"] = bool(notes) and (
      len(notes[-1].pitches) == 1 and notes[-1].pitches[0] % 12 == tonic
    )
  return met


def make_controls(plan: Plan, run, request) -> constraints.Controls:
  """The sampler's controls for `request.num_outputs` melodies.

  Raises:
    GenerateError: `--end_on_tonic` with no tonic note in the vocabulary.
  """
  tonic = constraints.tonic_mask(run.pitch_vocab.tokens, plan.tonic_classes)
  if request.end_on_tonic and not tonic.any():
    raise errors.GenerateError(
      "--end_on_tonic: the run's pitch vocabulary holds no tonic note"
    )
  return constraints.make_controls(
    request.num_outputs,
    run.pitch_vocab.tokens,
    run.duration_vocab.tokens,
    run.config.data.grid,
    bar_steps=plan.bar_steps,
    bars=request.bars,
    end_on_tonic=request.end_on_tonic,
    tonic_classes=plan.tonic_classes,
    labels=plan.label_ids,
    steps_per_iteration=(
      0 if request.best_of > 1 else request.steps_per_iteration
    ),
  )


def to_key(plan: Plan, events: Sequence[Event]) -> list[Event]:
  """A melody moved from its written key (normalised) to the plan's tonic."""
  if plan.key_tonic is None:
    return list(events)
  tonic = NORMALISED_TONIC[plan.written_mode]
  shift = (plan.key_tonic - tonic + 6) % 12 - 6
  for semitones in (shift, shift - 12 if shift > 0 else shift + 12):
    moved = tonality.transpose(events, semitones)
    if moved is not None:
      return moved
  return list(events)


def key_signature(plan: Plan, normalised: bool) -> str | None:
  """The MIDI key signature of the plan's melodies (None: unknown)."""
  if not normalised:
    return None
  mode = plan.written_mode
  tonic = NORMALISED_TONIC[mode] if plan.key_tonic is None else plan.key_tonic
  return tonality.key_signature_name(tonic, mode)
