"""What the command-line mains share: one-line user errors, a result line."""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator, Mapping


@contextlib.contextmanager
def user_errors(prog: str) -> Iterator[None]:
  """Turns the package's user-facing errors into one line and exit code 1."""
  from melodyjax import (  # pylint: disable=g-import-not-at-top
    checkpointing,
    corpus,
    generate,
    train,
  )

  known = (
    corpus.CorpusError,
    checkpointing.CheckpointError,
    train.TrainingError,
    generate.GenerateError,
  )
  try:
    yield
  except known as e:
    print(f"{prog}: error: {e}", file=sys.stderr)
    sys.exit(1)
  except KeyboardInterrupt:
    print(f"{prog}: interrupted", file=sys.stderr)
    sys.exit(130)


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing with one-line errors (config typos included)."""
  from absl import flags  # pylint: disable=g-import-not-at-top

  prog = os.path.basename(argv[0])
  try:
    rest = flags.FLAGS(argv)
    if not flags.FLAGS["verbosity"].present:
      # Orbax and XLA log every save and compile at INFO; keep the console
      # for progress and results unless asked (--verbosity=0).
      from absl import logging  # pylint: disable=g-import-not-at-top

      logging.set_verbosity(logging.WARNING)
    if "config" in flags.FLAGS and flags.FLAGS["config"].present:
      flags.FLAGS.config.keys()  # a config file loads lazily
    return rest
  except flags.Error as e:
    message = str(e)
  except OSError as e:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    message = "cannot load the config file: " + (lines[-1] if lines else "")
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    # ml_collections reports an unknown --config.x override this way.
    text = str(e.args[0] if e.args else e)
    key = re.search(r"\w+", text)
    hint = re.search(r'Did you mean "(\w+)"', text)
    message = f"unknown config field {key.group(0) if key else text!r}"
    if hint:
      message += f' (did you mean "{hint.group(1)}"?)'
  print(f"{prog}: error: {message}", file=sys.stderr)
  sys.exit(2)


def format_result(workdir: str, metrics: Mapping[str, float]) -> str:
  """Where a run's outputs are, and its last validation numbers."""
  workdir = os.path.abspath(os.path.expanduser(workdir))
  lines = [
    f"checkpoints: {os.path.join(workdir, 'checkpoints')}",
    f"metrics:     {os.path.join(workdir, 'metrics.jsonl')}",
    f"tensorboard: tensorboard --logdir {os.path.join(workdir, 'tensorboard')}",
  ]
  if "eval/loss" in metrics:
    lines.append(
      "validation: bits/note {:.3f} (pitch {:.3f}, duration {:.3f}); "
      "accuracy pitch {:.3f}, duration {:.3f}".format(
        metrics["eval/bits_per_note"],
        metrics["eval/bits_per_note_pitch"],
        metrics["eval/bits_per_note_duration"],
        metrics["eval/accuracy_pitch"],
        metrics["eval/accuracy_duration"],
      )
    )
  return "\n".join(lines)
