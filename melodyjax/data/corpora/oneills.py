"""O'Neill's "Music of Ireland" (1903): what is particular to it. No JAX.

music21 ships it as `music21/corpus/oneills1850/*.abc`: 39 files of 2,009
transcriptions of 1,838 tune numbers (some tunes in two transcriptions, 13
numbers missing). A tune number seen before in another file with a title
sharing a word is a second transcription of the same tune and is skipped
(169 in O'Neill's; two pairs share a number but not a tune, and both are
kept). Its repeats, grace notes, chords, chord symbols and second voices
are what `music21_abc.flatten_score` handles.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from melodyjax.data.corpora.abc_text import AbcTune


def _title_words(title: str) -> set[str]:
  words = set(re.findall(r"[a-z]{3,}", title.lower()))
  return words - {"the", "and", "setting"}


def skip_duplicates(
  files_tunes: Sequence[list[AbcTune]],
) -> tuple[list[list[AbcTune]], list[dict]]:
  """Drops second transcriptions of a tune, keeping the first in file order.

  A tune is a second transcription when an earlier one has the same X:
  number and a title that shares a word with it ('Kilkenny Jig, The' and
  'The Kilkenny Jig'); a number shared by two different titles is a typo in
  one of them, and both tunes are kept.

  Args:
    files_tunes: the tunes of each ABC file, files in name order.

  Returns:
    (the tunes kept, per file; one record per tune skipped).
  """
  seen: dict[int, list[AbcTune]] = {}
  kept, skipped = [], []
  for tunes in files_tunes:
    keep = []
    for tune in tunes:
      earlier = [
        t
        for t in seen.get(tune.number, [])
        if _title_words(t.title) & _title_words(tune.title)
      ]
      if earlier and tune.number >= 0:
        skipped.append(
          {
            "path": tune.relpath,
            "title": tune.title,
            "duplicate_of": earlier[0].relpath,
          }
        )
        continue
      seen.setdefault(tune.number, []).append(tune)
      keep.append(tune)
    kept.append(keep)
  return kept, skipped
