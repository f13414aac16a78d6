"""`sample_main.py` (also `melodyjax-sample`): melodies from a trained run.

  python sample_main.py --workdir=runs/esac_cpu --num_outputs=8 \
    --num_notes=128 --temperature=0.9 --primer="C4:1 D4:0.5 E4:0.5"

Writes sample_<step>_<i>.mid, a .json sidecar (tokens and every setting
needed to regenerate it), a piano-roll .png and a .wav preview into
--output_dir (default: WORKDIR/samples/<step>, and then the workdir's
audition page is rewritten). `--model NAME.mjx` samples a model file
(`melodyjax-export`) instead of a workdir: the same melodies for the same
seed and settings (default output folder: NAME_samples/).
"""

import os
import sys
from collections.abc import Sequence

from absl import flags

from melodyjax import cli, errors
from melodyjax.sampling import request as request_lib

PROG = "sample_main.py"
FLAGS = cli.tool_flags()
flags.DEFINE_string(
  "workdir", None, "Run folder written by train_main.py.", flag_values=FLAGS
)
flags.DEFINE_string(
  "model",
  None,
  "A model file written by melodyjax-export, instead of --workdir.",
  flag_values=FLAGS,
)
flags.DEFINE_string(
  "step", "latest", "'latest', 'best' or a step number.", flag_values=FLAGS
)
flags.DEFINE_string(
  "output_dir", None, "Default: WORKDIR/samples/<step>.", flag_values=FLAGS
)
flags.DEFINE_integer(
  "num_outputs", 4, "Melodies to generate.", flag_values=FLAGS
)
flags.DEFINE_integer(
  "num_notes",
  128,
  "Events generated after the primer "
  "at most (a melody also stops at end-of-song).",
  flag_values=FLAGS,
)
flags.DEFINE_list(
  "temperature", ["1.0"], "One value, or pitch,duration.", flag_values=FLAGS
)
flags.DEFINE_list(
  "top_k",
  ["0"],
  "Keep the k likeliest tokens (0: all); one value or pitch,duration.",
  flag_values=FLAGS,
)
flags.DEFINE_list(
  "top_p",
  ["1.0"],
  "Nucleus mass (1: all); one value or pitch,duration.",
  flag_values=FLAGS,
)
cli.define_short_term_flags(
  FLAGS,
  "Weight of the short-term model of the melody so far (PPM, primer "
  "included) where it is confident (relative entropy under 1/2), in "
  "[0, 1), 0: none; one value or pitch,duration.",
)
flags.DEFINE_integer(
  "seed", 0, "Same seed and settings give the same notes.", flag_values=FLAGS
)
flags.DEFINE_string(
  "primer", "", "Events such as 'C4:1 D4:0.5 R:0.5'.", flag_values=FLAGS
)
flags.DEFINE_string(
  "primer_midi", None, "A MIDI file to continue.", flag_values=FLAGS
)
flags.DEFINE_string(
  "sampler",
  "scan",
  "'scan' carries the LSTM state; 'window' re-reads the last "
  "seq_len events per note, as the reference generator does.",
  flag_values=FLAGS,
)
flags.DEFINE_string(
  "mode",
  "",
  "major or minor (a mode-conditioned run; default: its most common).",
  flag_values=FLAGS,
)
flags.DEFINE_string(
  "style",
  "",
  "A style label of a style-conditioned run (default: its most common).",
  flag_values=FLAGS,
)
flags.DEFINE_string(
  "key",
  "",
  "Tonic to transpose the output to, e.g. D, F#, Bb (default: "
  "the normalised key, C major / A minor).",
  flag_values=FLAGS,
)
flags.DEFINE_integer(
  "bars", 0, "Stop at the end of this bar (0: no limit).", flag_values=FLAGS
)
flags.DEFINE_bool(
  "end_on_tonic", False, "The last note is the tonic.", flag_values=FLAGS
)
flags.DEFINE_integer(
  "beam_size", 1, "Beam search: melodies kept per step.", flag_values=FLAGS
)
flags.DEFINE_integer(
  "branch_factor",
  1,
  "Beam search: sampled continuations of each kept one.",
  flag_values=FLAGS,
)
flags.DEFINE_integer(
  "steps_per_iteration",
  1,
  "Beam search: events sampled between prunings.",
  flag_values=FLAGS,
)
flags.DEFINE_integer(
  "best_of",
  1,
  "Sample this many per melody and keep the likeliest.",
  flag_values=FLAGS,
)
flags.DEFINE_integer(
  "max_primer_notes",
  64,
  "Primer capacity (one compilation serves every primer up to this length).",
  flag_values=FLAGS,
)
flags.DEFINE_float(
  "tempo", 100.0, "Quarter notes per minute.", flag_values=FLAGS
)
flags.DEFINE_string(
  "time_signature",
  "",
  "E.g. 3/4: the bars (--bars), the MIDI file, and the metre of a "
  "metre-conditioned run (default: its most common; else 4/4).",
  flag_values=FLAGS,
)
flags.DEFINE_integer(
  "program", 0, "General MIDI program (0: piano).", flag_values=FLAGS
)
flags.DEFINE_integer("velocity", 80, "Note velocity, 1-127.", flag_values=FLAGS)
flags.DEFINE_bool(
  "piano_roll", True, "Also write a piano-roll PNG.", flag_values=FLAGS
)
flags.DEFINE_bool("wav", True, "Also write a WAV preview.", flag_values=FLAGS)
flags.DEFINE_bool(
  "abc", True, "Also write the melody as ABC notation.", flag_values=FLAGS
)


