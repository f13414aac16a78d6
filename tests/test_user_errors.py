"""Every user mistake: one line naming it, exit status 2, nothing lost.

The table below is the catalogue of docs/errors.md. The mains run in this
process (a subprocess costs seconds of JAX start-up per case); a few true
subprocess runs check the real entry points, `--debug` and the corpus CLI.
"""

import contextlib
import dataclasses
import hashlib
import itertools
import os
import re
import shutil
from collections.abc import Callable
from fractions import Fraction as F
from unittest import mock

import pytest

import sample_main
import train_main
from configs import tiny
from melodyjax.cli import convert as convert_cli
from melodyjax.cli import corpus as corpus_cli
from melodyjax.cli import evaluate as evaluate_cli
from melodyjax.data import build
from melodyjax.data import config as data_config_lib
from melodyjax.music import midi_io
from melodyjax.music.events import Event
from melodyjax.training import checkpoints, loop
from melodyjax.training import workdir as workdir_lib
from tests.helpers import PROJECT, run_python, write_tunes

DOC = os.path.join(PROJECT, "docs", "errors.md")
MAINS = {
  "train": train_main,
  "sample": sample_main,
  "evaluate": evaluate_cli,
  "convert": convert_cli,
  "corpus": corpus_cli,
}


@dataclasses.dataclass
class Context:
  """Paths a case builds its arguments from."""

  tmp: str
  midi: str  # a good corpus of 24 tunes
  data: str  # its built dataset
  trained: str  # a trained workdir (read-only: copy it with `run()`)
  stack: contextlib.ExitStack

  def run(self) -> str:
    """A fresh copy of the trained workdir."""
    path = os.path.join(self.tmp, "run")
    if not os.path.exists(path):
      shutil.copytree(self.trained, path)
    return path

  def train(self, *args, workdir=None) -> list[str]:
    return [
      "--config=configs/tiny.py",
      f"--workdir={workdir or os.path.join(self.tmp, 'w')}",
      f"--config.data.midi_dir={self.midi}",
      f"--config.data.dataset_dir={self.data}",
      "--config.train.num_train_steps=10",
      *args,
    ]

  def folder(self, name: str, files: dict[str, bytes] | None = None) -> str:
    path = os.path.join(self.tmp, name)
    os.makedirs(path, exist_ok=True)
    for file_name, data in (files or {}).items():
      with open(os.path.join(path, file_name), "wb") as f:
        f.write(data)
    return path

  def file(self, name: str, data: bytes = b"x") -> str:
    path = os.path.join(self.tmp, name)
    with open(path, "wb") as f:
      f.write(data)
    return path


@dataclasses.dataclass
class Case:
  id: str
  main: str  # 'train' or 'sample'
  mistake: str
  argv: Callable[[Context], list[str]]
  message: str  # a part of the one error line


def _silent_midi(ctx):
  path = os.path.join(ctx.tmp, "silent.mid")
  midi_io.write_midi([Event((), 1)], path)
  return path


def _unwritable(ctx):
  """A path this user cannot create, or skip with the reason."""
  if os.geteuid() != 0:
    parent = ctx.folder("locked")
    os.chmod(parent, 0o500)
    ctx.stack.callback(os.chmod, parent, 0o700)
    return os.path.join(parent, "w")
  # root ignores file modes; sysfs refuses new entries even to root.
  path = "/sys/melodyjax_workdir"
  try:
    os.makedirs(path)
  except PermissionError:
    return path
  except OSError:
    pass
  else:
    os.rmdir(path)
  pytest.skip("root, and no path here refuses root with EPERM")


def _unreadable(ctx):
  """A file this user cannot read, or skip with the reason."""
  if os.geteuid() != 0:
    path = ctx.file("locked.mid", b"MThd")
    os.chmod(path, 0)
    ctx.stack.callback(os.chmod, path, 0o600)
    return path
  # root reads every file mode; a write-only procfs file refuses it.
  path = "/proc/sys/vm/drop_caches"
  try:
    with open(path, "rb"):
      pass
  except PermissionError:
    return path
  except OSError:
    pass
  pytest.skip("root, and no file here refuses root with EACCES")


def _damage_all(ctx):
  run = ctx.run()
  for step, item in itertools.product(
    os.listdir(os.path.join(run, "checkpoints")),
    (checkpoints.PARAMS, checkpoints.OPTIMIZER),
  ):
    for root, _, files in os.walk(os.path.join(run, "checkpoints", step, item)):
      for name in files:
        with open(os.path.join(root, name), "r+b") as f:
          f.truncate(0)
  return ctx.train(workdir=run)


def _in_use(ctx):
  run = ctx.run()
  ctx.stack.enter_context(workdir_lib.lock_workdir(run))
  return ctx.train(workdir=run)


def _no_checkpoints(ctx):
  run = ctx.run()
  shutil.rmtree(os.path.join(run, "checkpoints"))
  return [f"--workdir={run}"]


