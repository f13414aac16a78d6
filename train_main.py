"""Trains a melody model: `python train_main.py --config=configs/default.py
--workdir=DIR [--config.train.batch_size=128 ...]`. Resumes if DIR has a
checkpoint. Multi-host: pass --coordinator_address, --num_processes and
--process_id (or set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and
JAX_PROCESS_ID)."""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
  "config", None, "Config file.", lock_config=True
)
flags.DEFINE_string("workdir", None, "Run folder (checkpoints, logs).")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
flags.DEFINE_integer("num_processes", None, "Processes in a multi-host run.")
flags.DEFINE_integer("process_id", None, "This process's index.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  import jax  # pylint: disable=g-import-not-at-top

  from melodyjax import cli, train  # pylint: disable=g-import-not-at-top

  address = FLAGS.coordinator_address or os.environ.get(
    "JAX_COORDINATOR_ADDRESS"
  )
  if address:
    jax.distributed.initialize(
      address,
      FLAGS.num_processes or int(os.environ["JAX_NUM_PROCESSES"]),
      FLAGS.process_id
      if FLAGS.process_id is not None
      else int(os.environ["JAX_PROCESS_ID"]),
    )
  logging.info(
    "process %d of %d; devices: %s",
    jax.process_index(),
    jax.process_count(),
    jax.devices(),
  )
  with cli.user_errors("train_main.py"):
    metrics = train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    if jax.process_index() == 0:
      print(cli.format_result(FLAGS.workdir, metrics))


if __name__ == "__main__":
  from melodyjax import cli

  sys.exit(app.run(main, flags_parser=cli.parse_flags))
