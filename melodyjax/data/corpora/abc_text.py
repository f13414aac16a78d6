"""The tunes of an ABC tunebook, as text: splitting, numbers, titles. No JAX.

A tunebook holds tunes that start at an `X:` field; lines before the first
one (the file header) belong to every tune, as music21 and ABC 2.1 read
them. Each tune keeps its file's stem and its index in the file, which name
its MIDI file in a converted corpus.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re

_TUNE_START = re.compile(r"^X:", re.MULTILINE)
_RHYTHM = re.compile(r"^R:[ \t]*(.*?)[ \t]*$", re.MULTILINE)
_NOT_A_NAME = re.compile(r"[^a-z0-9]+")
_NUMBER = re.compile(r"^X:[ \t]*(\d+)", re.MULTILINE)
TITLE = re.compile(r"^T:[ \t]*(.*?)[ \t]*$", re.MULTILINE)


@dataclasses.dataclass(frozen=True)
class AbcTune:
  """One tune of an ABC file.

  Attributes:
    stem: the ABC file name without its suffix ('han1').
    index: position of the tune in its file, from 0.
    number: the reference number of its X: field (-1 if missing).
    title: the first T: field ('' if none).
    text: the tune's ABC text, file header included.
    group: a folder above the stem ('' for none): the tune's style label.
    info: what is known of the tune beside its text (collection, type, The
      Session's tune and setting ids), kept with its song in the dataset.
  """

  stem: str
  index: int
  number: int
  title: str
  text: str
  group: str = ""
  info: dict = dataclasses.field(default_factory=dict, compare=False)

  @property
  def relpath(self) -> str:
    """The MIDI file's path below the output folder."""
    path = f"{self.stem}/{self.index:04d}_{self.number}.mid"
    return f"{self.group}/{path}" if self.group else path


def folder_name(text: str) -> str:
  """A label as a folder name: 'Slip Jig' -> 'slip_jig' ('' if nothing is
  left)."""
  return _NOT_A_NAME.sub("_", text.lower()).strip("_")[:40]


def rhythm(text: str) -> str:
  """The first R: field of a tune's text ('' if none)."""
  match = _RHYTHM.search(text)
  return match.group(1) if match else ""


def split_abc_tunes(text: str, stem: str = "") -> list[AbcTune]:
  """Splits the text of an ABC file into its tunes.

  Lines before the first X: field (the file header) are put in front of
  every tune, as music21 does.

  Args:
    text: the ABC file's text.
    stem: the file's name without suffix, recorded in each tune.

  Returns:
    The tunes in file order.
  """
  starts = [m.start() for m in _TUNE_START.finditer(text)]
  if not starts:
    return []
  header = text[: starts[0]]
  header = header if header.strip() else ""
  tunes = []
  for index, (start, end) in enumerate(
    zip(starts, starts[1:] + [len(text)], strict=True)
  ):
    body = text[start:end].strip("\n") + "\n"
    number = _NUMBER.match(body)
    title = TITLE.search(body)
    tunes.append(
      AbcTune(
        stem=stem,
        index=index,
        number=int(number.group(1)) if number else -1,
        title=title.group(1) if title else "",
        text=header + body,
      )
    )
  return tunes


def decode_abc(data: bytes) -> str:
  """An ABC file's text: UTF-8, else Latin-1 (older tunebooks), with the
  line ends of any system as LF."""
  try:
    text = data.decode("utf-8")
  except UnicodeDecodeError:
    text = data.decode("latin-1")
  return text.replace("\r\n", "\n").replace("\r", "\n")


def read_abc_tunes(path: str | os.PathLike) -> list[AbcTune]:
  """Reads the tunes of one ABC file (see `split_abc_tunes`)."""
  path = pathlib.Path(path)
  return split_abc_tunes(decode_abc(path.read_bytes()), path.stem)
