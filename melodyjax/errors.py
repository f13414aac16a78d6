"""One base class for every user-facing error. No JAX.

A `MelodyjaxError` is a mistake a user can fix (a config field, a flag, a
path, a primer) or an input that cannot be used (a corrupt file, a damaged
checkpoint). Its message is one line that names the field or the file and,
where there is one, the fix. The entry points print it as `PROG: error:
MESSAGE` with exit status 2 (`melodyjax.cli`); anything else is a bug and
keeps its traceback.
"""


class MelodyjaxError(Exception):
  """A user mistake or an unusable input; the message says which and why."""


class ConfigError(MelodyjaxError):
  """A config field or a workdir that cannot be used."""


class UsageError(MelodyjaxError):
  """A command-line flag that a tool rejects; the message names the flag."""


class CorpusError(MelodyjaxError):
  """A corpus folder, dataset cache or data option that cannot be used."""


class ConversionError(CorpusError):
  """A built-in corpus cannot be converted (music21 missing, an unknown
  corpus, an unwritable folder)."""


class CheckpointError(MelodyjaxError):
  """A workdir or checkpoint that cannot be used."""


class DamagedCheckpointError(CheckpointError):
  """A checkpoint whose files are missing, truncated or unreadable."""


class TrainingError(MelodyjaxError):
  """Training cannot go on; the message says why and what was kept."""


class NoSpaceError(TrainingError):
  """The disk (or a quota) filled up; the message says what was kept."""


class GenerateError(MelodyjaxError):
  """A primer, a sampling option or a run that generation cannot use."""
