"""`train_main.py` (also `melodyjax-train`): train or resume a run.

  python train_main.py --config=configs/default.py --workdir=DIR \
    [--config.train.batch_size=128 ...]

Resumes if DIR has a checkpoint. Multi-host: pass --coordinator_address,
--num_processes and --process_id (or set JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES and JAX_PROCESS_ID) to every process; each feeds its
part of the global batch and only process 0 writes logs, metrics and the
config.
"""

import os
import sys
from collections.abc import Sequence

from absl import flags
from ml_collections import config_flags

from melodyjax import cli, errors

PROG = "train_main.py"
FLAGS = cli.tool_flags()
config_flags.DEFINE_config_file(
  "config", None, "Config file.", lock_config=True, flag_values=FLAGS
)
flags.DEFINE_string(
  "workdir", None, "Run folder (checkpoints, logs).", flag_values=FLAGS
)
flags.DEFINE_string(
  "coordinator_address",
  None,
  "host:port of process 0 (default: $JAX_COORDINATOR_ADDRESS).",
  flag_values=FLAGS,
)
flags.DEFINE_integer(
  "num_processes",
  None,
  "Processes in a multi-host run (default: $JAX_NUM_PROCESSES).",
  flag_values=FLAGS,
)
flags.DEFINE_integer(
  "process_id",
  None,
  "This process's index (default: $JAX_PROCESS_ID).",
  flag_values=FLAGS,
)
flags.mark_flags_as_required(["config", "workdir"], flag_values=FLAGS)


def _setting(flag: str, variable: str) -> str | None:
  value = FLAGS[flag].value
  if value is not None:
    return str(value)
  return os.environ.get(variable) or None


def distributed_settings() -> tuple[str, int, int] | None:
  """(coordinator address, process count, process id) from the flags, else
  the JAX_* variables; None for a single-process run.

  Raises:
    UsageError: some but not all are set, or they are not valid.
  """
  names = (
    ("coordinator_address", "JAX_COORDINATOR_ADDRESS"),
    ("num_processes", "JAX_NUM_PROCESSES"),
    ("process_id", "JAX_PROCESS_ID"),
  )
  values = [_setting(flag, variable) for flag, variable in names]
  if all(v is None for v in values):
    return None
  missing = [
    f"--{flag} (or {variable})"
    for (flag, variable), value in zip(names, values, strict=True)
    if value is None
  ]
  if missing:
    raise errors.UsageError(
      "a multi-host run needs " + ", ".join(missing) + " as well"
    )
  address, count, index = values
  if ":" not in address or not address.rsplit(":", 1)[1].isdigit():
    raise errors.UsageError(
      f"the coordinator address must be host:port, got {address!r}"
    )
  try:
    count, index = int(count), int(index)
  except ValueError:
    raise errors.UsageError(
      f"the process count and id must be integers, got {count!r} and {index!r}"
    ) from None
  if count < 1 or not 0 <= index < count:
    raise errors.UsageError(
      f"need 0 <= process id < process count, got id {index} of {count}"
    )
  return address, count, index


def initialize_distributed(settings: tuple[str, int, int]) -> None:
  """Joins the multi-host run; must come before any other JAX call.

  Waits (up to JAX's 5 minutes) for every process to connect; JAX itself
  ends the process when that fails or the coordinator's port is taken.
  """
  import jax

  # Collectives across processes on CPU need an implementation: gloo (TCP)
  # is JAX's default; keep one chosen with JAX_CPU_COLLECTIVES_IMPLEMENTATION.
  if jax.config.jax_cpu_collectives_implementation is None:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(*settings)


def main(argv: Sequence[str] | None = None) -> int:
  """Trains (or resumes) the run the flags describe; the exit status.

  Args:
    argv: the flags, without a program name (default: sys.argv's).
  """
  prog = cli.tool_prog(PROG, argv)
  rest = cli.parse_flags(cli.tool_argv(prog, argv), FLAGS)
  if len(rest) > 1:
    cli.fail(prog, f"unexpected arguments: {' '.join(rest[1:])}")
  with cli.user_errors(prog, FLAGS):
    settings = distributed_settings()
    if settings is not None:
      initialize_distributed(settings)
    # JAX only now: after the multi-host set-up.
    import jax

    from melodyjax.cli import runtime
    from melodyjax.listening import hook, page
    from melodyjax.training import loop

    described = False

    def announce(text: str) -> None:
      # First lines of every process: a wrong launch shows at once.
      nonlocal described
      if not described:
        text += f"\nmemory allocator: {runtime.active_allocator()}"
        described = True
      for line in text.splitlines():
        print(f"{prog}: {line}", flush=True)

    metrics = loop.train_and_evaluate(
      FLAGS.config,
      FLAGS.workdir,
      hooks=[hook.AuditionHook(FLAGS.config)],
      announce=announce,
    )
    if jax.process_index() == 0:
      print(cli.format_result(FLAGS.workdir, metrics))
      print(page.describe_outputs(FLAGS.workdir))
  return 0


def run() -> None:
  """The console script: fast allocator, flags, main."""
  from melodyjax.cli import runtime

  runtime.reexec_with_fast_malloc()
  sys.exit(main())


if __name__ == "__main__":
  run()
