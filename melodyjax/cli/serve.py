"""`melodyjax-serve` (also `python -m melodyjax.cli.serve`): a trained run as an
HTTP JSON API, compiled once and batching concurrent requests.

  melodyjax-serve --workdir=runs/esac_cpu [--host=127.0.0.1] [--port=8000]
  curl -s localhost:8000/generate -d '{"num_notes": 64, "seed": 1}'

POST /generate takes sample_main.py's settings and controls as JSON fields
(a conditioned run included); GET /health says what is served; GET / is the
studio page (controls, staff, sound, downloads) to use it in a browser.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence

from absl import flags

from melodyjax import cli, errors

PROG = "melodyjax-serve"
FLAGS = cli.tool_flags()
flags.DEFINE_string(
  "workdir", None, "Training run to serve.", flag_values=FLAGS
)
flags.DEFINE_string(
  "model", None, "A .mjx model file (melodyjax-export).", flag_values=FLAGS
)
flags.DEFINE_string(
  "step", "latest", "'latest', 'best' or a step number.", flag_values=FLAGS
)
flags.DEFINE_string(
  "host",
  "127.0.0.1",
  "Address to bind (localhost only by default).",
  flag_values=FLAGS,
)
flags.DEFINE_integer("port", 8000, "TCP port.", flag_values=FLAGS)
flags.DEFINE_integer(
  "max_notes", 1024, "Events per melody at most.", flag_values=FLAGS
)
flags.DEFINE_integer(
  "max_outputs", 16, "Melodies per request at most.", flag_values=FLAGS
)
flags.DEFINE_integer(
  "max_primer_notes",
  64,
  "Primer events at most (one compilation serves every primer up to it).",
  flag_values=FLAGS,
)
flags.DEFINE_integer(
  "max_body_bytes", 64 << 10, "Request body size at most.", flag_values=FLAGS
)
flags.DEFINE_integer(
  "max_batch", 8, "Requests per sampler call at most.", flag_values=FLAGS
)
flags.DEFINE_float(
  "batch_wait_ms",
  5.0,
  "How long the first request of a call waits for others.",
  flag_values=FLAGS,
)
flags.DEFINE_list(
  "warm_notes",
  ["128"],
  "Note counts compiled at start (each rounded up to its bucket).",
  flag_values=FLAGS,
)
flags.DEFINE_integer(
  "max_connections",
  256,
  "Open connections at most (more are answered 503).",
  flag_values=FLAGS,
)


def _check_flags():
  from melodyjax.serving import requests

  limits = requests.Limits(
    max_notes=FLAGS.max_notes,
    max_outputs=FLAGS.max_outputs,
    max_primer_notes=FLAGS.max_primer_notes,
    max_body_bytes=FLAGS.max_body_bytes,
  )
  limits.check()
  if not 1 <= FLAGS.max_batch <= 32:
    raise errors.UsageError(
      f"--max_batch must be 1 to 32, got {FLAGS.max_batch}"
    )
  if not 0 <= FLAGS.batch_wait_ms <= 1000:
    raise errors.UsageError(
      f"--batch_wait_ms must be 0 to 1000, got {FLAGS.batch_wait_ms}"
    )
  if not 0 <= FLAGS.port <= 65535:
    raise errors.UsageError(f"--port must be 0 to 65535, got {FLAGS.port}")
  try:
    warm = [int(n) for n in FLAGS.warm_notes]
  except ValueError:
    raise errors.UsageError(
      f"--warm_notes: not a list of numbers: {','.join(FLAGS.warm_notes)}"
    ) from None
  if not all(1 <= n <= limits.max_notes for n in warm):
    raise errors.UsageError(
      f"--warm_notes must lie in 1 to --max_notes={limits.max_notes}"
    )
  return limits, warm


def main(argv: Sequence[str] | None = None) -> int:
  """Loads the run, compiles the sampler, serves until SIGINT or SIGTERM."""
  prog = cli.tool_prog(PROG, argv)
  cli.parse_flags(cli.tool_argv(prog, argv), FLAGS)
  with cli.user_errors(prog, FLAGS):
    limits, warm = _check_flags()
    from melodyjax.serving import app, batcher, model

    served = model.load(
      workdir=FLAGS.workdir, model=FLAGS.model, step=FLAGS.step
    )
    runner = batcher.Batcher(
      served,
      limits,
      max_slots=FLAGS.max_batch,
      wait_seconds=FLAGS.batch_wait_ms / 1000,
    )
    seconds = runner.warm(num_notes=warm)
    print(
      f"{prog}: step {served.step} of {served.workdir}; sampler compiled "
      f"in {seconds:.1f} s",
      flush=True,
    )
    import uvicorn

    config = uvicorn.Config(
      app.create_app(runner),
      host=FLAGS.host,
      port=FLAGS.port,
      log_level="warning",
      limit_concurrency=FLAGS.max_connections,
      timeout_keep_alive=5,
    )
    server = uvicorn.Server(config)
    _announce_when_started(server, prog)
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then raises the
    # signal again under the handler it found: this one ends with 0.
    for signum in (signal.SIGINT, signal.SIGTERM):
      signal.signal(signum, _stopped)
    server.run()
  return 0


def _stopped(signum, frame) -> None:
  print(f"{PROG}: stopped ({signal.Signals(signum).name})", flush=True)
  sys.exit(0)


def _announce_when_started(server, prog: str) -> None:
  """Prints `serving on http://HOST:PORT` once the socket listens (the
  port's number when --port=0 asked for a free one)."""
  startup = server.startup

  async def announced_startup(sockets=None):
    await startup(sockets=sockets)
    for listener in getattr(server, "servers", []):
      for sock in listener.sockets:
        host, port = sock.getsockname()[:2]
        print(f"{prog}: serving on http://{host}:{port}", flush=True)

  server.startup = announced_startup


if __name__ == "__main__":
  sys.exit(main())
