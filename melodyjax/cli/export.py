"""`melodyjax-export`: a trained run as one model file (`.mjx`).

  melodyjax-export --workdir=runs/esac_cpu [--step=best] --out=esac.mjx

The file holds the parameters, the resolved config, both vocabularies and
a manifest (`training.model_file`); `sample_main.py --model esac.mjx`
samples it on a machine without the corpus or the checkpoints, and
`--config.init_from=esac.mjx` fine-tunes it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from absl import flags

from melodyjax import cli

PROG = "melodyjax-export"
FLAGS = cli.tool_flags()
flags.DEFINE_string("workdir", None, "A trained run.", flag_values=FLAGS)
flags.DEFINE_string(
  "step", "best", "'best', 'latest' or a step number.", flag_values=FLAGS
)
flags.DEFINE_string(
  "out", None, "The model file to write (.mjx).", flag_values=FLAGS
)
flags.DEFINE_enum(
  "dtype",
  "float32",
  ["float32", "bfloat16"],
  "Parameter storage (bfloat16: half the size, rounded).",
  flag_values=FLAGS,
)
flags.mark_flags_as_required(["workdir", "out"], flag_values=FLAGS)


def main(argv: Sequence[str] | None = None) -> int:
  """Writes the model file and prints its manifest; the exit status."""
  prog = cli.tool_prog(PROG, argv)
  cli.parse_flags(cli.tool_argv(prog, argv), FLAGS)
  with cli.user_errors(prog, FLAGS, sigterm=True):
    import jax
    import numpy as np

    from melodyjax import errors
    from melodyjax.training import metrics as metrics_lib
    from melodyjax.training import model_file, runs

    out = os.path.abspath(os.path.expanduser(FLAGS.out))
    if not out.endswith(model_file.SUFFIX):
      raise errors.UsageError(f"--out must end with {model_file.SUFFIX}: {out}")
    if not os.path.isdir(os.path.dirname(out)):
      raise errors.UsageError(f"--out: no folder {os.path.dirname(out)}")
    run = runs.from_workdir(FLAGS.workdir, FLAGS.step)
    bits = [
      r["eval/bits_per_note"]
      for r in metrics_lib.read_metrics(run.workdir)
      if r.get("step") == run.step and "eval/bits_per_note" in r
    ]
    manifest = model_file.write(
      out,
      config=run.config,
      pitch_vocab=run.pitch_vocab,
      duration_vocab=run.duration_vocab,
      params=jax.tree.map(np.asarray, run.params),
      step=run.step,
      bits_per_note=bits[-1] if bits else None,
      dtype=FLAGS.dtype,
      label_vocabs=run.labels,
    )
  size = os.path.getsize(out)
  print(
    f"{out}: step {manifest['step']}, {manifest['num_params']:,} parameters "
    f"({manifest['dtype']}), {size / 2**20:.1f} MiB, sha256 "
    f"{manifest['params_sha256'][:12]}"
  )
  return 0


if __name__ == "__main__":
  sys.exit(main())
