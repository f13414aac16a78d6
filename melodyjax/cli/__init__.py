"""What every command shares: one flag system, one-line user errors.

Every command (the two mains and the tools) defines its flags on a
`FlagValues` of its own (`tool_flags`), parses them with `parse_flags`, and
runs under `user_errors`: a user mistake (any `errors.MelodyjaxError`, a
flag absl rejects) ends the program with one line `PROG: error: ...` on
stderr and exit status 2 (`USAGE_EXIT`); `--debug` also prints the
traceback. Each command's `main(argv)` can run in any process, again and
again (the tests call them in theirs). The catalogue of mistakes and their
messages is docs/errors.md. No JAX here.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import sys
import traceback
from collections.abc import Iterator, Mapping

from absl import flags

from melodyjax import errors, files
from melodyjax.sampling import request as request_lib
from melodyjax.training import workdir as workdir_lib

USAGE_EXIT = 2
DEBUG_HELP = "Also print the traceback of a reported error."
VERBOSITY_HELP = (
  "Log messages shown: -1 warnings (default; Orbax and XLA log every save "
  "and compile at 0), 0 info, 1 debug."
)


def tool_flags() -> flags.FlagValues:
  """A command's own flag registry, with --debug and --verbosity."""
  flag_values = flags.FlagValues()
  flags.DEFINE_bool("debug", False, DEBUG_HELP, flag_values=flag_values)
  flags.DEFINE_integer(
    "verbosity", -1, VERBOSITY_HELP, lower_bound=-1, flag_values=flag_values
  )
  return flag_values


def tool_prog(default: str, argv=None) -> str:
  """A tool's name in messages: `python -m melodyjax.X`, or the console
  script's name when run as one."""
  if argv is not None:
    return default
  name = os.path.basename(sys.argv[0])
  return default if name.endswith(".py") or not name else name


def tool_argv(prog: str, argv=None) -> list[str]:
  """The command line to parse: sys.argv, or `argv` (without a program
  name, as tests and callers give it)."""
  return [prog, *(sys.argv[1:] if argv is None else argv)]


def _debug(flag_values: flags.FlagValues) -> bool:
  try:
    return bool(flag_values.debug)
  except (AttributeError, flags.UnparsedFlagAccessError):
    return False


def fail(prog: str, message: str) -> None:
  """Prints `PROG: error: MESSAGE` and exits with status 2."""
  print(f"{prog}: error: {message}", file=sys.stderr)
  sys.exit(USAGE_EXIT)


# OSErrors that the machine, not the program, is the cause of: reported as
# one line naming the file, like a user mistake.
ENVIRONMENT_ERRNOS = (
  errno.ENOSPC,
  errno.EDQUOT,
  errno.EROFS,
  errno.EACCES,
  errno.EPERM,
  errno.ENAMETOOLONG,
)
SIGTERM_EXIT = 128 + signal.SIGTERM


class Terminated(BaseException):
  """SIGTERM, raised in the main thread (see `user_errors`)."""


def _raise_terminated(signum, frame):
  raise Terminated()


@contextlib.contextmanager
def user_errors(
  prog: str,
  flag_values: flags.FlagValues,
  *,
  sigterm: bool = False,
) -> Iterator[None]:
  """Turns user-facing errors into one line and exit code 2.

  A `MelodyjaxError`, a flag error, and an OSError of the machine (a full
  disk, a read-only or forbidden folder, a name too long:
  `ENVIRONMENT_ERRNOS`) end the program with `PROG: error: MESSAGE`.

  Args:
    prog: the program's name in messages.
    flag_values: where --debug is read.
    sigterm: also end on SIGTERM with one line and exit status 143, after
      the file being written is cleaned up (`files.atomic_write` removes
      its temporary file), so every file left is complete. Not for
      training, which saves a checkpoint on SIGTERM instead.
  """
  from absl import app

  previous = (
    signal.signal(signal.SIGTERM, _raise_terminated) if sigterm else None
  )
  try:
    yield
  except (errors.MelodyjaxError, app.UsageError) as e:
    if _debug(flag_values):
      traceback.print_exc()
    fail(prog, str(e))
  except OSError as e:
    if e.errno not in ENVIRONMENT_ERRNOS:
      raise
    if _debug(flag_values):
      traceback.print_exc()
    fail(prog, f"{e.filename or 'a file'}: {files.reason(e)}")
  except KeyboardInterrupt:
    print(f"{prog}: interrupted", file=sys.stderr)
    sys.exit(130)
  except Terminated:
    print(
      f"{prog}: terminated (SIGTERM); the files written are complete",
      file=sys.stderr,
    )
    sys.exit(SIGTERM_EXIT)
  finally:
    if sigterm:
      signal.signal(signal.SIGTERM, previous)


