"""What the command-line mains share: one-line user errors, a result line.

Every user mistake (a flag, a config value, a corpus, a workdir, a primer)
ends the program with one line `PROG: error: ...` on stderr and exit status
2 (`USAGE_EXIT`); `--debug` also prints the traceback. The catalogue of
mistakes and their messages is docs/errors.md.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import traceback
from collections.abc import Iterator, Mapping

from absl import flags

USAGE_EXIT = 2

flags.DEFINE_bool(
  "debug", False, "Also print the traceback of a reported error."
)


class UsageError(Exception):
  """A flag value that a main rejects; the message names the flag."""


def _debug() -> bool:
  try:
    return bool(flags.FLAGS.debug)
  except (AttributeError, flags.UnparsedFlagAccessError):
    return False


def fail(prog: str, message: str) -> None:
  """Prints `PROG: error: MESSAGE` and exits with status 2."""
  print(f"{prog}: error: {message}", file=sys.stderr)
  sys.exit(USAGE_EXIT)


@contextlib.contextmanager
def user_errors(prog: str) -> Iterator[None]:
  """Turns the package's user-facing errors into one line and exit code 2."""
  from absl import app  # pylint: disable=g-import-not-at-top

  from melodyjax.data import dataset as dataset_lib  # pylint: disable=g-import-not-at-top
  from melodyjax.sampling import generate  # pylint: disable=g-import-not-at-top
  from melodyjax.training import checkpoints, checks, loop  # pylint: disable=g-import-not-at-top

  known = (
    UsageError,
    app.UsageError,
    checks.ConfigError,
    dataset_lib.CorpusError,
    checkpoints.CheckpointError,
    loop.TrainingError,
    generate.GenerateError,
  )
  try:
    yield
  except known as e:
    if _debug():
      traceback.print_exc()
    fail(prog, str(e))
  except KeyboardInterrupt:
    print(f"{prog}: interrupted", file=sys.stderr)
    sys.exit(130)


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing with one-line errors (config typos included)."""
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
    required = re.search(
      r"Flag --(\w+) must have a value other than None", message
    )
    if required:
      message = f"--{required.group(1)} is required"
    elif "defined twice" in message:  # an override given twice
      name = re.search(r"'([\w.]+)'", message)
      message = f"--{name.group(1) if name else 'a flag'} is given twice"
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
  fail(prog, message)


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
