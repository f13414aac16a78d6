"""Generates melodies from a trained workdir and writes MIDI files.

  python sample_main.py --workdir=runs/esac_cpu --num_outputs=8 \
    --num_notes=128 --temperature=0.9 --primer="C4:1 D4:0.5 E4:0.5"

Writes sample_<step>_<i>.mid, a .json sidecar (tokens and every setting
needed to regenerate it), a piano-roll .png and a .wav preview into
--output_dir (default: WORKDIR/samples/<step>, and then the workdir's
audition page is rewritten).
"""

import os
import sys

from absl import app, flags

from melodyjax import cli

PROG = "sample_main.py"
FLAGS = flags.FLAGS
# allow_override: train_main defines --workdir too, and tests import both.
flags.DEFINE_string(
  "workdir",
  None,
  "Run folder written by train_main.py.",
  allow_override=True,
)
flags.DEFINE_string("step", "latest", "'latest', 'best' or a step number.")
flags.DEFINE_string("output_dir", None, "Default: WORKDIR/samples/<step>.")
flags.DEFINE_integer("num_outputs", 4, "Melodies to generate.")
flags.DEFINE_integer(
  "num_notes",
  128,
  "Events generated after the primer "
  "at most (a melody also stops at end-of-song).",
)
flags.DEFINE_list("temperature", ["1.0"], "One value, or pitch,duration.")
flags.DEFINE_list(
  "top_k",
  ["0"],
  "Keep the k likeliest tokens (0: all); one value or pitch,duration.",
)
flags.DEFINE_list(
  "top_p", ["1.0"], "Nucleus mass (1: all); one value or pitch,duration."
)
flags.DEFINE_integer("seed", 0, "Same seed and settings give the same notes.")
flags.DEFINE_string("primer", "", "Events such as 'C4:1 D4:0.5 R:0.5'.")
flags.DEFINE_string("primer_midi", None, "A MIDI file to continue.")
flags.DEFINE_enum(
  "mode",
  "scan",
  ["scan", "window"],
  "'scan' carries the LSTM state; 'window' re-reads the last "
  "seq_len events per note, as the seed did.",
)
flags.DEFINE_integer(
  "max_primer_notes",
  64,
  "Primer capacity (one compilation serves every primer up to this length).",
)
flags.DEFINE_float("tempo", 100.0, "Quarter notes per minute.")
flags.DEFINE_string("time_signature", "4/4", "Written to the MIDI file.")
flags.DEFINE_integer("program", 0, "General MIDI program (0: piano).")
flags.DEFINE_integer("velocity", 80, "Note velocity, 1-127.")
flags.DEFINE_bool("piano_roll", True, "Also write a piano-roll PNG.")
flags.DEFINE_bool("wav", True, "Also write a WAV preview.")
flags.mark_flags_as_required(["workdir"])


def _pair(values, kind, name):
  try:
    parsed = [kind(v) for v in values]
  except ValueError:
    joined = ",".join(values)
    raise cli.UsageError(f"--{name}: not a number: {joined}") from None
  if len(parsed) not in (1, 2):
    raise cli.UsageError(f"--{name} takes one value or pitch,duration")
  return parsed if len(parsed) == 2 else parsed * 2