def _finetune(ctx, *args, midi=None):
  """A fine-tuning run of the trained workdir on its own dataset folder."""
  return ctx.train(
    f"--config.init_from={ctx.trained}",
    f"--config.data.dataset_dir={ctx.tmp}/data_ft",
    *((f"--config.data.midi_dir={midi}",) if midi else ()),
    *args,
  )


def _unseen_durations(ctx):
  """A folder of triplet tunes: a duration the trained run never saw."""
  folder = ctx.folder("triplets")
  scale = (60, 62, 64, 65, 67, 69, 71, 72)  # pitches the base has seen
  for i in range(20):
    events = [Event((scale[(i + j) % 8],), F(1, 3)) for j in range(24)]
    midi_io.write_midi(events, os.path.join(folder, f"t{i}.mid"))
  return _finetune(ctx, midi=folder)


def _damaged_model_file(ctx):
  return ctx.file("shared.mjx", b"PK\x03\x04 not a whole zip")


def _other_vocabulary(ctx):
  return ctx.train(
    "--config.data.transpositions=(1, 2)",
    f"--config.data.dataset_dir={ctx.tmp}/data2",
    workdir=ctx.run(),
  )


def _evaluate(ctx, *args):
  """`melodyjax-evaluate` on a copy of the trained run, with the
  dataset cache in the case's folder."""
  ctx.stack.enter_context(
    mock.patch.dict(os.environ, {"MELODYJAX_CACHE": f"{ctx.tmp}/cache"})
  )
  return [f"--workdir={ctx.run()}", *args]


def _built_with(ctx, **settings):
  """The good corpus built with other settings than the run's."""
  out = os.path.join(ctx.tmp, "other_data")
  config = data_config_lib.CorpusConfig(**settings)
  build.build_dataset(ctx.midi, out, config, progress=False)
  return f"--dataset_dir={out}"


def _converted(ctx, *args) -> str:
  """A folder holding the first O'Neill's tunes converted (repeats once)."""
  out = os.path.join(ctx.tmp, "oneills")
  common = ["--corpus=oneills", f"--out={out}", "--limit_files=1"]
  common += ["--limit_tunes=2", "--workers=1", "--no_progress"]
  assert convert_cli.main(common) == 0
  return [*common, *args] if args else out


def _abc(ctx, source: str) -> list[str]:
  """Training on an ABC source, into a dataset folder of its own."""
  return [
    *ctx.train(f"--config.data.abc={source}"),
    f"--config.data.dataset_dir={ctx.tmp}/abc_data",
  ]


def _other_repeats(ctx):
  """Training with data.repeats='play' on a conversion with repeats once."""
  argv = ctx.train("--config.data.repeats=play")
  midi = next(i for i, a in enumerate(argv) if "data.midi_dir" in a)
  argv[midi] = f"--config.data.midi_dir={_converted(ctx)}"
  return argv


def _edited_run(ctx, name: str, text: str) -> list[str]:
  """Sampling a copy of the run whose file `name` was replaced by `text`."""
  run = ctx.run()
  with open(os.path.join(run, name), "w") as f:
    f.write(text)
  return [f"--workdir={run}", "--num_notes=4"]


def _one_tune(ctx):
  folder = ctx.folder("one")
  midi_io.write_midi([Event((60,), 1)] * 8, os.path.join(folder, "a.mid"))
  return f"--midi_dir={folder}"


