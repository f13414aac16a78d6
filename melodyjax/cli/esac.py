"""`python -m melodyjax.esac` (also `melodyjax-esac`): convert a corpus
that music21 ships, the ESAC folksongs (default) or O'Neill's 1850 Irish
dance tunes, to MIDI files, once.

  python -m melodyjax.esac [--corpus esac|oneills] [--out DIR] [--workers N]
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from absl import flags

from melodyjax import cli
from melodyjax.data import esac

PROG = "python -m melodyjax.esac"
FLAGS = cli.tool_flags()
flags.DEFINE_enum(
  "corpus",
  esac.DEFAULT_CORPUS,
  list(esac.CORPORA),
  "The corpus: 'esac' (Essen folksongs) or 'oneills' (O'Neill's 1850).",
  flag_values=FLAGS,
)
flags.DEFINE_string(
  "out",
  None,
  "Output folder (default: ~/.cache/melodyjax/<corpus>_midi).",
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
  "force", False, "Convert even if already done.", flag_values=FLAGS
)
flags.DEFINE_bool("no_progress", False, "No progress bar.", flag_values=FLAGS)


def main(argv: Sequence[str] | None = None) -> int:
  """Converts a corpus; the exit status (1 when a tune failed to convert)."""
  prog = cli.tool_prog(PROG, argv)
  cli.parse_flags(cli.tool_argv(prog, argv), FLAGS)
  with cli.user_errors(prog, FLAGS):
    summary = esac.convert_corpus(
      FLAGS.out or esac.default_midi_dir(FLAGS.corpus),
      corpus=FLAGS.corpus,
      workers=FLAGS.workers,
      limit_files=FLAGS.limit_files,
      limit_tunes=FLAGS.limit_tunes,
      progress=not FLAGS.no_progress,
      force=FLAGS.force,
    )
  print(esac.format_summary(summary))
  return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":
  sys.exit(main())
