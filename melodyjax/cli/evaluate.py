"""`melodyjax-evaluate` (also `python -m melodyjax.cli.evaluate`): score a
run on its test split against the n-gram baseline, compare generated
melodies with the corpus, and write its report.

  melodyjax-evaluate --workdir=runs/esac_cpu [--step=best]

On another corpus (tokenized with the run's vocabularies; the report in
`WORKDIR/cross/NAME/`):

  melodyjax-evaluate --workdir=runs/esac_cpu --dataset_dir=D
  melodyjax-evaluate --workdir=runs/esac_cpu --midi_dir=FOLDER
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from absl import flags

from melodyjax import cli
from melodyjax.sampling import request as request_lib

PROG = "melodyjax-evaluate"
FLAGS = cli.tool_flags()
flags.DEFINE_string("workdir", None, "A trained run.", flag_values=FLAGS)
flags.DEFINE_string(
  "step", "latest", "'latest', 'best' or a step number.", flag_values=FLAGS
)
flags.DEFINE_string(
  "output_dir", None, "Default: the workdir.", flag_values=FLAGS
)
flags.DEFINE_integer(
  "num_samples",
  100,
  "Melodies generated for the statistics.",
  flag_values=FLAGS,
)
flags.DEFINE_integer(
  "num_notes", 256, "Events per generated melody at most.", flag_values=FLAGS
)
flags.DEFINE_float(
  "temperature",
  1.0,
  "Temperature of the generated melodies.",
  flag_values=FLAGS,
)
flags.DEFINE_integer(
  "max_order", 12, "Highest n-gram order tried.", flag_values=FLAGS
)
flags.DEFINE_integer(
  "seed", 0, "Seed of the generated melodies.", flag_values=FLAGS
)
flags.DEFINE_string(
  "dataset_dir",
  None,
  "Score on this built dataset (another corpus) instead of the run's.",
  flag_values=FLAGS,
)
flags.DEFINE_string(
  "midi_dir",
  None,
  "Score on this MIDI folder (built and cached first) instead of the run's.",
  flag_values=FLAGS,
)
flags.DEFINE_bool(
  "memory",
  False,
  "Also score the memories of the song (dynamic evaluation, the neural "
  "cache, the short-term model; each tuned on validation) on test.",
  flag_values=FLAGS,
)
cli.define_short_term_flags(
  FLAGS,
  "The generated melodies' short-term model weight (sample_main.py's "
  "--short_term); one value or pitch,duration.",
)
flags.mark_flags_as_required(["workdir"], flag_values=FLAGS)


def main(argv: Sequence[str] | None = None) -> int:
  """Scores the run and prints the headline numbers; the exit status."""
  prog = cli.tool_prog(PROG, argv)
  cli.parse_flags(cli.tool_argv(prog, argv), FLAGS)
  with cli.user_errors(prog, FLAGS, sigterm=True):
    short_term = cli.pair_flag(FLAGS, "short_term", float)
    short_term_order = cli.pair_flag(FLAGS, "short_term_order", int)
    request_lib.check_values(
      {
        "num_outputs": FLAGS.num_samples,
        "num_notes": FLAGS.num_notes,
        "temperature": FLAGS.temperature,
        "seed": FLAGS.seed,
        "short_term": short_term,
        "short_term_order": short_term_order,
      },
      name=lambda field: (
        "--num_samples" if field == "num_outputs" else f"--{field}"
      ),
    )
    from melodyjax.evaluation import report

    result = report.evaluate_run(
      FLAGS.workdir,
      step=FLAGS.step,
      output_dir=FLAGS.output_dir,
      num_samples=FLAGS.num_samples,
      num_notes=FLAGS.num_notes,
      temperature=FLAGS.temperature,
      max_order=FLAGS.max_order,
      seed=FLAGS.seed,
      log=lambda m: print(m, file=sys.stderr),
      dataset_dir=FLAGS.dataset_dir,
      midi_dir=FLAGS.midi_dir,
      memory=FLAGS.memory,
      short_term=short_term,
      short_term_order=short_term_order,
    )
  m = result["model"]
  if result["corpus"] is not None:
    print(f"corpus: {result['corpus']['midi_dir']} (the run's vocabularies)")
  print(
    f"test bits/note: model {m['bits_per_note']:.3f} (pitch "
    f"{m['bits_per_note_pitch']:.3f}, duration "
    f"{m['bits_per_note_duration']:.3f})"
  )
  for name, n in result["baselines"].items():
    print(
      f"  baseline {name}: {n['bits_per_note']:.3f} (pitch "
      f"{n['bits_per_note_pitch']:.3f}, duration "
      f"{n['bits_per_note_duration']:.3f})"
      + ("  <- the baseline" if name == result["best_baseline"] else "")
    )
  if result["labelled_baselines"] is not None:
    best = result["labelled_baselines"]["best"]
    print(
      f"  baseline best given the labels {', '.join(result['baseline_labels'])}"
      f": {best['bits_per_note']:.3f} (pitch {best['bits_per_note_pitch']:.3f}"
      f", duration {best['bits_per_note_duration']:.3f})"
    )
    print(
      "model / baseline without labels: "
      f"{result['vs_best_baseline_without_labels']:.3f}"
    )
  print(
    f"model / baseline (the same information): {result['vs_best_baseline']:.3f}"
  )
  for name, ratio in (
    (result["memory"] or {}).get("vs_best_baseline", {}).items()
  ):
    bits = result["memory"]["scores"][name]["bits_per_note"]
    print(f"  memory {name}: {bits:.3f}, {ratio:.3f}x the best baseline")
  print(f"report: {result['report']}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