def parse_flags(argv: list[str], flag_values: flags.FlagValues) -> list[str]:
  """absl flag parsing with one-line errors (config typos included).

  `--help` prints the flags and exits 0. A command's flags parse again on
  every call: values (and `--config.x` overrides) of an earlier call in the
  same process are forgotten.
  """
  prog = (
    argv[0] if argv[0].startswith("python -m") else os.path.basename(argv[0])
  )
  for stream in (sys.stdout, sys.stderr):
    # A file name that is not UTF-8 (kept as surrogates) never ends a run
    # while it is printed.
    if getattr(stream, "errors", None) == "strict" and hasattr(
      stream, "reconfigure"
    ):
      stream.reconfigure(errors="backslashreplace")
  if {"-h", "--help"} & set(argv[1:]):
    print(f"usage: {prog} [flags]\n\n{flag_values.get_help()}")
    sys.exit(0)
  _forget(flag_values)
  saved = sys.argv
  try:
    # ml_collections reads --config.x overrides from sys.argv.
    sys.argv = list(argv)
    rest = flag_values(argv)
    from absl import logging

    logging.set_verbosity(flag_values.verbosity)
    if "config" in flag_values and flag_values["config"].present:
      flag_values.config.keys()  # a config file loads lazily
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
  finally:
    sys.argv = saved
  fail(prog, message)


def _forget(flag_values: flags.FlagValues) -> None:
  """Unparses the flags and drops the `--config.x` overrides that an
  earlier parse registered."""
  flag_values.unparse_flags()
  for name in list(flag_values):
    if name.startswith("config."):
      delattr(flag_values, name)


def format_result(workdir: str, metrics: Mapping[str, float]) -> str:
  """Where a run's outputs are, and its last validation numbers."""
  workdir = os.path.abspath(os.path.expanduser(workdir))
  path = lambda name: workdir_lib.path(workdir, name)  # noqa: E731
  lines = [
    f"checkpoints: {path(workdir_lib.CHECKPOINT_DIR)}",
    f"metrics:     {path(workdir_lib.METRICS_FILE)}",
    f"tensorboard: tensorboard --logdir {path(workdir_lib.TENSORBOARD_DIR)}",
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


def pair_flag(flag_values, name: str, kind) -> tuple:
  """A list flag of one value or pitch,duration, as a (pitch, duration)
  pair of `kind`.

  Raises:
    UsageError: not a number, or more than two values.
  """
  values = flag_values[name].value
  try:
    parsed = [kind(v) for v in values]
  except ValueError:
    joined = ",".join(values)
    raise errors.UsageError(f"--{name}: not a number: {joined}") from None
  if len(parsed) not in (1, 2):
    raise errors.UsageError(f"--{name} takes one value or pitch,duration")
  return tuple(parsed) if len(parsed) == 2 else (parsed[0], parsed[0])


def define_short_term_flags(flag_values, weight_help: str) -> None:
  """--short_term (weights, `weight_help`) and --short_term_order, each
  one value or pitch,duration (`sampling.request.Request`'s fields)."""
  flags.DEFINE_list("short_term", ["0"], weight_help, flag_values=flag_values)
  flags.DEFINE_list(
    "short_term_order",
    [str(request_lib.DEFAULT_SHORT_TERM_ORDER)],
    "Order of the short-term model; one value or pitch,duration.",
    flag_values=flag_values,
  )
