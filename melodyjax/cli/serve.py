"""`melodyjax-serve` (also `python -m melodyjax.cli.serve`): a trained run as an
HTTP JSON API, compiled once and batching concurrent requests.

  melodyjax-serve --workdir=runs/esac_cpu [--host=127.0.0.1] [--port=8000]
  curl -s localhost:8000/generate -d '{"num_notes": 64, "seed": 1}'

POST /generate takes sample_main.py's settings and controls as JSON fields
(a conditioned run included); GET /health says what is served; GET / is the
studio page (controls, staff, sound, downloads) to use it in a browser; GET
/files/NAME a file an answer named. An address other than loopback needs
--allow_remote (and should have --token: then every route but /health
needs `Authorization: Bearer TOKEN`).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence

from absl import flags

from melodyjax import cli, errors

PROG = "melodyjax-serve"
TOKEN_ENV = "MELODYJAX_SERVE_TOKEN"
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
  "Address to bind (loopback only, unless --allow_remote).",
  flag_values=FLAGS,
)
flags.DEFINE_bool(
  "allow_remote",
  False,
  "Allow a --host other than loopback (reachable from other machines).",
  flag_values=FLAGS,
)
flags.DEFINE_string(
  "token",
  None,
  "A token every route but /health needs (Authorization: Bearer TOKEN); "
  f"default: ${TOKEN_ENV} if set.",
  flag_values=FLAGS,
)
flags.DEFINE_integer(
  "max_queue",
  64,
  "Requests waiting or running at most (more get 503 with Retry-After).",
  flag_values=FLAGS,
)
flags.DEFINE_float(
  "request_seconds",
  120.0,
  "A request's time to be answered at most (504 past it).",
  flag_values=FLAGS,
)
flags.DEFINE_float(
  "read_seconds",
  10.0,
  "The time a request's headers, then its body, may take to arrive (408).",
  flag_values=FLAGS,
)
flags.DEFINE_string(
  "files_dir",
  None,
  "Where the answers' MIDI files go (default: a temporary folder).",
  flag_values=FLAGS,
)
flags.DEFINE_integer(
  "max_files",
  1024,
  "Files kept in --files_dir (the oldest goes first).",
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
  if not 1 <= FLAGS.max_files <= 1_000_000:
    raise errors.UsageError(
      f"--max_files must be 1 to 1,000,000, got {FLAGS.max_files}"
    )
  return limits, warm


def _guard_settings(limits):
  """The guard's settings from the flags, and the warning to print."""
  from melodyjax.serving import guard

  token = FLAGS.token if FLAGS.token is not None else os.environ.get(TOKEN_ENV)
  settings = guard.Settings(
    max_queue=FLAGS.max_queue,
    request_seconds=FLAGS.request_seconds,
    read_seconds=FLAGS.read_seconds,
    max_body_bytes=limits.max_body_bytes,
    token=token or None,
  )
  settings.check()
  return settings, guard.check_host(
    FLAGS.host, FLAGS.allow_remote, settings.token
  )


def main(argv: Sequence[str] | None = None) -> int:
  """Loads the run, compiles the sampler, serves until SIGINT or SIGTERM."""
  prog = cli.tool_prog(PROG, argv)
  cli.parse_flags(cli.tool_argv(prog, argv), FLAGS)
  with cli.user_errors(prog, FLAGS):
    limits, warm = _check_flags()
    settings, warning = _guard_settings(limits)
    from melodyjax.serving import app, batcher, guard, model, store

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

    try:
      made = store.FileStore(FLAGS.files_dir, FLAGS.max_files)
    except OSError as e:
      raise errors.UsageError(
        f"--files_dir={FLAGS.files_dir}: {e.strerror or e}"
      ) from None
    if warning:
      print(f"{prog}: {warning}", file=sys.stderr, flush=True)
    config = uvicorn.Config(
      app.create_app(runner, settings, made),
      http=guard.protocol(settings.read_seconds),
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