CASES = [
  # train_main.py: flags and config
  Case(
    "config-missing",
    "train",
    "a config file that does not exist",
    lambda c: ["--config=configs/nope.py", f"--workdir={c.tmp}/w"],
    "cannot load the config file: [Errno 2] No such file or directory",
  ),
  Case(
    "config-typo",
    "train",
    "a misspelled config field",
    lambda c: c.train("--config.train.batch_sise=4"),
    "unknown config field 'batch_sise' (did you mean \"batch_size\"?)",
  ),
  Case(
    "config-type",
    "train",
    "a value of the wrong type",
    lambda c: c.train("--config.train.batch_size=abc"),
    "flag --config.train.batch_size=abc: invalid literal for int()",
  ),
  Case(
    "config-tuple-type",
    "train",
    "a text where a tuple of sizes belongs",
    lambda c: c.train("--config.model.lstm_sizes=abc"),
    "config.model.lstm_sizes must be a tuple of positive integers",
  ),
  Case(
    "batch-zero",
    "train",
    "a zero batch size",
    lambda c: c.train("--config.train.batch_size=0"),
    "config.train.batch_size=0 must be a positive multiple of the 4 devices",
  ),
  Case(
    "batch-negative",
    "train",
    "a negative batch size",
    lambda c: c.train("--config.train.batch_size=-8"),
    "config.train.batch_size=-8 must be a positive multiple of the 4",
  ),
  Case(
    "batch-devices",
    "train",
    "a batch not divisible by the device count",
    lambda c: c.train("--config.train.batch_size=6"),
    "config.train.batch_size=6 must be a positive multiple of the 4",
  ),
  Case(
    "eval-batch-devices",
    "train",
    "an evaluation batch not divisible by the device count",
    lambda c: c.train("--config.eval.batch_size=10"),
    "config.eval.batch_size=10 must be a positive multiple of the 4",
  ),
  Case(
    "steps-zero",
    "train",
    "zero training steps",
    lambda c: c.train("--config.train.num_train_steps=0"),
    "config.train.num_train_steps must be positive",
  ),
  Case(
    "objective-unknown",
    "train",
    "an unknown objective",
    lambda c: c.train("--config.train.objective=every"),
    "config.train.objective must be one of ('all', 'last'), got 'every'",
  ),
  Case(
    "carry-state-objective",
    "train",
    "a carried LSTM state with the reference objective 'last'",
    lambda c: c.train(
      "--config.train.carry_state=True", "--config.train.objective=last"
    ),
    "config.train.carry_state=True needs config.train.objective='all' (the "
    "windows of a song in order), got 'last'",
  ),
  Case(
    "learning-rate",
    "train",
    "a negative learning rate",
    lambda c: c.train("--config.train.learning_rate=-0.001"),
    "config.train.learning_rate must be a number > 0.0, got -0.001",
  ),
  Case(
    "decay-unknown",
    "train",
    "an unknown learning-rate decay",
    lambda c: c.train("--config.train.decay=linear"),
    "config.train.decay must be one of ('cosine', 'constant')",
  ),
  Case(
    "dtype-unknown",
    "train",
    "an unknown compute dtype",
    lambda c: c.train("--config.model.dtype=float8"),
    "config.model.dtype must be one of",
  ),
  Case(
    "polyphony-unknown",
    "train",
    "an unknown data option value",
    lambda c: c.train("--config.data.polyphony=all"),
    "polyphony must be one of ('chord', 'top', 'reject'), got 'all'",
  ),
  Case(
    "fractions",
    "train",
    "validation and test shares that leave no training data",
    lambda c: c.train(
      "--config.data.valid_fraction=0.6", "--config.data.test_fraction=0.5"
    ),
    "valid_fraction and test_fraction must be >= 0 and sum to < 1",
  ),
  Case(
    "workdir-flag-missing",
    "train",
    "no --workdir",
    lambda c: ["--config=configs/tiny.py"],
    "--workdir is required",
  ),
  Case(
    "stray-argument",
    "train",
    "a stray argument",
    lambda c: [*c.train(), "extra"],
    "unexpected arguments: extra",
  ),
  Case(
    "multihost-incomplete",
    "train",
    "half of the multi-host settings",
    lambda c: [*c.train(), "--num_processes=2"],
    "a multi-host run needs --coordinator_address",
  ),
  # train_main.py: corpus
  Case(
    "corpus-missing",
    "train",
    "a corpus folder that does not exist",
    lambda c: c.train(f"--config.data.midi_dir={c.tmp}/nothing"),
    "MIDI folder not found: ",
  ),
  Case(
    "corpus-empty",
    "train",
    "an empty corpus folder",
    lambda c: c.train(f"--config.data.midi_dir={c.folder('empty')}"),
    "no MIDI files (.mid, .midi) found below",
  ),
  Case(
    "corpus-no-midi",
    "train",
    "a corpus folder without MIDI files",
    lambda c: c.train(
      f"--config.data.midi_dir={c.folder('texts', {'a.txt': b'la'})}"
    ),
    "no MIDI files (.mid, .midi) found below",
  ),
  Case(
    "corpus-all-bad",
    "train",
    "a corpus whose every file is unusable",
    lambda c: c.train(
      f"--config.data.midi_dir={c.folder('bad', {'a.mid': b'no'})}",
      f"--config.data.dataset_dir={c.tmp}/bad_data",
    ),
    "no training songs in",
  ),
  Case(
    "data-exclude-not-dataset",
    "train",
    "a dataset to exclude the test songs of that is no built dataset",
    lambda c: c.train(
      f"--config.data.exclude_test_of={c.folder('empty')}",
      f"--config.data.dataset_dir={c.tmp}/pretrain_data",
    ),
    "config.data.exclude_test_of (--exclude_test_of): no complete dataset in",
  ),
  Case(
    "seq-len-too-long",
    "train",
    "seq_len longer than every song",
    lambda c: c.train("--config.train.seq_len=500"),
    "config.train.seq_len=500 is longer than every training song",
  ),
  Case(
    "dataset-dir-file",
    "train",
    "a dataset folder that is a file",
    lambda c: c.train(f"--config.data.dataset_dir={c.file('data_file')}"),
    "cannot create the dataset folder",
  ),
  # train_main.py: workdir
  Case(
    "workdir-file",
    "train",
    "a workdir that is a file",
    lambda c: c.train(workdir=c.file("a_file")),
    "is a file, not a folder: give a folder path",
  ),
  Case(
    "workdir-below-file",
    "train",
    "a workdir below a file",
    lambda c: c.train(workdir=os.path.join(c.file("a_file"), "w")),
    "part of the path is a file",
  ),
  Case(
    "workdir-permission",
    "train",
    "a workdir without write permission",
    lambda c: c.train(workdir=_unwritable(c)),
    "permission denied; choose a folder you can write",
  ),
  Case(
    "workdir-other-model",
    "train",
    "a workdir from another model config",
    lambda c: c.train("--config.model.dense_size=32", workdir=c.run()),
    "holds checkpoints of another model: config.model.dense_size was 16",
  ),
  Case(
    "workdir-other-vocabulary",
    "train",
    "a workdir from another vocabulary",
    _other_vocabulary,
    "differs from the dataset's pitch vocabulary",
  ),
  Case(
    "workdir-other-seed",
    "train",
    "resuming a workdir with another seed",
    lambda c: c.train("--config.seed=1", workdir=c.run()),
    "was trained with seed 0 and batch size 8; the config says 1 and 8",
  ),
  Case(
    "workdir-in-use",
    "train",
    "two runs on one workdir at once",
    _in_use,
    "is in use by another training run",
  ),
  Case(
    "checkpoints-all-damaged",
    "train",
    "a workdir whose every checkpoint is damaged",
    _damage_all,
    "no readable checkpoint in",
  ),
  # sample_main.py
  Case(
    "sample-workdir-missing",
    "sample",
    "a workdir that does not exist",
    lambda c: [f"--workdir={c.tmp}/nothing"],
    "workdir not found: ",
  ),
  Case(
    "sample-not-workdir",
    "sample",
    "a folder that is not a workdir",
    lambda c: [f"--workdir={c.folder('empty')}"],
    "config.json not found: not a melodyjax workdir",
  ),
  Case(
    "sample-no-checkpoint",
    "sample",
    "sampling before any checkpoint",
    _no_checkpoints,
    "no checkpoints in",
  ),
  Case(
    "sample-step-missing",
    "sample",
    "a checkpoint step that does not exist",
    lambda c: [f"--workdir={c.run()}", "--step=999"],
    "no checkpoint at step 999",
  ),
  Case(
    "sample-step-text",
    "sample",
    "a step that is not a number",
    lambda c: [f"--workdir={c.run()}", "--step=last"],
    "--step must be 'latest', 'best' or a number, got 'last'",
  ),
  Case(
    "primer-token",
    "sample",
    "an unknown primer token",
    lambda c: [f"--workdir={c.run()}", "--primer=C4:1 X9:1"],
    "primer event 'X9:1'",
  ),
  Case(
    "primer-form",
    "sample",
    "a primer event without a duration",
    lambda c: [f"--workdir={c.run()}", "--primer=C4"],
    "primer event 'C4' is not PITCH:DURATION (e.g. C4:1, R:0.5)",
  ),
  Case(
    "primer-vocabulary",
    "sample",
    "a primer duration the model never saw",
    lambda c: [f"--workdir={c.run()}", "--primer=C4:0.7"],
    "duration '7/10' is not in this model's vocab",
  ),
  Case(
    "primer-too-long",
    "sample",
    "a primer longer than --max_primer_notes",
    lambda c: [
      f"--workdir={c.run()}",
      "--primer=" + " ".join(["C4:1"] * 5),
      "--max_primer_notes=4",
    ],
    "--primer: 5 events, more than max_primer_notes=4",
  ),
  Case(
    "primer-midi-silent",
    "sample",
    "a primer MIDI with no notes",
    lambda c: [f"--workdir={c.run()}", f"--primer_midi={_silent_midi(c)}"],
    "no notes",
  ),
  Case(
    "primer-midi-missing",
    "sample",
    "a primer MIDI that does not exist",
    lambda c: [f"--workdir={c.run()}", f"--primer_midi={c.tmp}/no.mid"],
    "primer MIDI not found: ",
  ),
  Case(
    "primer-both",
    "sample",
    "both --primer and --primer_midi",
    lambda c: [
      f"--workdir={c.run()}",
      "--primer=C4:1",
      f"--primer_midi={_silent_midi(c)}",
    ],
    "give --primer or --primer_midi, not both",
  ),
  Case(
    "temperature-zero",
    "sample",
    "temperature 0",
    lambda c: [f"--workdir={c.run()}", "--temperature=0"],
    "--temperature must be > 0, got 0",
  ),
  Case(
    "temperature-negative",
    "sample",
    "a negative temperature",
    lambda c: [f"--workdir={c.run()}", "--temperature=1,-0.5"],
    "--temperature must be > 0, got 1,-0.5",
  ),
  Case(
    "temperature-text",
    "sample",
    "a temperature that is not a number",
    lambda c: [f"--workdir={c.run()}", "--temperature=hot"],
    "--temperature: not a number: hot",
  ),
  Case(
    "top-p-zero",
    "sample",
    "top-p 0",
    lambda c: [f"--workdir={c.run()}", "--top_p=0"],
    "--top_p must be in (0, 1], got 0",
  ),
  Case(
    "top-p-above-one",
    "sample",
    "top-p above 1",
    lambda c: [f"--workdir={c.run()}", "--top_p=1.5"],
    "--top_p must be in (0, 1], got 1.5",
  ),
  Case(
    "top-k-negative",
    "sample",
    "a negative top-k",
    lambda c: [f"--workdir={c.run()}", "--top_k=-1"],
    "--top_k must be >= 0 (0 keeps every token), got -1",
  ),
  Case(
    "output-dir-file",
    "sample",
    "an output folder that is a file",
    lambda c: [f"--workdir={c.run()}", f"--output_dir={c.file('out')}"],
    "is a file, not a folder",
  ),
  Case(
    "output-dir-below-file",
    "sample",
    "an output folder below a file",
    lambda c: [
      f"--workdir={c.run()}",
      f"--output_dir={os.path.join(c.file('out'), 'x')}",
      "--num_notes=2",
      "--num_outputs=1",
    ],
    "cannot create the output folder",
  ),
  Case(
    "num-outputs-zero",
    "sample",
    "zero melodies",
    lambda c: [f"--workdir={c.run()}", "--num_outputs=0"],
    "--num_outputs must be >= 1, got 0",
  ),
  Case(
    "num-notes-text",
    "sample",
    "a note count that is not a number",
    lambda c: [f"--workdir={c.run()}", "--num_notes=many"],
    "flag --num_notes=many: invalid literal for int()",
  ),
  Case(
    "time-signature",
    "sample",
    "a malformed time signature",
    lambda c: [f"--workdir={c.run()}", "--time_signature=4-4"],
    "--time_signature must look like 3/4, got '4-4'",
  ),
  Case(
    "mode-was-sampler",
    "sample",
    "the old --mode=window (the sampler is --sampler now)",
    lambda c: [f"--workdir={c.run()}", "--mode=window"],
    "--mode=window: --mode is now major or minor; the sampler is "
    "--sampler=window",
  ),
  Case(
    "style-unconditioned",
    "sample",
    "a style asked of a run trained without style conditioning",
    lambda c: [f"--workdir={c.run()}", "--style=han1"],
    "--style han1: this run was trained without style conditioning "
    "(config.model.condition_style=False)",
  ),
  Case(
    "bars-negative",
    "sample",
    "a negative bar count",
    lambda c: [f"--workdir={c.run()}", "--bars=-1"],
    "--bars must be an integer >= 0, got -1",
  ),
  Case(
    "bars-past-num-notes",
    "sample",
    "more bars than --num_notes can hold",
    lambda c: [f"--workdir={c.run()}", "--bars=100000", "--num_notes=16"],
    "--bars 100,000 in 4/4 needs at least 400,000 events (of the longest "
    "duration that fits a bar), more than --num_notes=16",
  ),
  Case(
    "beam-and-best-of",
    "sample",
    "beam search and best-of together",
    lambda c: [f"--workdir={c.run()}", "--best_of=4", "--beam_size=2"],
    "give --best_of or --beam_size/--branch_factor, not both",
  ),
  Case(
    "key-unknown",
    "sample",
    "a key that is no tonic",
    lambda c: [f"--workdir={c.run()}", "--key=H"],
    "--key H: not a tonic (valid: C, B#, C#, Db, D,",
  ),
  Case(
    "sample-mode-config",
    "train",
    "a mode in the sample group that is neither major nor minor",
    lambda c: c.train("--config.sample.mode=dorian"),
    "config.sample.mode must be major or minor, got 'dorian'",
  ),
  Case(
    "velocity",
    "sample",
    "a velocity above 127",
    lambda c: [f"--workdir={c.run()}", "--velocity=200"],
    "--velocity must be 1-127, got 200",
  ),
  Case(
    "tempo",
    "sample",
    "tempo 0",
    lambda c: [f"--workdir={c.run()}", "--tempo=0"],
    "--tempo must be > 0 (quarters per minute), got 0.0",
  ),
  Case(
    "temperature-nan",
    "sample",
    "a temperature that is not a number (NaN)",
    lambda c: [f"--workdir={c.run()}", "--temperature=nan"],
    "--temperature must be > 0, got nan",
  ),
  Case(
    "temperature-infinite",
    "sample",
    "an infinite temperature",
    lambda c: [f"--workdir={c.run()}", "--temperature=1,inf"],
    "--temperature must be > 0, got 1,inf",
  ),
  Case(
    "num-notes-huge",
    "sample",
    "more notes than one request may sample",
    lambda c: [f"--workdir={c.run()}", "--num_notes=100000000"],
    "--num_notes must be at most 8,192 (events per melody), got 100,000,000",
  ),
  Case(
    "num-outputs-huge",
    "sample",
    "more melodies than one request may sample",
    lambda c: [f"--workdir={c.run()}", "--num_outputs=5000"],
    "--num_outputs must be at most 1,024 (melodies per request), got 5,000",
  ),
  Case(
    "primer-capacity-huge",
    "sample",
    "a primer capacity above the limit",
    lambda c: [f"--workdir={c.run()}", "--max_primer_notes=100000"],
    "--max_primer_notes must be at most 1,024 (primer events), got 100,000",
  ),
  Case(
    "events-per-call",
    "sample",
    "melodies x notes above what one request may sample",
    lambda c: [
      f"--workdir={c.run()}",
      "--num_outputs=1000",
      "--num_notes=2000",
    ],
    "--num_outputs x (1 + --num_notes + --max_primer_notes) = 2,065,000 "
    "events, more than the 1,048,576 that one request may sample",
  ),
  Case(
    "seed-huge",
    "sample",
    "a seed beyond 64 bits",
    lambda c: [f"--workdir={c.run()}", "--seed=99999999999999999999"],
    "--seed must be an integer from -9223372036854775808 to "
    "9223372036854775807, got 99999999999999999999",
  ),
  Case(
    "tempo-huge",
    "sample",
    "an infinite tempo",
    lambda c: [f"--workdir={c.run()}", "--tempo=inf"],
    "--tempo must be at most 1000 quarters per minute, got inf",
  ),
  Case(
    "output-dir-permission",
    "sample",
    "an output folder this user may not create",
    lambda c: [
      f"--workdir={c.run()}",
      f"--output_dir={_unwritable(c)}",
      "--num_notes=2",
      "--num_outputs=1",
    ],
    "permission denied (choose a folder you can write)",
  ),
  Case(
    "output-dir-name-too-long",
    "sample",
    "an output folder name longer than the file system allows",
    lambda c: [
      f"--workdir={c.run()}",
      f"--output_dir={os.path.join(c.tmp, 'x' * 300)}",
      "--num_notes=2",
      "--num_outputs=1",
    ],
    "file name too long (choose a folder you can write)",
  ),
  Case(
    "primer-midi-permission",
    "sample",
    "a primer MIDI this user may not read",
    lambda c: [f"--workdir={c.run()}", f"--primer_midi={_unreadable(c)}"],
    "cannot be read: permission denied",
  ),
  Case(
    "config-nan",
    "train",
    "a config number that is NaN",
    lambda c: c.train("--config.train.weight_decay=nan"),
    "config.train.weight_decay must be a finite number, got nan",
  ),
  Case(
    "config-sample-notes-huge",
    "train",
    "a sample group asking more notes than the limit",
    lambda c: c.train("--config.sample.num_notes=100000"),
    "config.sample.num_notes must be at most 8,192 (events per melody)",
  ),
  Case(
    "ema-decay-range",
    "train",
    "a parameter-average decay outside [0, 1)",
    lambda c: c.train("--config.train.ema_decay=1.0"),
    "config.train.ema_decay must be a number >= 0 and < 1 (0: off), got 1.0",
  ),
  Case(
    "arch-unknown",
    "train",
    "an architecture the model does not have",
    lambda c: c.train("--config.model.arch=rnn"),
    "config.model.arch must be one of ('lstm', 'transformer'), got 'rnn'",
  ),
  Case(
    "transformer-heads",
    "train",
    "attention heads that do not divide the width evenly",
    lambda c: c.train(
      "--config.model.arch=transformer", "--config.model.transformer_heads=3"
    ),
    "config.model.transformer_heads=3 must divide "
    "config.model.transformer_width=256 into an even head width",
  ),
  Case(
    "transformer-carry-state",
    "train",
    "a carried state with the Transformer",
    lambda c: c.train(
      "--config.model.arch=transformer", "--config.train.carry_state=True"
    ),
    "config.train.carry_state=True carries an LSTM's state: "
    "config.model.arch='transformer' has none",
  ),
  Case(
    "init-from-missing",
    "train",
    "fine-tuning from a workdir or model file that does not exist",
    lambda c: c.train(f"--config.init_from={c.tmp}/no_such_run"),
    "config.init_from: workdir not found: ",
  ),
  Case(
    "init-from-other-model",
    "train",
    "fine-tuning with a model config that differs from the base run's",
    lambda c: _finetune(c, "--config.model.dense_size=32"),
    "config.model.dense_size was 16",
  ),
  Case(
    "init-from-unseen-tokens",
    "train",
    "a corpus with more events than allowed that the base run never saw",
    _unseen_durations,
    "never saw",
  ),
  Case(
    "init-from-damaged-model",
    "train",
    "fine-tuning from a damaged .mjx file",
    lambda c: c.train(f"--config.init_from={_damaged_model_file(c)}"),
    "not a usable melodyjax model",
  ),
  Case(
    "model-file-damaged",
    "sample",
    "sampling from a damaged .mjx file",
    lambda c: [f"--model={_damaged_model_file(c)}"],
    "not a usable melodyjax model",
  ),
  # melodyjax-evaluate on another corpus
  Case(
    "evaluate-dataset-missing",
    "evaluate",
    "a --dataset_dir that does not exist",
    lambda c: _evaluate(c, f"--dataset_dir={c.tmp}/nothing"),
    "--dataset_dir: dataset folder not found: ",
  ),
  Case(
    "evaluate-dataset-not-built",
    "evaluate",
    "a --dataset_dir that holds no built dataset",
    lambda c: _evaluate(c, f"--dataset_dir={c.folder('empty')}"),
    "holds no built dataset (no readable manifest.json)",
  ),
  Case(
    "evaluate-dataset-other-key",
    "evaluate",
    "a --dataset_dir built with another key setting than the run's",
    lambda c: _evaluate(c, _built_with(c, normalize_key=False)),
    "was built with normalize_key=False (as written) and ",
  ),
  Case(
    "evaluate-dataset-other-grid",
    "evaluate",
    "a --dataset_dir built on another grid than the run's",
    lambda c: _evaluate(c, _built_with(c, grid=24)),
    "was built with grid=24 and ",
  ),
  Case(
    "evaluate-midi-missing",
    "evaluate",
    "a --midi_dir that does not exist",
    lambda c: _evaluate(c, f"--midi_dir={c.tmp}/nothing"),
    "--midi_dir: MIDI folder not found: ",
  ),
  Case(
    "evaluate-midi-empty",
    "evaluate",
    "a --midi_dir without MIDI files",
    lambda c: _evaluate(c, f"--midi_dir={c.folder('empty')}"),
    "--midi_dir: no MIDI files (.mid, .midi) found below ",
  ),
  Case(
    "evaluate-midi-too-few",
    "evaluate",
    "a --midi_dir too small for a test, validation and training song",
    lambda c: _evaluate(c, _one_tune(c)),
    "too few songs to score (1 train, 0 valid, 0 test; 0 of 1 files dropped)",
  ),
  Case(
    "evaluate-both-corpora",
    "evaluate",
    "both --dataset_dir and --midi_dir",
    lambda c: _evaluate(c, f"--dataset_dir={c.data}", f"--midi_dir={c.midi}"),
    "give --dataset_dir or --midi_dir, not both",
  ),
  # data.repeats and melodyjax-convert's settings
  Case(
    "data-repeats-unknown",
    "train",
    "an unknown way of playing repeats",
    lambda c: c.train("--config.data.repeats=twice"),
    "config.data.repeats must be one of ('once', 'play'), got 'twice'",
  ),
  Case(
    "data-repeats-other-conversion",
    "train",
    "data.repeats other than the repeats of the corpus folder's conversion",
    _other_repeats,
    "holds oneills converted with repeats 'once' (conversion.json)",
  ),
  Case(
    "convert-other-settings",
    "convert",
    "a conversion into a folder that holds one with other settings",
    lambda c: _converted(c, "--repeats=play"),
    "reader abc, repeats once (conversion.json), not corpus oneills, "
    "reader abc, repeats play: give another output folder, or --force",
  ),
  Case(
    "convert-play-music21",
    "convert",
    "repeats played with the music21 reader",
    lambda c: ["--reader=music21", "--repeats=play", f"--out={c.tmp}/x"],
    "repeats 'play' needs the abc reader (--reader=abc)",
  ),
  # config.data.abc and melodyjax-corpus --abc
  Case(
    "abc-missing",
    "train",
    "an ABC source that does not exist",
    lambda c: _abc(c, f"{c.tmp}/nothing.abc"),
    "ABC source not found: ",
  ),
  Case(
    "abc-no-tunes",
    "train",
    "an ABC file without a tune (no X: field)",
    lambda c: _abc(c, c.file("empty.abc", b"T:no number\nK:C\nCDE|\n")),
    "empty.abc (no X: field)",
  ),
  Case(
    "abc-folder-empty",
    "train",
    "an ABC folder without .abc files",
    lambda c: _abc(c, c.folder("texts", {"a.txt": b"la"})),
    "no ABC files (.abc) found below",
  ),
  Case(
    "abc-session-columns",
    "train",
    "a CSV that lacks The Session's columns",
    lambda c: _abc(c, c.file("t.csv", b"tune_id,name\n1,a\n")),
    "t.csv: row 1 lacks the column(s) setting_id, type, meter, mode, abc",
  ),
  Case(
    "abc-default-dataset",
    "train",
    "config.data.abc with the default corpus's dataset folder",
    lambda c: [
      *c.train(f"--config.data.abc={c.file('a.abc', b'X:1')}"),
      f"--config.data.dataset_dir={data_config_lib.corpus_folders()[1]}",
    ],
    "the built-in esac dataset: set config.data.dataset_dir to a folder of "
    "its own",
  ),
  Case(
    "corpus-abc-and-midi",
    "corpus",
    "both --abc and --midi_dir",
    lambda c: ["--abc=a.abc", f"--midi_dir={c.midi}", f"--out={c.tmp}/d"],
    "give --midi_dir or --abc (one of them)",
  ),
  Case(
    "flag-typo",
    "sample",
    "a misspelled flag",
    lambda c: [f"--workdir={c.run()}", "--temprature=1"],
    "Unknown command line flag 'temprature'",
  ),
  Case(
    "short-term-weight",
    "sample",
    "a short-term model's weight of 1 (the network would be ignored)",
    lambda c: [f"--workdir={c.run()}", "--short_term=0.2,1"],
    "--short_term must be in [0, 1), got 0.2,1",
  ),
  Case(
    "short-term-window",
    "sample",
    "the short-term model with the window sampler",
    lambda c: [f"--workdir={c.run()}", "--short_term=0.2", "--sampler=window"],
    "--short_term needs --sampler=scan",
  ),
  Case(
    "short-term-order",
    "sample",
    "a short-term model of order 0",
    lambda c: [
      f"--workdir={c.run()}",
      "--short_term=0.2",
      "--short_term_order=0",
    ],
    "--short_term_order must be an integer from 1 to 12, got 0",
  ),
  Case(
    "workdir-config-not-object",
    "sample",
    "a workdir's config.json replaced by JSON of another shape (a list)",
    lambda c: _edited_run(c, "config.json", "[1, 2]"),
    "run/config.json: not a run's config (a JSON list, not an object)",
  ),
  Case(
    "workdir-config-no-model",
    "sample",
    "a workdir's config.json without the model's settings",
    lambda c: _edited_run(c, "config.json", '{"seed": 0}'),
    "run/config.json: not a run's config (no usable model settings: "
    "AttributeError: 'model')",
  ),
  Case(
    "workdir-vocab-wrong-shape",
    "sample",
    "a workdir's vocabulary whose tokens are not a list",
    lambda c: _edited_run(c, "vocab_pitch.json", '{"tokens": 5}'),
    "bad vocabulary in ",
  ),
]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
  """A corpus, its dataset and a workdir trained for 10 steps."""
  root = tmp_path_factory.mktemp("shared")
  midi = root / "midi"
  write_tunes(midi, 24, 9)
  config = tiny.get_config()
  config.data.midi_dir = str(midi)
  config.data.dataset_dir = str(root / "data")
  config.train.num_train_steps = 10
  loop.train_and_evaluate(config, str(root / "trained"))
  return str(midi), str(root / "data"), str(root / "trained")