def _pair(name: str, kind) -> list:
  return list(cli.pair_flag(FLAGS, name, kind))


def _check_time_signature() -> None:
  from melodyjax.music import metre

  if FLAGS.time_signature:
    try:
      metre.parse_signature(FLAGS.time_signature)
    except ValueError as e:
      raise errors.UsageError(f"--time_signature {e}") from None


def check_flags():
  """The flags as a (request.Request, outputs.Rendering), checked before
  the (slow) model restore.

  Raises:
    UsageError, ConfigError: the first bad flag, by name.
  """
  from melodyjax.listening import outputs

  _check_source()
  _check_sampler()
  request = request_lib.Request(
    num_outputs=FLAGS.num_outputs,
    num_notes=FLAGS.num_notes,
    temperature=_pair("temperature", float),
    top_k=_pair("top_k", int),
    top_p=_pair("top_p", float),
    short_term=_pair("short_term", float),
    short_term_order=_pair("short_term_order", int),
    seed=FLAGS.seed,
    sampler=FLAGS.sampler,
    max_primer_notes=FLAGS.max_primer_notes,
    primer=FLAGS.primer,
    primer_midi=FLAGS.primer_midi,
    **{name: FLAGS[name].value for name in request_lib.CONTROLS},
  )
  request_lib.check_values(
    {
      name: getattr(request, name)
      for name in (
        "temperature",
        "top_p",
        "top_k",
        "short_term",
        "short_term_order",
        "sampler",
        "num_outputs",
        "num_notes",
        "max_primer_notes",
        "seed",
        *request_lib.CONTROLS,
      )
    },
    shown={n: ",".join(FLAGS[n].value) for n in request_lib.PAIRS},
  )
  _check_time_signature()
  _check_files_and_sound()
  rendering = outputs.Rendering(
    tempo_bpm=FLAGS.tempo,
    program=FLAGS.program,
    velocity=FLAGS.velocity,
    piano_roll=FLAGS.piano_roll,
    wav=FLAGS.wav,
    abc=FLAGS.abc,
  )
  return request, rendering


def _check_source() -> None:
  """--workdir or --model, and --step only with a workdir."""
  if bool(FLAGS.workdir) == bool(FLAGS.model):
    raise errors.UsageError(
      "--workdir is required (or --model FILE.mjx instead), not both"
      if FLAGS.workdir
      else "--workdir is required (or --model FILE.mjx instead)"
    )
  if FLAGS.model and FLAGS["step"].present:
    raise errors.UsageError(
      "--step applies to --workdir: a model file holds one step"
    )


def _check_sampler() -> None:
  """--sampler, with a hint for the old meaning of --mode."""
  if FLAGS.sampler not in request_lib.SAMPLERS:
    raise errors.UsageError(
      f"--sampler must be 'scan' or 'window', got {FLAGS.sampler!r}"
      + (
        " (--mode now names the musical mode: --mode=major|minor)"
        if FLAGS.sampler in request_lib.MODES
        else ""
      )
    )
  if FLAGS.mode in request_lib.SAMPLERS:
    raise errors.UsageError(
      f"--mode={FLAGS.mode}: --mode is now major or minor; the sampler is "
      f"--sampler={FLAGS.mode}"
    )


