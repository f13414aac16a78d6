"""`melodyjax-convert` (also `python -m melodyjax.cli.convert`): convert a
corpus that music21 ships, the ESAC folksongs (default) or O'Neill's 1850
Irish dance tunes, to MIDI files, once.

  melodyjax-convert [--corpus esac|oneills] [--reader abc|music21]
    [--repeats once|play] [--out DIR] [--workers N] [--force]

The reader (default: the project's own, 'abc') and the repeats ('once':
each section once; 'play': repeats and endings performed) are written into
the folder's conversion.json; a folder converted with other settings is
refused unless --force.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from absl import flags

from melodyjax import cli
from melodyjax.data.corpora import builtin

PROG = "melodyjax-convert"
FLAGS = cli.tool_flags()
flags.DEFINE_enum(
  "corpus",
  builtin.DEFAULT_CORPUS,
  list(builtin.CORPORA),
  "The corpus: 'esac' (Essen folksongs), 'oneills' (O'Neill's 1850), "
  "'ryans' (Ryan's Mammoth Collection), 'airds' (Aird's Airs), 'misc' "
  "(music21's miscellaneous folk tunes), or 'folk' (all of them, the "
  "collection as the style label).",
  flag_values=FLAGS,
)
flags.DEFINE_enum(
  "reader",
  builtin.DEFAULT_READER,
  list(builtin.READERS),
  "'abc' (the project's ABC reader, fast) or 'music21' (the cross-check).",
  flag_values=FLAGS,
)
flags.DEFINE_enum(
  "repeats",
  builtin.DEFAULT_REPEATS,
  list(builtin.REPEATS),
  "'once' (each section once, into its last ending) or 'play' (repeat "
  "signs and first and second endings performed; --reader=abc).",
  flag_values=FLAGS,
)
flags.DEFINE_string(
  "out",
  None,
  "Output folder (default: CACHE/<corpus>_midi, CACHE/<corpus>_play_midi "
  "for --repeats=play, CACHE being $MELODYJAX_CACHE or ~/.cache/melodyjax).",
  flag_values=FLAGS,
)
flags.DEFINE_integer(
  "workers",
  None,
  "Processes (default: all cores).",
  lower_bound=1,
  flag_values=FLAGS,
)
flags.DEFINE_integer(
  "limit_files",
  None,
  "Only the first N ABC files.",
  lower_bound=1,
  flag_values=FLAGS,
)
flags.DEFINE_integer(
  "limit_tunes",
  None,
  "Only the first N tunes of each file.",
  lower_bound=1,
  flag_values=FLAGS,
)
flags.DEFINE_bool(
  "force",
  False,
  "Convert even if already done; replace a conversion with other settings.",
  flag_values=FLAGS,
)
flags.DEFINE_bool("no_progress", False, "No progress bar.", flag_values=FLAGS)


def main(argv: Sequence[str] | None = None) -> int:
  """Converts a corpus; the exit status (1 when a tune failed to convert)."""
  prog = cli.tool_prog(PROG, argv)
  cli.parse_flags(cli.tool_argv(prog, argv), FLAGS)
  with cli.user_errors(prog, FLAGS):
    from melodyjax.data.corpora import convert

    summary = convert.convert_corpus(
      FLAGS.out or builtin.default_midi_dir(FLAGS.corpus, FLAGS.repeats),
      corpus=FLAGS.corpus,
      # Not asked for: an older conversion by the other reader is kept.
      reader=FLAGS.reader if FLAGS["reader"].present else None,
      repeats=FLAGS.repeats,
      workers=FLAGS.workers,
      limit_files=FLAGS.limit_files,
      limit_tunes=FLAGS.limit_tunes,
      progress=not FLAGS.no_progress,
      force=FLAGS.force,
    )
  print(convert.format_summary(summary))
  return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":
  sys.exit(main())
