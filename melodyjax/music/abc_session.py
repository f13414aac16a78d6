"""The Session's tune data (thesession.org) to ABC tunes. No JAX.

The data set (github.com/adactio/TheSession-data) holds one row per
setting of a tune in `csv/tunes.csv` and `json/tunes.json`, with the
columns tune_id, setting_id, name, type ('reel', 'jig', ...), meter
('4/4'), mode ('Gmajor', 'Edorian'), abc (the tune's body without a
header), date and username; older copies name the first two 'tune' and
'setting'. A body's lines are broken by CR LF, or by '!' (ABC 2.0's line
break) where it is no decoration such as '!trill!'.

`read_session` gives one `SessionTune` per row: the ids, name and type for
the caller, the ABC text with a header made from the row (X: setting_id,
T: name, R: type, M: meter, L:1/8, K: from the mode) and the tune read by
`music.abc_reader.read_tune`, or the reason it could not be read.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
from collections.abc import Iterable, Iterator

from melodyjax import errors
from melodyjax.music import abc_reader

DEFAULT_UNIT = "1/8"
COLUMNS = ("tune_id", "setting_id", "name", "type", "meter", "mode", "abc")
_OLD_NAMES = {"tune": "tune_id", "setting": "setting_id"}
_MODE = re.compile(
  r"([A-Ga-g][#b]?)\s*(major|minor|dorian|mixolydian|lydian|phrygian|"
  r"locrian|aeolian|ionian)",
  re.IGNORECASE,
)
# Decorations of ABC 2.1 written '!name!'; any other '!' breaks a line.
_DECORATIONS = frozenset(
  """trill trill( trill) lowermordent uppermordent mordent pralltriller roll
  turn turnx invertedturn invertedturnx arpeggio > accent emphasis fermata
  invertedfermata tenuto 0 1 2 3 4 5 + plus snap slide wedge upbow downbow
  open thumb breath pppp ppp pp p mp mf f ff fff ffff sfz crescendo(
  crescendo) diminuendo( diminuendo) <( <) >( >) segno coda D.S. D.C.
  dacoda dacapo fine shortphrase mediumphrase longphrase""".split()
)
_BANG = re.compile(r"!([^!\s]*)!|!")


@dataclasses.dataclass
class SessionTune:
  """One row of The Session's data.

  Attributes:
    tune_id: the tune's number on thesession.org.
    setting_id: the setting's (transcription's) number.
    name: the tune's name.
    type: 'reel', 'jig', 'polka', ...
    meter: as given ('6/8').
    mode: as given ('Edorian').
    abc: the ABC text: the header made from the row, then the body.
    tune: the tune read, or None when it could not be read.
    error: why it could not be read ('' if it was).
    date: as given.
    username: as given.
  """

  tune_id: int
  setting_id: int
  name: str
  type: str
  meter: str
  mode: str
  abc: str
  tune: abc_reader.Tune | None
  error: str = ""
  date: str = ""
  username: str = ""


def key_field(mode: str) -> str:
  """A mode column to a K: value: 'Gmajor' -> 'G', 'Edorian' -> 'Edor',
  'Aminor' -> 'Am'; anything else unchanged."""
  match = _MODE.fullmatch(mode.strip())
  if match is None:
    return mode.strip()
  tonic, name = match.group(1), match.group(2).lower()
  tonic = tonic[0].upper() + tonic[1:]
  if name in ("major", "ionian"):
    return tonic
  if name in ("minor", "aeolian"):
    return tonic + "m"
  return tonic + name[:3]


def break_lines(body: str) -> str:
  """A body's lines broken by LF: CR LF, CR and every '!' that is not part
  of a decoration ('!trill!') become line breaks."""
  body = body.replace("\r\n", "\n").replace("\r", "\n")
  if "!" not in body:
    return body

  # Scan on after each '!' that breaks a line: '|D2!!trill!' keeps it.
  out, position = [], 0
  while (match := _BANG.search(body, position)) is not None:
    out.append(body[position : match.start()])
    if match.group(1) is not None and match.group(1) in _DECORATIONS:
      out.append(match.group())
      position = match.end()
    else:
      out.append("\n")
      position = match.start() + 1
  out.append(body[position:])
  return "".join(out)


def session_abc(row: dict) -> str:
  """The ABC text of one row: a header from its columns, then its body."""
  header = [
    f"X:{row.get('setting_id') or row.get('tune_id') or 1}",
    f"T:{row.get('name', '')}",
  ]
  if row.get("type"):
    header.append(f"R:{row['type']}")
  if row.get("meter"):
    header.append(f"M:{row['meter']}")
  header.append(f"L:{DEFAULT_UNIT}")
  header.append(f"K:{key_field(row.get('mode') or 'C')}")
  return "\n".join(header) + "\n" + break_lines(row.get("abc") or "") + "\n"


def _int(value, column: str, where: str) -> int:
  try:
    return int(str(value).strip())
  except ValueError:
    raise errors.CorpusError(
      f"{where}: {column} {value!r} is not a number"
    ) from None


def check_row(raw, number: int, where: str) -> dict[str, str]:
  """One row's columns as text, under today's names (tune_id, setting_id).

  Raises:
    errors.CorpusError: the row is no record, or lacks a column.
  """
  if not isinstance(raw, dict):
    raise errors.CorpusError(f"{where}: row {number} is not a record")
  row = {_OLD_NAMES.get(k, k): v for k, v in raw.items() if k is not None}
  missing = [c for c in COLUMNS if c not in row]
  if missing:
    raise errors.CorpusError(
      f"{where}: row {number} lacks the column(s) {', '.join(missing)}"
    )
  return {k: "" if v is None else str(v) for k, v in row.items()}


def row_ids(row: dict[str, str], number: int, where: str) -> tuple[int, int]:
  """(tune_id, setting_id) of a checked row; CorpusError if not numbers."""
  where = f"{where}: row {number}"
  return (
    _int(row["tune_id"], "tune_id", where),
    _int(row["setting_id"], "setting_id", where),
  )


def read_rows(
  rows: Iterable[dict], where: str = "<rows>", **options
) -> Iterator[SessionTune]:
  """Reads rows of The Session's layout (dicts of the columns).

  Args:
    rows: one dict per setting, keyed by column name.
    where: the file's name, for messages.
    **options: `abc_reader.read_tune`'s options (repeats, propagate).

  Yields:
    One SessionTune per row; a tune that cannot be read has `tune` None
    and the reason in `error`.

  Raises:
    errors.CorpusError: a row lacks a column or has a non-numeric id.
  """
  for number, raw in enumerate(rows, 1):
    row = check_row(raw, number, where)
    tune_id, setting_id = row_ids(row, number, where)
    text = session_abc(row)
    try:
      tune, error = abc_reader.read_tune(text, **options), ""
    except abc_reader.AbcError as e:
      tune, error = None, str(e)
    yield SessionTune(
      tune_id=tune_id,
      setting_id=setting_id,
      name=row["name"],
      type=row["type"],
      meter=row["meter"],
      mode=row["mode"],
      abc=text,
      tune=tune,
      error=error,
      date=row.get("date", ""),
      username=row.get("username", ""),
    )


def load_rows(path: str | os.PathLike) -> list:
  """The rows of The Session's `tunes.csv` or `tunes.json` (by the
  suffix), unchecked (`check_row`).

  Raises:
    errors.CorpusError: the file cannot be read or is not of this layout.
  """
  path = os.fspath(path)
  try:
    with open(path, encoding="utf-8", newline="") as f:
      if path.lower().endswith(".json"):
        rows = json.load(f)
        if not isinstance(rows, list):
          raise errors.CorpusError(f"{path}: not a JSON list of tunes")
        return rows
      return list(csv.DictReader(f))
  except OSError as e:
    raise errors.CorpusError(f"{path}: {e.strerror or e}") from None
  except (ValueError, csv.Error) as e:  # JSONDecodeError is a ValueError
    raise errors.CorpusError(
      f"{path}: not The Session's layout ({e})"
    ) from None


def read_session(path: str | os.PathLike, **options) -> list[SessionTune]:
  """Reads The Session's `tunes.csv` or `tunes.json` (by the suffix).

  Args:
    path: the file.
    **options: `abc_reader.read_tune`'s options (repeats, propagate).

  Returns:
    One SessionTune per row, in file order.

  Raises:
    errors.CorpusError: the file cannot be read or is not of this layout.
  """
  return list(read_rows(load_rows(path), os.fspath(path), **options))