def _check_files_and_sound() -> None:
  """Tempo, velocity, program, the primer file and the output folder."""
  request_lib.check_sound(FLAGS.tempo, FLAGS.program, FLAGS.velocity)
  if FLAGS.primer_midi and FLAGS.primer:
    raise errors.UsageError("give --primer or --primer_midi, not both")
  if FLAGS.primer_midi and not os.path.isfile(FLAGS.primer_midi):
    raise errors.UsageError(f"primer MIDI not found: {FLAGS.primer_midi}")
  if FLAGS.output_dir and os.path.exists(FLAGS.output_dir):
    if not os.path.isdir(FLAGS.output_dir):
      raise errors.UsageError(
        f"--output_dir {FLAGS.output_dir} is a file, not a folder"
      )


def _primer(run, request):
  """(events, source) of the primer flag given, key-normalised."""
  from melodyjax.sampling import generate

  if request.primer_midi:
    events = generate.read_primer_midi(request.primer_midi, run)
    if not events:
      raise errors.GenerateError(f"{request.primer_midi}: no notes")
    return events, request.primer_midi
  return generate.parse_primer_text(request.primer), "--primer"


def main(argv: Sequence[str] | None = None) -> int:
  """Samples the melodies the flags ask for; the exit status.

  Args:
    argv: the flags, without a program name (default: sys.argv's).
  """
  prog = cli.tool_prog(PROG, argv)
  rest = cli.parse_flags(cli.tool_argv(prog, argv), FLAGS)
  if len(rest) > 1:
    cli.fail(prog, f"unexpected arguments: {' '.join(rest[1:])}")
  with cli.user_errors(prog, FLAGS, sigterm=True):
    import dataclasses

    from melodyjax.listening import outputs, page
    from melodyjax.sampling import generate, plan
    from melodyjax.training import runs
    from melodyjax.training import workdir as workdir_lib

    request, rendering = check_flags()
    if request.primer:  # before the restore: a typo costs no waiting
      generate.parse_primer_text(request.primer)
    if FLAGS.model:
      run = runs.from_model_file(FLAGS.model)
      default_dir = os.path.splitext(run.model_path)[0] + "_samples"
    else:
      run = runs.from_workdir(FLAGS.workdir, FLAGS.step)
      default_dir = workdir_lib.samples_dir(run.workdir, run.step)
    primer, source = _primer(run, request)
    resolved = plan.make_plan(run, request)  # before sampling: fails fast
    melodies = generate.generate(run, request, primer, source)
    grid = run.config.data.grid
    met = [plan.outcome(resolved, request, m, grid) for m in melodies]
    output_dir = FLAGS.output_dir or default_dir
    paths = outputs.write_outputs(
      melodies,
      output_dir,
      step=run.step,
      workdir=run.workdir,
      model_path=run.model_path,
      request=request,
      rendering=dataclasses.replace(
        rendering,
        time_signature=resolved.time_signature,
        key_signature=plan.key_signature(
          resolved, run.config.data.normalize_key
        ),
      ),
      outcomes=met,
    )
    if run.workdir and workdir_lib.is_inside(output_dir, run.workdir):
      page.write_page(run.workdir)
    lengths = [len(m) for m in melodies]
    print(
      f"step {run.step}: wrote {len(paths)} melodies "
      f"({min(lengths)}-{max(lengths)} events) to {output_dir}"
    )
    for line in _unmet(met, request):
      print(f"{prog}: {line}")
  return 0


def _unmet(met, request) -> list[str]:
  """What some melodies did not meet of the request's promises."""
  lines = []
  short = sum(not m.get("bars_met", True) for m in met)
  if short:
    lines.append(
      f"{short} of {len(met)} melodies ran out of --num_notes="
      f"{request.num_notes} events before the end of bar {request.bars} "
      "(their sidecars say how many bars they have; raise --num_notes)"
    )
  off = sum(not m.get("ends_on_tonic", True) for m in met)
  if off:
    lines.append(f"{off} of {len(met)} melodies do not end on the tonic")
  return lines


def run() -> None:
  """The console script: fast allocator, flags, main."""
  from melodyjax.cli import runtime

  runtime.reexec_with_fast_malloc()
  sys.exit(main())


if __name__ == "__main__":
  run()
