"""Sampling speed: notes per second after compilation, scan vs window mode.

  .venv/bin/python -m benchmarks.bench_sample [--workdir RUN]

Generates 1 and 64 melodies of 256 notes with the reference model (random
parameters of the right shapes, or a trained run with --workdir), in the
carried-state scan mode (also with the short-term model of the melody so
far mixed into both heads, `--short_term`: PPM of order 4, weight 0.2) and
in the reference generator's window mode, and prints notes/s.
Targets on the 2-core CPU: 20,000 notes/s for 1 melody, 70,000 for 64.
"""

import argparse
import statistics
import time

if __name__ == "__main__":
  from melodyjax.cli import runtime

  # Before JAX allocates anything; MELODYJAX_MALLOC=system opts out.
  runtime.reexec_with_fast_malloc()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from benchmarks import results  # noqa: E402
from melodyjax.model import model as model_lib  # noqa: E402
from melodyjax.sampling import draw, sampler  # noqa: E402


def time_call(fn, repeats):
  jax.block_until_ready(fn(0))  # compile and warm up
  times = []
  for i in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(i + 1))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", help="a trained run (default: random)")
  parser.add_argument("--num_notes", type=int, default=256)
  parser.add_argument("--seq_len", type=int, default=64)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--out", default=results.DEFAULT_PATH)
  args = parser.parse_args()
  if args.workdir:
    from melodyjax.training import runs

    run = runs.from_workdir(args.workdir, "best")
    model, params = run.model, run.params
  else:
    model = model_lib.MelodyModel(model_lib.ModelConfig(49, 42))
    dummy = jnp.zeros((1, 4), jnp.int32)
    params = model.init(jax.random.key(0), dummy, dummy)
  settings = draw.make_settings(1.0)
  short_term = draw.make_settings(1.0, short_term=0.2)
  rows = []
  for batch in (1, 64):
    primer = (jnp.zeros((batch, 1), jnp.int32),) * 2 + (
      jnp.zeros(batch, jnp.int32),
    )
    for mode in ("scan", "scan_short_term", "window"):
      if mode.startswith("scan"):
        memory = mode == "scan_short_term"
        fn = lambda i, primer=primer, memory=memory: sampler.sample(  # noqa: E731
          model,
          params,
          *primer,
          jax.random.key(i),
          short_term if memory else settings,
          num_notes=args.num_notes,
          short_term_order=(4, 4) if memory else None,
        )
      else:
        fn = lambda i, primer=primer: sampler.sample_window(  # noqa: E731
          model,
          params,
          *primer,
          jax.random.key(i),
          settings,
          num_notes=args.num_notes,
          seq_len=args.seq_len,
        )
      seconds = time_call(fn, 1 if mode == "window" else args.repeats)
      rate = batch * args.num_notes / seconds
      rows.append(
        (f"sample_{mode}_{batch}_melodies_notes_per_s", rate, "notes/s")
      )
      print(
        f"{mode:15s} {batch:3d} melodies x {args.num_notes} notes: "
        f"{rate:10.0f} notes/s ({seconds * 1000:.1f} ms)",
        flush=True,
      )
  results.merge(args.out, rows)


if __name__ == "__main__":
  main()