def run_main(name: str, argv: list[str]) -> int:
  """Runs a command in this process, as its main would; the exit code."""
  try:
    return MAINS[name].main(argv)
  except SystemExit as e:
    return e.code


def snapshot(*roots: str) -> dict[str, str]:
  """Every file below `roots` with a digest of its content."""
  files = {}
  for root in roots:
    for dirpath, _, names in os.walk(root):
      for name in names:
        path = os.path.join(dirpath, name)
        with open(path, "rb") as f:
          files[path] = hashlib.sha1(f.read()).hexdigest()
  return files


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_mistake_is_one_line_exit_2_and_loses_nothing(
  case, shared, tmp_path, capsys
):
  midi, data, trained = shared
  with contextlib.ExitStack() as stack:
    ctx = Context(str(tmp_path), midi, data, trained, stack)
    argv = case.argv(ctx)
    before = snapshot(str(tmp_path), trained)
    capsys.readouterr()
    code = run_main(case.main, argv)
    out, err = capsys.readouterr()
  prog = MAINS[case.main].PROG
  # Lines other than the error are the dataset progress bar, if any.
  errors = [line for line in err.splitlines() if ": error: " in line]
  assert code == 2, (code, out, err)
  assert len(errors) == 1 and "Traceback" not in err, err
  assert err.strip().splitlines()[-1] == errors[0]
  assert errors[0].startswith(f"{prog}: error: "), errors[0]
  assert case.message in errors[0], errors[0]
  after = snapshot(str(tmp_path), trained)
  lost = {
    path
    for path in before
    if before[path] != after.get(path)
    and os.path.basename(path) != workdir_lib.LOCK_FILE  # holds a pid
  }
  assert not lost, f"changed or deleted: {sorted(lost)}"