def check_flags() -> dict:
  """The sampling flags, checked before the (slow) model restore.

  Returns:
    temperature, top_k, top_p (each [pitch, duration]) and time_signature.

  Raises:
    cli.UsageError: the first bad flag, by name.
  """
  temperature = _pair(FLAGS.temperature, float, "temperature")
  top_k = _pair(FLAGS.top_k, int, "top_k")
  top_p = _pair(FLAGS.top_p, float, "top_p")
  if min(temperature) <= 0:
    raise cli.UsageError(
      f"--temperature must be > 0, got {','.join(FLAGS.temperature)} "
      "(lower values are more conservative; try 0.8)"
    )
  if not all(0 < p <= 1 for p in top_p):
    raise cli.UsageError(
      f"--top_p must be in (0, 1], got {','.join(FLAGS.top_p)} "
      "(1 keeps every token)"
    )
  if min(top_k) < 0:
    raise cli.UsageError(
      f"--top_k must be >= 0 (0 keeps every token), got {','.join(FLAGS.top_k)}"
    )
  for name in ("num_outputs", "num_notes", "max_primer_notes"):
    if FLAGS[name].value < 1:
      raise cli.UsageError(f"--{name} must be >= 1, got {FLAGS[name].value}")
  try:
    numerator, denominator = (int(x) for x in FLAGS.time_signature.split("/"))
  except ValueError:
    raise cli.UsageError(
      f"--time_signature must look like 3/4, got {FLAGS.time_signature!r}"
    ) from None
  if numerator < 1 or denominator not in (1, 2, 4, 8, 16, 32):
    raise cli.UsageError(
      f"--time_signature {FLAGS.time_signature}: the numerator must be >= 1 "
      "and the denominator a power of two up to 32"
    )
  if not FLAGS.tempo > 0:
    raise cli.UsageError(
      f"--tempo must be > 0 (quarters per minute), got {FLAGS.tempo}"
    )
  if not 1 <= FLAGS.velocity <= 127:
    raise cli.UsageError(f"--velocity must be 1-127, got {FLAGS.velocity}")
  if not 0 <= FLAGS.program <= 127:
    raise cli.UsageError(f"--program must be 0-127, got {FLAGS.program}")
  if FLAGS.primer_midi and FLAGS.primer:
    raise cli.UsageError("give --primer or --primer_midi, not both")
  if FLAGS.primer_midi and not os.path.isfile(FLAGS.primer_midi):
    raise cli.UsageError(f"primer MIDI not found: {FLAGS.primer_midi}")
  if FLAGS.output_dir and os.path.exists(FLAGS.output_dir):
    if not os.path.isdir(FLAGS.output_dir):
      raise cli.UsageError(
        f"--output_dir {FLAGS.output_dir} is a file, not a folder"
      )
  return {
    "temperature": temperature,
    "top_k": top_k,
    "top_p": top_p,
    "time_signature": (numerator, denominator),
  }


def main(argv):
  if len(argv) > 1:
    cli.fail(PROG, f"unexpected arguments: {' '.join(argv[1:])}")

  with cli.user_errors(PROG):
    checked = check_flags()
    temperature = checked["temperature"]
    top_k = checked["top_k"]
    top_p = checked["top_p"]
    numerator, denominator = checked["time_signature"]
    from melodyjax.listening import (  # pylint: disable=g-import-not-at-top
      outputs,
      page,
    )
    from melodyjax.sampling import generate  # pylint: disable=g-import-not-at-top

    if FLAGS.primer:  # before the restore: a typo costs no waiting
      generate.parse_primer_text(FLAGS.primer)
    run = generate.load_run(FLAGS.workdir, FLAGS.step)
    if FLAGS.primer_midi:
      primer = generate.read_primer_midi(FLAGS.primer_midi, run)
      if not primer:
        raise generate.GenerateError(f"{FLAGS.primer_midi}: no notes")
      source = FLAGS.primer_midi
    else:
      primer = generate.parse_primer_text(FLAGS.primer)
      source = "--primer"
    melodies = generate.generate(
      run,
      num_outputs=FLAGS.num_outputs,
      num_notes=FLAGS.num_notes,
      primer=primer,
      primer_source=source,
      temperature=temperature,
      top_k=top_k,
      top_p=top_p,
      seed=FLAGS.seed,
      mode=FLAGS.mode,
      max_primer_notes=FLAGS.max_primer_notes,
    )
    output_dir = FLAGS.output_dir or os.path.join(
      run.workdir, "samples", str(run.step)
    )
    settings = {
      "workdir": run.workdir,
      "seed": FLAGS.seed,
      "num_outputs": FLAGS.num_outputs,
      "num_notes": FLAGS.num_notes,
      "temperature": temperature,
      "top_k": top_k,
      "top_p": top_p,
      "mode": FLAGS.mode,
      "primer": FLAGS.primer,
      "primer_midi": FLAGS.primer_midi,
      "max_primer_notes": FLAGS.max_primer_notes,
    }
    paths = outputs.write_outputs(
      melodies,
      output_dir,
      step=run.step,
      settings=settings,
      tempo_bpm=FLAGS.tempo,
      time_signature=(numerator, denominator),
      program=FLAGS.program,
      velocity=FLAGS.velocity,
      key_signature="C" if run.config.data.normalize_key else None,
      piano_roll=FLAGS.piano_roll,
      wav=FLAGS.wav,
    )
    workdir = os.path.join(run.workdir, "")
    if os.path.abspath(output_dir).startswith(workdir):
      page.write_page(run.workdir)
    lengths = [len(m) for m in melodies]
    print(
      f"step {run.step}: wrote {len(paths)} melodies "
      f"({min(lengths)}-{max(lengths)} events) to {output_dir}"
    )


if __name__ == "__main__":
  from melodyjax.cli import runtime

  runtime.reexec_with_fast_malloc()
  sys.exit(app.run(main, flags_parser=cli.parse_flags))
