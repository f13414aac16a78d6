"""A user's ABC to MIDI files: a tunebook, a folder of them, or The
Session's CSV or JSON (`melodyjax-corpus --abc`, `config.data.abc`). No JAX.

The source is found by its kind: a folder (every `*.abc` below it), a file
whose suffix is .csv or .json (The Session's layout, `music.abc_session`),
or any other file, read as ABC text when it holds an X: field (else its
first bytes decide: a JSON list or a CSV header naming The Session's
columns). Every tune, every setting of a Session tune, becomes one MIDI
file, read by the abc reader through the built-in corpora's conversion
(`corpora.convert.run_conversion`):

  OUT/<type>/<file stem>/<index>_<X: number>.mid       a tune with R: <type>
  OUT/<file stem>/<index>_<X: number>.mid              one without
  OUT/<type>/<tune_id>/<index>_<setting_id>.mid        a Session setting

so that its style label (`data.labels.style_of`) is its type ('reel',
'jig') where it has one, else its collection (the file). OUT/tunes.json
keeps each tune's title, collection, type, meter, key and mode (and The
Session's tune and setting ids) for the dataset; OUT/conversion.json the
counts, each ABC construct met, and every tune that could not be read with
its reason. A second call with the same source (names, sizes and times of
its files) and settings returns that summary without converting.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import pathlib
from typing import Any

from melodyjax import errors
from melodyjax.data.corpora import abc_text, builtin, convert
from melodyjax.data.corpora.abc_text import AbcTune
from melodyjax.music import abc_session

CORPUS = "abc"  # the corpus name of a user's ABC in conversion.json
MIDI_FOLDER = "midi"  # the MIDI files' folder in the dataset folder
SESSION_SUFFIXES = (".csv", ".json")
SESSION_COLLECTION = "thesession"  # the collection of a Session file's tunes
_SNIFF_BYTES = 4096


def midi_dir_of(dataset_dir: str | os.PathLike) -> str:
  """Where the MIDI files of a dataset built from ABC go: DATASET/midi."""
  return os.path.join(os.fspath(dataset_dir), MIDI_FOLDER)


def source_kind(path: pathlib.Path) -> str:
  """'folder', 'abc', 'csv' or 'json' (see the module docstring).

  Raises:
    errors.CorpusError: the path does not exist or cannot be read.
  """
  if path.is_dir():
    return "folder"
  if not path.is_file():
    raise errors.CorpusError(f"ABC source not found: {path}")
  suffix = path.suffix.lower()
  if suffix in SESSION_SUFFIXES:
    return suffix[1:]
  try:
    with open(path, "rb") as f:
      head = f.read(_SNIFF_BYTES).decode("utf-8", "replace")
  except OSError as e:
    raise errors.CorpusError(f"{path}: {e.strerror or e}") from None
  if "X:" not in head:
    first = head.lstrip()
    if first.startswith("["):
      return "json"
    header = first.split("\n", 1)[0]
    if all(column in header for column in ("abc", "mode", "type")):
      return "csv"
  return "abc"


def _abc_files(root: pathlib.Path) -> list[pathlib.Path]:
  found = sorted(
    p for p in root.rglob("*") if p.suffix.lower() == ".abc" and p.is_file()
  )
  if not found:
    raise errors.CorpusError(f"no ABC files (.abc) found below {root}")
  return found


def _labelled(tune: AbcTune, collection: str) -> AbcTune:
  """A tune of an ABC file grouped by its type (R:), if any."""
  kind = abc_text.rhythm(tune.text)
  return AbcTune(
    tune.stem,
    tune.index,
    tune.number,
    tune.title,
    tune.text,
    group=abc_text.folder_name(kind),
    info={"collection": collection, "file": tune.stem, "type": kind},
  )


def _file_tunes(path: pathlib.Path, stem: str) -> list[AbcTune]:
  try:
    data = path.read_bytes()
  except OSError as e:
    raise errors.CorpusError(f"{path}: {e.strerror or e}") from None
  tunes = abc_text.split_abc_tunes(abc_text.decode_abc(data), stem)
  return [_labelled(tune, stem) for tune in tunes]


def session_tunes(path: pathlib.Path) -> list[AbcTune]:
  """The settings of The Session's CSV or JSON as tunes (X: setting_id),
  grouped by type and tune id.

  Raises:
    errors.CorpusError: the file is not of The Session's layout.
  """
  where = str(path)
  tunes, settings = [], collections.Counter()
  for number, raw in enumerate(abc_session.load_rows(path), 1):
    row = abc_session.check_row(raw, number, where)
    tune_id, setting_id = abc_session.row_ids(row, number, where)
    info = {
      "collection": SESSION_COLLECTION,
      "tune_id": tune_id,
      "setting_id": setting_id,
      "type": row["type"],
      "session_meter": row["meter"],
      "session_mode": row["mode"],
    }
    tunes.append(
      AbcTune(
        str(tune_id),
        settings[tune_id],
        setting_id,
        row["name"],
        abc_session.session_abc(row),
        group=abc_text.folder_name(row["type"]),
        info=info,
      )
    )
    settings[tune_id] += 1
  return tunes


def find_tunes(
  source: str | os.PathLike,
) -> tuple[str, list[pathlib.Path], list[list[AbcTune]]]:
  """(the source's kind, its files, the tunes of each file).

  Raises:
    errors.CorpusError: no such path, no ABC files in a folder, no tune in
      the source, or a CSV or JSON not in The Session's layout.
  """
  path = pathlib.Path(source).expanduser()
  kind = source_kind(path)
  if kind == "folder":
    paths = _abc_files(path)
    files_tunes = [
      _file_tunes(p, p.relative_to(path).with_suffix("").as_posix())
      for p in paths
    ]
  elif kind == "abc":
    paths, files_tunes = [path], [_file_tunes(path, path.stem)]
  else:
    paths, files_tunes = [path], [session_tunes(path)]
  if not any(files_tunes):
    what = "no Session rows" if kind in ("csv", "json") else "no X: field"
    raise errors.CorpusError(f"no tunes in {path} ({what})")
  return kind, paths, files_tunes


def _listing_digest(paths: list[pathlib.Path]) -> str:
  listing = []
  for path in paths:
    stat = path.stat()
    listing.append([str(path), stat.st_size, stat.st_mtime_ns])
  return hashlib.sha1(json.dumps(listing).encode()).hexdigest()


def convert_abc_source(
  source: str | os.PathLike,
  out_dir: str | os.PathLike,
  *,
  repeats: str = builtin.DEFAULT_REPEATS,
  workers: int | None = None,
  progress: bool = True,
  force: bool = False,
) -> dict[str, Any]:
  """Converts a user's ABC (see the module docstring) to MIDI files.

  Args:
    source: an .abc file, a folder of them, or The Session's CSV or JSON.
    out_dir: the MIDI folder (created if missing; .mid files that are not
      the source's tunes are deleted).
    repeats: 'once' or 'play' (`abc_reader.read_tune`).
    workers: processes (default: all cores; 1: this process).
    progress: a progress bar on stderr.
    force: convert even if a conversion of the same source is there.

  Returns:
    The conversion summary (as `convert.convert_corpus`'s, with the source,
    its kind and the constructs met); "reused" when it was there.

  Raises:
    errors.CorpusError: the source cannot be read (see `find_tunes`), or
      out_dir holds a built-in corpus's conversion.
  """
  source_path = pathlib.Path(source).expanduser().absolute()
  out_dir = pathlib.Path(out_dir).expanduser()
  kind, paths, files_tunes = find_tunes(source_path)
  try:
    builtin.check_reader("abc", repeats)
  except errors.ConversionError as e:
    raise errors.CorpusError(str(e)) from None
  settings = {"corpus": CORPUS, "reader": "abc", "repeats": repeats}
  previous = builtin.read_summary(out_dir)
  found = previous and builtin.summary_settings(previous)
  if found and found["corpus"] != CORPUS:
    raise errors.CorpusError(
      f"{out_dir} holds a conversion of the built-in corpus "
      f"{found['corpus']} ({builtin.SUMMARY_NAME}): give another folder "
      "for the ABC's MIDI files"
    )
  expected = {
    "converter_version": convert.CONVERTER_VERSION,
    "source": str(source_path),
    "source_digest": _listing_digest(paths),
  }
  if reused := convert.reusable(out_dir, previous, settings, expected, force):
    return reused
  summary = {
    "complete": False,
    "reused": False,
    **settings,
    "label": f"{source_path.name} ({kind})",
    "kind": kind,
    **expected,
    "files": len(paths),
    "tunes": sum(map(len, files_tunes)),
  }
  try:
    return convert.run_conversion(
      out_dir,
      summary,
      [(CORPUS, tunes) for tunes in files_tunes],
      workers=workers,
      progress=progress,
    )
  except errors.ConversionError as e:
    raise errors.CorpusError(str(e)) from None


def convert_for_dataset(
  source: str | os.PathLike, dataset_dir: str | os.PathLike, **kwargs
) -> tuple[str, dict[str, Any]]:
  """(the MIDI folder, the summary) of `convert_abc_source(source,
  midi_dir_of(dataset_dir), **kwargs)`: where a dataset of ABC reads its
  MIDI files from."""
  midi_dir = midi_dir_of(dataset_dir)
  return midi_dir, convert_abc_source(source, midi_dir, **kwargs)