def test_catalogue_is_exactly_the_cases():
  """docs/errors.md's numbered table holds each case exactly once, numbered
  1 to N, and the README states N."""
  with open(DOC) as f:
    rows = re.findall(r"^\| (\d+) \| `([\w-]+)` \|", f.read(), re.M)
  assert [int(number) for number, _ in rows] == list(range(1, len(rows) + 1))
  assert sorted(case_id for _, case_id in rows) == sorted(c.id for c in CASES)
  with open(os.path.join(PROJECT, "README.md")) as f:
    stated = re.search(r"lists (\d+) of them", f.read())
  assert stated and int(stated.group(1)) == len(CASES)


def test_entry_points_exit_2_and_debug_shows_the_traceback(shared, tmp_path):
  midi, data, _ = shared
  args = [
    "train_main.py",
    "--config=configs/tiny.py",
    f"--workdir={tmp_path}/w",
    f"--config.data.midi_dir={tmp_path}/nothing",
    f"--config.data.dataset_dir={data}",
  ]
  result = run_python(*args)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
    f"train_main.py: error: MIDI folder not found: {tmp_path}/nothing"
  ]
  result = run_python(*args, "--debug")
  assert result.returncode == 2
  assert "Traceback" in result.stderr
  assert (
    result.stderr.strip()
    .splitlines()[-1]
    .startswith("train_main.py: error: MIDI folder not found")
  )
  result = run_python(
    "-m", "melodyjax.cli.corpus", f"--midi_dir={tmp_path}/nothing", "--out=x"
  )
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
    f"melodyjax-corpus: error: MIDI folder not found: {tmp_path}/nothing"
  ]
