"""Which corpora are built in, where music21 keeps them, what each needs.

A `Corpus` names a collection of music21's ABC files and what is particular
to it (which files belong to it, a fix of its text before parsing, second
transcriptions to skip, metre hints from its ABC text); the generic
conversion (`corpora.convert`) and the tokenizer (`data.tokenize`, through
`metre_hints`) ask it. No JAX.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Callable, Sequence

from melodyjax import errors
from melodyjax.data import config as data_config_lib
from melodyjax.data.corpora import abc_text, esac, music21_abc, oneills
from melodyjax.data.corpora.abc_text import AbcTune
from melodyjax.music import metre

SUMMARY_NAME = "conversion.json"  # written by `corpora.convert`
TUNES_NAME = "tunes.json"  # {MIDI relpath: what is known of its tune}
READERS = ("abc", "music21")  # the project's reader; music21's
DEFAULT_READER = "abc"
REPEATS = data_config_lib.REPEATS  # ('once', 'play')
DEFAULT_REPEATS = data_config_lib.DEFAULT_REPEATS
SETTINGS = ("corpus", "reader", "repeats")  # a conversion's, in its summary


def _every_file(path: pathlib.Path) -> bool:
  return True


def _same_text(text: str) -> str:
  return text


@dataclasses.dataclass(frozen=True)
class Corpus:
  """A corpus that music21 ships as ABC files.

  Attributes:
    name: the name in commands and cache folders ('esac', 'oneills').
    label: the name in messages.
    folder: its folder in music21/corpus.
    includes: whether an ABC file of the folder belongs to the corpus.
    prepare_text: a fix of one tune's text before music21 parses it.
    skip_duplicates: (tunes per file) -> (tunes kept per file, a record per
      tune skipped), or None to keep every tune.
    metre_hints: (its ABC files) -> {MIDI relpath: pickup in quarters, or
      `metre.NO_METER`}, or None to take them from the abc reader's
      conversion (`TUNES_NAME`).
    style_from_type: each tune's style label is its type (R: 'reel'),
      else its file (ESAC's, O'Neill's: its file, as before).
    parts: for a combined corpus, the corpora it holds (each under a
      folder of its name, the collection as the style label); folder and
      the fields above are then those of each part.
  """

  name: str
  label: str
  folder: str
  includes: Callable[[pathlib.Path], bool] = _every_file
  prepare_text: Callable[[str], str] = _same_text
  skip_duplicates: (
    Callable[[Sequence[list[AbcTune]]], tuple[list, list]] | None
  ) = None
  metre_hints: Callable[[Sequence[pathlib.Path]], dict[str, str]] | None = None
  style_from_type: bool = False
  parts: tuple[str, ...] = ()


CORPORA = {
  "esac": Corpus(
    "esac",
    "ESAC",
    "essenFolksong",
    includes=esac.includes,
    prepare_text=esac.rename_german_keys,
    metre_hints=esac.metre_hints,
  ),
  "oneills": Corpus(
    "oneills",
    "O'Neill's 1850",
    "oneills1850",
    skip_duplicates=oneills.skip_duplicates,
  ),
  "ryans": Corpus(
    "ryans",
    "Ryan's Mammoth Collection",
    "ryansMammoth",
    style_from_type=True,
  ),
  "airds": Corpus("airds", "Aird's Airs", "airdsAirs", style_from_type=True),
  "misc": Corpus(
    "misc", "miscellaneous folk tunes", "miscFolk", style_from_type=True
  ),
  "folk": Corpus(
    "folk",
    "folk (ESAC, O'Neill's, Ryan's, Aird's, misc)",
    "",
    parts=("esac", "oneills", "ryans", "airds", "misc"),
  ),
}
DEFAULT_CORPUS = data_config_lib.DEFAULT_CORPUS


def get_corpus(name: str) -> Corpus:
  """The built-in corpus of that name; raises ConversionError if none."""
  try:
    return CORPORA[name]
  except KeyError:
    raise errors.ConversionError(
      f"no built-in corpus {name!r}; choose one of {', '.join(CORPORA)}"
    ) from None


def default_midi_dir(
  corpus: str = DEFAULT_CORPUS, repeats: str = DEFAULT_REPEATS
) -> pathlib.Path:
  """The corpus's MIDI folder in the cache (`data.config.corpus_folders`),
  e.g. `~/.cache/melodyjax/esac_midi` (`esac_play_midi`, repeats played)."""
  return pathlib.Path(
    data_config_lib.corpus_folders(get_corpus(corpus).name, repeats)[0]
  )


def check_settings(corpus: str, reader: str, repeats: str) -> dict[str, str]:
  """A conversion's settings {corpus, reader, repeats}, checked.

  Raises:
    errors.ConversionError: an unknown corpus, reader or repeats, or
      repeats 'play' with reader 'music21'.
  """
  get_corpus(corpus)
  check_reader(reader, repeats)
  return {"corpus": corpus, "reader": reader, "repeats": repeats}


def check_reader(reader: str, repeats: str) -> None:
  """A known reader and repeats, and repeats 'play' with the abc reader.

  Raises:
    errors.ConversionError: the first that is not.
  """
  if reader not in READERS:
    raise errors.ConversionError(
      f"reader must be one of {', '.join(READERS)}, got {reader!r}"
    )
  if repeats not in REPEATS:
    raise errors.ConversionError(
      f"repeats must be one of {', '.join(REPEATS)}, got {repeats!r}"
    )
  if repeats == "play" and reader == "music21":
    raise errors.ConversionError(
      "repeats 'play' needs the abc reader (--reader=abc): the music21 "
      "path plays each section once"
    )


def summary_settings(summary: dict) -> dict[str, str]:
  """{corpus, reader, repeats} of a conversion summary (one written
  before the readers and repeats were settings: music21, once)."""
  return {
    "corpus": summary.get("corpus", "esac"),
    "reader": summary.get("reader", "music21"),
    "repeats": summary.get("repeats", "once"),
  }


def describe_settings(settings: dict) -> str:
  """'corpus esac, reader abc, repeats once'."""
  return ", ".join(f"{key} {settings[key]}" for key in SETTINGS)


def conversion_settings(midi_dir: str | os.PathLike) -> dict[str, str] | None:
  """The settings of the conversion `midi_dir` holds (its conversion.json),
  or None when it holds none."""
  summary = read_summary(midi_dir)
  return summary_settings(summary) if summary is not None else None


def find_abc_files(corpus: str = DEFAULT_CORPUS) -> list[pathlib.Path]:
  """Lists the ABC files of a built-in corpus in the installed music21.

  Args:
    corpus: a name of `CORPORA` (a combined one: those of its parts).

  Returns:
    The corpus's `*.abc` files, sorted by name (ESAC: without `test*.abc`).

  Raises:
    errors.ConversionError: music21 is not installed, or ships no such
      files.
  """
  spec = get_corpus(corpus)
  if spec.parts:
    return [path for part in spec.parts for path in find_abc_files(part)]
  music21 = music21_abc.import_music21()
  folder = pathlib.Path(music21.__file__).parent / "corpus" / spec.folder
  found = sorted(p for p in folder.glob("*.abc") if spec.includes(p))
  if not found:
    raise errors.ConversionError(
      f"no {spec.label} files in {folder}; reinstall music21 with: "
      f"{music21_abc.INSTALL_HINT}"
    )
  return found


def _labelled(tune: AbcTune, part: str, combined: bool) -> AbcTune:
  """The tune with its group (style label) and what is known of it."""
  kind = abc_text.rhythm(tune.text)
  if combined:
    group = part
  elif get_corpus(part).style_from_type:
    group = abc_text.folder_name(kind)
  else:
    group = ""
  info = {"collection": part, "file": tune.stem, "type": kind}
  return dataclasses.replace(tune, group=group, info=info)


def corpus_tunes(
  corpus: str, limit_files: int | None = None, limit_tunes: int | None = None
) -> tuple[dict[str, int], list[tuple[str, list[AbcTune]]], list[dict]]:
  """The tunes a conversion of a built-in corpus converts.

  Args:
    corpus: a name of `CORPORA`.
    limit_files, limit_tunes: only the first N ABC files (of each part),
      the first N tunes of each.

  Returns:
    ({file: tunes in it}, [(the part's corpus, the tunes kept of one
    file)], the second transcriptions skipped (`Corpus.skip_duplicates`)).
  """
  spec = get_corpus(corpus)
  per_file, kept, duplicates = {}, [], []
  for part in spec.parts or (spec.name,):
    part_spec = get_corpus(part)
    files_tunes = []
    for path in find_abc_files(part)[:limit_files]:
      tunes = abc_text.read_abc_tunes(path)[:limit_tunes]
      per_file[f"{part}/{path.stem}" if spec.parts else path.stem] = len(tunes)
      files_tunes.append([_labelled(t, part, bool(spec.parts)) for t in tunes])
    if part_spec.skip_duplicates is not None:
      files_tunes, skipped = part_spec.skip_duplicates(files_tunes)
      duplicates.extend(skipped)
    kept.extend((part, tunes) for tunes in files_tunes)
  return per_file, kept, duplicates


def read_tunes(corpus: str) -> tuple[list[pathlib.Path], list[list[AbcTune]]]:
  """(ABC files, their tunes) of a built-in corpus."""
  paths = find_abc_files(corpus)
  return paths, [abc_text.read_abc_tunes(path) for path in paths]


def conversion_corpus(midi_dir: str) -> str | None:
  """The built-in corpus whose conversion `midi_dir` holds, else None."""
  settings = conversion_settings(midi_dir)
  name = settings["corpus"] if settings else None
  return name if name in CORPORA else None


def tune_records(midi_dir: str | os.PathLike) -> dict[str, dict]:
  """{MIDI relpath: what is known of its tune} of a conversion's
  `TUNES_NAME` (title, collection, type, The Session's ids, meter, tonic,
  mode, pickup), {} without one."""
  try:
    with open(os.path.join(midi_dir, TUNES_NAME), encoding="utf-8") as f:
      found = json.load(f)
  except (OSError, ValueError):
    return {}
  return found if isinstance(found, dict) else {}


def read_summary(midi_dir: str | os.PathLike) -> dict | None:
  """The conversion summary a folder holds (`SUMMARY_NAME`), else None."""
  try:
    with open(os.path.join(midi_dir, SUMMARY_NAME)) as f:
      summary = json.load(f)
  except (OSError, ValueError):
    return None
  return summary if isinstance(summary, dict) else None


def conversion_drops(midi_dir: str | os.PathLike) -> list[dict]:
  """The tunes a conversion in `midi_dir` could not read, as a dataset
  build's drop records (reason 'abc_unreadable', the reader's message)."""
  summary = read_summary(midi_dir) or {}
  return [
    {
      "source": failure.get("path", ""),
      "drop": "abc_unreadable",
      "message": f"{failure.get('title', '')}: {failure.get('error', '')}",
    }
    for failure in summary.get("failures", ())
    if isinstance(failure, dict)
  ]


def metre_hints(
  midi_dir: str, records: dict[str, dict] | None = None
) -> dict[str, str]:
  """{MIDI relpath: pickup in quarters ('1/2') or `metre.NO_METER`} for a
  folder holding a conversion: the corpus's own hints (ESAC's, from its ABC
  text), else the abc reader's from `TUNES_NAME` (`records`, read if None);
  {} for a folder of the user's MIDI (or music21 missing)."""
  name = conversion_corpus(midi_dir)
  spec = CORPORA.get(name) if name else None
  if spec is not None and spec.metre_hints is not None:
    try:
      return spec.metre_hints(find_abc_files(name))
    except errors.ConversionError:
      return {}
  if records is None:
    records = tune_records(midi_dir)
  return {
    path: record["pickup_quarters"] if record["meter"] else metre.NO_METER
    for path, record in records.items()
    if isinstance(record, dict)
    and "meter" in record
    and "pickup_quarters" in record
  }


def convert_tune(
  text: str, corpus: str = DEFAULT_CORPUS, title: str | None = None
) -> music21_abc.TuneResult:
  """One tune of a built-in corpus to a MIDI file: the corpus's fix of its
  text (`Corpus.prepare_text`), then `music21_abc.convert_abc_tune`."""
  prepared = get_corpus(corpus).prepare_text(text)
  return music21_abc.convert_abc_tune(prepared, title)
