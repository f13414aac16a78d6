"""ESAC's metre from its ABC source: each tune's meter and pickup. No JAX.

The MIDI files of the ESAC conversion (`data.esac`) lose two things that
the ABC text states: a pickup bar starts at time 0 (so the bar lines are
shifted by its length), and tunes without a meter ('M: none', 'M:
FREI4/4') get music21's default 4/4. A folder holding the conversion's
summary (`conversion.json`) is an ESAC conversion: `metre_hints` reads the
ABC files once (text only, well under a second past music21's import) and
gives, for each MIDI file, the pickup's length in quarter notes, or None
for a tune without a meter (its bar positions are unknown).

The pickup is the length of the first bar holding a note when it is
shorter than the meter's bar (ESAC has no tuplets or chords; note lengths
are multiples of the L: unit; bars before the first note are skipped).
For each of 586 sampled tunes with a meter this equals music21's own
pickup (the padding of its first measure).
"""

from __future__ import annotations

import fractions
import os
import re

from melodyjax import errors

_METER = re.compile(r"^M:\s*(\d+)/(\d+)\s*$", re.M)
_UNIT = re.compile(r"^L:\s*(\d+)/(\d+)", re.M)
_NOTE = re.compile(r"[_=^]*[A-Ga-gz][,']*(\d*)(/*)(\d*)")
NO_METER = "none"  # a hint: the tune has no meter


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


def is_conversion(midi_dir: str) -> bool:
  """Whether `midi_dir` was written by the ESAC conversion."""
  from melodyjax.data import esac  # pylint: disable=g-import-not-at-top

  return os.path.isfile(os.path.join(midi_dir, esac.SUMMARY_NAME))


def metre_hints(midi_dir: str) -> dict[str, str]:
  """{MIDI relpath: pickup in quarters ('1/2') or NO_METER} for an ESAC
  conversion folder, else {} (music21 missing: {} too)."""
  if not is_conversion(midi_dir):
    return {}
  from melodyjax.data import esac  # pylint: disable=g-import-not-at-top

  try:
    paths = esac.find_abc_files()
  except errors.EsacError:
    return {}
  hints = {}
  for path in paths:
    for tune in esac.read_abc_tunes(path):
      pickup = abc_pickup(tune.text)
      hints[tune.relpath] = NO_METER if pickup is None else str(pickup)
  return hints
