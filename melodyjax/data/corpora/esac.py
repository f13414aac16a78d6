"""ESAC, the Essen folksong collection: what is particular to it. No JAX.

music21 ships it as `music21/corpus/essenFolksong/*.abc`: 27 files
("opera") of 8,462 tunes, not counting the `test*.abc` files. Two things
need its own code:
- German key names. 'K: H' and 'K: Es' mean B and E flat; music21 reads
  them as C and E. They are renamed before parsing.
- Its metre (`metre_hints`). The MIDI files of the conversion lose two
  things that the ABC text states: a pickup bar starts at time 0 (so the
  bar lines are shifted by its length), and tunes without a meter ('M:
  none', 'M: FREI4/4') get music21's default 4/4. `metre_hints` reads the
  ABC files once (text only, well under a second) and gives, for each MIDI
  file, the pickup's length in quarter notes, or `NO_METER` for a tune
  without a meter (its bar positions are unknown).

The pickup is the length of the first bar holding a note when it is
shorter than the meter's bar (ESAC has no tuplets or chords; note lengths
are multiples of the L: unit; bars before the first note are skipped).
For each of 586 sampled tunes with a meter this equals music21's own
pickup (the padding of its first measure).
"""

from __future__ import annotations

import fractions
import pathlib
import re
from collections.abc import Sequence

from melodyjax.data.corpora import abc_text
from melodyjax.music import metre

# Key names in German spelling that music21 misreads (seen in ESAC: H, Es).
_GERMAN_KEYS = {
  "H": "B",
  "Es": "Eb",
  "As": "Ab",
  "Des": "Db",
  "Ges": "Gb",
  "Fis": "F#",
  "Cis": "C#",
}
_KEY_LINE = re.compile(r"^(K:[ \t]*)([A-Za-z]+)([ \t]*)$", re.MULTILINE)
_METER = re.compile(r"^M:\s*(\d+)/(\d+)\s*$", re.M)
_UNIT = re.compile(r"^L:\s*(\d+)/(\d+)", re.M)
_NOTE = re.compile(r"[_=^]*[A-Ga-gz][,']*(\d*)(/*)(\d*)")
NO_METER = metre.NO_METER


def abc_pickup(text: str) -> fractions.Fraction | None:
  """The pickup of one ESAC tune in quarter notes (0: none), or None when
  the tune has no meter."""
  head, _, body = text.partition("\nK:")
  body = body.partition("\n")[2]
  meter = _METER.search(head)
  if meter is None:
    return None
  unit = _UNIT.search(head)
  unit = (
    fractions.Fraction(int(unit.group(1)), int(unit.group(2)))
    if unit
    else fractions.Fraction(1, 8)
  )
  bar = fractions.Fraction(int(meter.group(1)), int(meter.group(2)))
  for segment in body.split("|"):
    total = fractions.Fraction(0)
    for note in _NOTE.finditer(segment):
      count, slashes, divisor = note.groups()
      length = unit * int(count or 1)
      if divisor:
        length /= int(divisor)
      elif slashes:
        length /= 2 ** len(slashes)
      total += length
    if total:
      return 4 * total if total < bar else fractions.Fraction(0)
  return fractions.Fraction(0)


def rename_german_keys(text: str) -> str:
  """Rewrites K: fields in German spelling ('H', 'Es') in English."""

  def replace(match: re.Match) -> str:
    name = _GERMAN_KEYS.get(match.group(2), match.group(2))
    return match.group(1) + name + match.group(3)

  return _KEY_LINE.sub(replace, text)


def includes(path: pathlib.Path) -> bool:
  """Whether an ABC file of the folder belongs to the corpus (not test*)."""
  return not path.name.startswith("test")


def metre_hints(abc_files: Sequence[pathlib.Path]) -> dict[str, str]:
  """{MIDI relpath: pickup in quarters ('1/2') or NO_METER} of the tunes
  of these ABC files."""
  hints = {}
  for path in abc_files:
    for tune in abc_text.read_abc_tunes(path):
      pickup = abc_pickup(tune.text)
      hints[tune.relpath] = NO_METER if pickup is None else str(pickup)
  return hints
