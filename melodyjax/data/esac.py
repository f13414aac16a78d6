"""The built-in corpora, ESAC and O'Neill's 1850, from music21 to MIDI, once.

music21 ships both as ABC text:
- ESAC, the Essen folksong collection: `music21/corpus/essenFolksong/*.abc`,
  27 files ("opera") of 8,462 tunes, not counting the `test*.abc` files.
- O'Neill's "Music of Ireland" (1903), 1,850 Irish dance tunes:
  `music21/corpus/oneills1850/*.abc`, 39 files of 2,009 transcriptions of
  1,838 tune numbers (some tunes in two transcriptions, 13 numbers missing).
`convert_corpus` parses every tune with music21 (in worker processes, with a
progress bar) and writes one MIDI file per tune into a cache folder:

  OUT/<abc file stem>/<index in file, 4 digits>_<X: number>.mid
  OUT/conversion.json     counts, failures per tune, versions, seconds

Every file is written to a hidden temporary name and renamed, so a killed run
never leaves a half-written .mid. A later call finds the summary complete for
the same corpus, music21 and converter versions and returns it without
converting.

music21 needs these corrections, all made here for both corpora:
- ABC 2.1 accidentals. music21 reads ABC without a version line as ABC 1.3,
  where an accidental applies to its own note only. The transcriptions
  assume ABC 2.1 (it carries to the end of the bar); in ESAC about 3,600
  notes in 1,100 tunes would come out a semitone off. Tunes are parsed as
  ABC 2.1.
- Shared objects. When music21 re-bars an over-full bar it puts one
  TimeSignature object into several measures and its MIDI export then fails
  (about 900 ESAC tunes). Such objects are copied before export.
- Ties between different pitches (a slur written as a tie). music21 merges
  tied notes at export whatever their pitch, so a note would disappear. Such
  ties are removed; both notes are kept.
- German key names (ESAC only). 'K: H' and 'K: Es' mean B and E flat;
  music21 reads them as C and E. They are renamed before parsing.
And for what O'Neill's has and ESAC has not (each counted in the summary):
- Repeats are played once. music21's export expands repeat signs (and fails
  on about 1% of these tunes); a melody model should see each section once,
  as ESAC writes it. Repeat signs are removed, and first-time endings (the
  bars of an ending that closes with a repeat sign) are dropped: each
  section is played once, into its last ending.
- Grace notes are removed (music21 writes them as notes of no length).
- Chords (a few double stops) keep their top note, the melody; quoted
  strings that music21 reads as chord symbols (mostly dynamics: "f" would
  sound as an F major chord) are removed.
- A second voice, if any, is dropped: the first is the melody.
- A tune number seen before in another file with a title sharing a word is
  a second transcription of the same tune and is skipped (169 in O'Neill's;
  two pairs share a number but not a tune, and both are kept).

The key field names the tonic; ESAC writes minor and modal tunes under a
major signature with explicit accidentals. The key signature is written to
the MIDI file as given; finding the mode is left to the reader.

Each MIDI file (type 1, 10,080 ticks per quarter note) has a conductor track
(tempo 120, time signature, key signature) and one track with the tune's
notes on channel 1, named after the tune's title. Rests are gaps; rests at
the end of a tune leave no trace. As music21 writes them:
- A pickup (anacrusis) starts at time 0, with no leading gap, so bar lines
  counted from the time signature are shifted by the pickup's length.
- Tunes without a meter ('M: none', 214 ESAC tunes) get music21's 4/4.
- Bars longer than the meter are split by music21, with time signature
  changes in the MIDI file (about 900 ESAC tunes); notes are not changed.
- Tied notes of equal pitch become one note; tuplets keep their lengths
  (1/3 of a quarter note and so on, on the corpus grid).

Command line: `python -m melodyjax.esac [--corpus oneills] --out DIR
[--workers N]`.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
import multiprocessing
import os
import pathlib
import re
import sys
import time
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

from melodyjax import errors, files

CONVERTER_VERSION = 1  # ESAC's files are unchanged since version 1
ABC_VERSION = (2, 1, 0)
SUMMARY_NAME = "conversion.json"
INSTALL_HINT = "pip install 'melodyjax[corpus]'"
_CHUNK = 48  # tunes per worker task: a few seconds of work

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
_TUNE_START = re.compile(r"^X:", re.MULTILINE)
_NUMBER = re.compile(r"^X:[ \t]*(\d+)", re.MULTILINE)
_TITLE = re.compile(r"^T:[ \t]*(.*?)[ \t]*$", re.MULTILINE)


@dataclasses.dataclass(frozen=True)
class Corpus:
  """A corpus that music21 ships as ABC files.

  Attributes:
    name: the name in commands and cache folders ('esac', 'oneills').
    label: the name in messages.
    folder: its folder in music21/corpus.
    german_keys: K: fields may use German key names (H, Es).
    skip_duplicates: skip a tune whose number and title were seen before.
  """

  name: str
  label: str
  folder: str
  german_keys: bool = False
  skip_duplicates: bool = False

  def includes(self, path: pathlib.Path) -> bool:
    """Whether an ABC file of the folder belongs to the corpus."""
    return not (self.name == "esac" and path.name.startswith("test"))


CORPORA = {
  "esac": Corpus("esac", "ESAC", "essenFolksong", german_keys=True),
  "oneills": Corpus(
    "oneills", "O'Neill's 1850", "oneills1850", skip_duplicates=True
  ),
}
DEFAULT_CORPUS = "esac"


def get_corpus(name: str) -> Corpus:
  """The built-in corpus of that name; raises errors.EsacError if none."""
  try:
    return CORPORA[name]
  except KeyError:
    raise errors.EsacError(
      f"no built-in corpus {name!r}; choose one of {', '.join(CORPORA)}"
    ) from None


@dataclasses.dataclass(frozen=True)
class AbcTune:
  """One tune of an ABC file.

  Attributes:
    stem: the ABC file name without its suffix ('han1').
    index: position of the tune in its file, from 0.
    number: the reference number of its X: field (-1 if missing).
    title: the first T: field ('' if none).
    text: the tune's ABC text, file header included.
  """

  stem: str
  index: int
  number: int
  title: str
  text: str

  @property
  def relpath(self) -> str:
    """The MIDI file's path below the output folder."""
    return f"{self.stem}/{self.index:04d}_{self.number}.mid"


@dataclasses.dataclass
class Flattened:
  """What `flatten_score` changed in one tune.

  Attributes:
    repeats_removed: repeat signs removed (each section is played once).
    ending_bars_dropped: bars of first-time endings dropped.
    grace_notes_removed: grace notes removed.
    chords_flattened: chords reduced to their top note.
    chord_symbols_removed: quoted strings music21 reads as chord symbols
      (in O'Neill's mostly dynamics: "f" becomes an F major chord).
    voices_dropped: voices after the first one dropped.
  """

  repeats_removed: int = 0
  ending_bars_dropped: int = 0
  grace_notes_removed: int = 0
  chords_flattened: int = 0
  chord_symbols_removed: int = 0
  voices_dropped: int = 0


@dataclasses.dataclass
class TuneResult:
  """What converting one tune gave.

  Attributes:
    midi: the MIDI file's bytes.
    notes: number of notes in the MIDI file.
    rests: number of gaps between notes (silence before the first note and
      after the last one is not counted).
    pickup: length in quarter notes of an incomplete first bar, else 0.
    ties_removed: ties between different pitches that were removed.
    objects_copied: objects shared by several bars that were copied.
    flattened: what `flatten_score` changed (repeats, grace notes, ...).
  """

  midi: bytes
  notes: int
  rests: int
  pickup: float
  ties_removed: int
  objects_copied: int
  flattened: Flattened = dataclasses.field(default_factory=Flattened)


# --------------------------------------------------------------- locations


def default_midi_dir(corpus: str = DEFAULT_CORPUS) -> pathlib.Path:
  """Returns `$MELODYJAX_CACHE/<corpus>_midi` (default `~/.cache/melodyjax`),
  e.g. `~/.cache/melodyjax/esac_midi`."""
  cache = os.environ.get("MELODYJAX_CACHE") or os.path.join(
    "~", ".cache", "melodyjax"
  )
  return pathlib.Path(cache).expanduser() / f"{get_corpus(corpus).name}_midi"


def _import_music21():
  """Returns the music21 module or raises errors.EsacError naming the fix."""
  try:
    import music21  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise errors.EsacError(
      f"music21 is needed for the built-in corpora ({e}); install it with: "
      f"{INSTALL_HINT}"
    ) from None
  return music21


def find_abc_files(corpus: str = DEFAULT_CORPUS) -> list[pathlib.Path]:
  """Lists the ABC files of a built-in corpus in the installed music21.

  Args:
    corpus: 'esac' or 'oneills'.

  Returns:
    The corpus's `*.abc` files, sorted by name (ESAC: without `test*.abc`).

  Raises:
    errors.EsacError: music21 is not installed, or ships no such files.
  """
  spec = get_corpus(corpus)
  music21 = _import_music21()
  folder = pathlib.Path(music21.__file__).parent / "corpus" / spec.folder
  found = sorted(p for p in folder.glob("*.abc") if spec.includes(p))
  if not found:
    raise errors.EsacError(
      f"no {spec.label} files in {folder}; reinstall music21 with: "
      f"{INSTALL_HINT}"
    )
  return found


# ------------------------------------------------------------- ABC to MIDI


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
    title = _TITLE.search(body)
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


def read_abc_tunes(path: str | os.PathLike) -> list[AbcTune]:
  """Reads the tunes of one ABC file (see `split_abc_tunes`)."""
  path = pathlib.Path(path)
  return split_abc_tunes(path.read_text(encoding="utf-8"), path.stem)


def rename_german_keys(text: str) -> str:
  """Rewrites K: fields in German spelling ('H', 'Es') in English."""

  def replace(match: re.Match) -> str:
    name = _GERMAN_KEYS.get(match.group(2), match.group(2))
    return match.group(1) + name + match.group(3)

  return _KEY_LINE.sub(replace, text)


def parse_abc_tune(text: str, german_keys: bool = True):
  """Parses the ABC text of one tune as ABC 2.1 into a music21 Score.

  Accidentals carry to the end of the bar (ABC 2.1) unless the text says
  otherwise (%%propagate-accidentals, I:abc-version). The Score is not yet
  corrected for export; see `prepare_score_for_midi`.

  Args:
    text: one tune (X: to the end of its music).
    german_keys: rename German key names first (ESAC's 'H', 'Es').

  Returns:
    A music21 Score.
  """
  _import_music21()
  from music21 import abcFormat  # pylint: disable=g-import-not-at-top
  from music21.abcFormat import translate  # pylint: disable=g-import-not-at-top

  handler = abcFormat.ABCHandler(abcVersion=ABC_VERSION)
  handler.process(rename_german_keys(text) if german_keys else text)
  return translate.abcToStreamScore(handler)


def copy_shared_objects(score) -> int:
  """Gives each bar its own copy of objects that sit in several bars.

  music21's ABC re-barring (abcFormat.translate.reBar) puts one
  TimeSignature object into more than one Measure; its MIDI export then
  fails with "the object ... is already found in this Stream".

  Args:
    score: a music21 Score, changed in place.

  Returns:
    The number of objects copied.
  """
  from music21 import stream  # pylint: disable=g-import-not-at-top

  seen = set()
  copied = 0
  for measure in score.recurse().getElementsByClass(stream.Measure):
    for element in list(measure.elements):
      if isinstance(element, stream.Stream):
        continue
      if id(element) in seen:
        measure.replace(element, copy.deepcopy(element))
        copied += 1
      else:
        seen.add(id(element))
  return copied


def remove_pitch_changing_ties(score) -> int:
  """Removes ties between notes of different pitch; keeps both notes.

  ESAC writes some slurs as ties ('c-d'). music21's MIDI export merges any
  note with a 'stop' tie into the note before it (Stream.stripTies), so the
  second note would disappear. After this call a tie joins exactly the
  consecutive notes of equal pitch that were tied before.

  Args:
    score: a music21 Score, changed in place.

  Returns:
    The number of ties removed.
  """
  from music21 import note, stream, tie  # pylint: disable=g-import-not-at-top

  parts = list(score.getElementsByClass(stream.Part)) or [score]
  removed = 0
  for part in parts:
    events = [
      e for e in part.recurse().notesAndRests if e.duration.quarterLength > 0
    ]
    # linked[i]: event i is tied on to event i + 1.
    linked = []
    for current, following in zip(events, events[1:] + [None], strict=True):
      current_tie = getattr(current, "tie", None)
      tied = current_tie is not None and current_tie.type in (
        "start",
        "continue",
      )
      keep = (
        tied
        and type(current) is note.Note
        and type(following) is note.Note
        and current.pitch.ps == following.pitch.ps
      )
      removed += tied and not keep
      linked.append(keep)
    for i, event in enumerate(events):
      into = i > 0 and linked[i - 1]
      out = linked[i]
      kind = {
        (False, True): "start",
        (True, True): "continue",
        (True, False): "stop",
      }.get((into, out))
      old = getattr(event, "tie", None)
      if kind is None:
        if old is not None:
          event.tie = None
      elif old is None or old.type != kind:
        event.tie = tie.Tie(kind)
  return removed


def play_repeats_once(part) -> tuple[int, int]:
  """Removes repeat signs and first-time endings from a part.

  Each repeated section is then played once, into its last ending: an
  ending (a music21 RepeatBracket) whose last bar closes with a repeat sign
  leads back, so its bars are dropped and later bars move up.

  Args:
    part: a music21 Part (or Score without parts), changed in place.

  Returns:
    (repeat signs removed, bars dropped).
  """
  from music21 import bar, spanner, stream  # pylint: disable=g-import-not-at-top

  dropped = []
  for bracket in list(part.spannerBundle.getByClass(spanner.RepeatBracket)):
    bars = bracket.getSpannedElements()
    if bars and isinstance(bars[-1].rightBarline, bar.Repeat):
      dropped += [m for m in bars if m not in dropped]
    part.spannerBundle.remove(bracket)
  removed = 0
  for measure in part.getElementsByClass(stream.Measure):
    if isinstance(measure.leftBarline, bar.Repeat):
      measure.leftBarline = None
      removed += 1
    if isinstance(measure.rightBarline, bar.Repeat):
      measure.rightBarline = bar.Barline("regular")
      removed += 1
  for measure in sorted(dropped, key=lambda m: -m.offset):
    part.remove(measure, shiftOffsets=True)
  return removed, len(dropped)


def flatten_score(score) -> Flattened:
  """Makes a tune one line, played once: what O'Neill's needs.

  Drops voices after the first, plays repeats once (`play_repeats_once`),
  removes grace notes and chord symbols, and keeps the top note of each
  chord. ESAC has none
  of these, and its tunes pass unchanged.

  Args:
    score: a music21 Score, changed in place.

  Returns:
    The counts of what was changed.
  """
  from music21 import chord, harmony, note, stream  # pylint: disable=g-import-not-at-top

  done = Flattened()
  parts = list(score.getElementsByClass(stream.Part))
  for extra in parts[1:]:
    score.remove(extra)
    done.voices_dropped += 1
  melody = parts[0] if parts else score
  done.repeats_removed, done.ending_bars_dropped = play_repeats_once(melody)
  found = [(e, e.activeSite) for e in melody.recurse().notes]
  for element, site in found:
    if isinstance(element, harmony.Harmony):
      site.remove(element)  # music21 may write it as a chord
      done.chord_symbols_removed += 1
    elif element.duration.isGrace:
      site.remove(element)
      done.grace_notes_removed += 1
    elif isinstance(element, chord.Chord):
      top = note.Note(max(element.pitches, key=lambda p: p.ps))
      top.duration = element.duration
      top.tie = element.tie
      site.replace(element, top)
      done.chords_flattened += 1
  return done


def prepare_score_for_midi(score) -> tuple[int, int]:
  """Applies `copy_shared_objects` and `remove_pitch_changing_ties`.

  Args:
    score: a music21 Score, changed in place.

  Returns:
    (objects copied, ties removed).
  """
  return copy_shared_objects(score), remove_pitch_changing_ties(score)


def _pickup_quarters(score) -> float:
  """Returns the length of an incomplete first bar (anacrusis), else 0."""
  from music21 import stream  # pylint: disable=g-import-not-at-top

  first = score.recurse().getElementsByClass(stream.Measure).first()
  if first is None or not first.paddingLeft:
    return 0.0
  return float(first.duration.quarterLength)


def _set_title(score, title: str) -> None:
  """Names the tune's track after its title (a MIDI track_name)."""
  from music21 import instrument, stream  # pylint: disable=g-import-not-at-top

  if not title:
    return
  for part in score.getElementsByClass(stream.Part):
    if not part.getElementsByClass(instrument.Instrument):
      player = instrument.Instrument()
      player.partName = title
      part.insert(0, player)


def count_midi_notes(data: bytes) -> tuple[int, int]:
  """(notes, rests) of a MIDI file as the project's reader sees it."""
  from melodyjax.music import midi_io  # pylint: disable=g-import-not-at-top

  try:
    events = midi_io.read_midi(data).events
  except midi_io.MidiError:
    return 0, 0
  notes = sum(1 for event in events if event.pitches)
  return notes, len(events) - notes


def convert_abc_tune(
  text: str, title: str | None = None, *, corpus: str = DEFAULT_CORPUS
) -> TuneResult:
  """Converts the ABC text of one tune to a MIDI file.

  Args:
    text: one tune (X: to the end of its music), as in a corpus file.
    title: name of the note track; default: the tune's first T: field.
    corpus: the corpus it comes from ('esac' renames German key names).

  Returns:
    The MIDI bytes and counts.

  Raises:
    Exception: whatever music21 raises for text it cannot handle.
  """
  from music21 import midi  # pylint: disable=g-import-not-at-top

  if title is None:
    match = _TITLE.search(text)
    title = match.group(1) if match else ""
  score = parse_abc_tune(text, get_corpus(corpus).german_keys)
  flattened = flatten_score(score)
  copied, removed = prepare_score_for_midi(score)
  pickup = _pickup_quarters(score)
  _set_title(score, title)
  # Latin-1: the charset mido assumes for meta text when reading.
  midi_file = midi.translate.streamToMidiFile(score, encoding="latin-1")
  data = midi_file.writestr()
  notes, rests = count_midi_notes(data)
  return TuneResult(
    midi=data,
    notes=notes,
    rests=rests,
    pickup=pickup,
    ties_removed=removed,
    objects_copied=copied,
    flattened=flattened,
  )


def convert_abc_tune_text(text: str) -> bytes:
  """Returns the MIDI file of one tune's ABC text (see `convert_abc_tune`)."""
  return convert_abc_tune(text).midi


# ---------------------------------------------------------------- corpus


Job = tuple[str, str, list[AbcTune]]  # (out_dir, corpus name, tunes)


def _convert_chunk(args: Job) -> list[dict]:
  """Worker task: converts and writes some tunes, one result dict each."""
  out_dir, corpus, tunes = args
  results = []
  for tune in tunes:
    record = {
      "file": tune.stem,
      "index": tune.index,
      "number": tune.number,
      "title": tune.title,
      "path": tune.relpath,
    }
    # music21 prints some warnings (beaming) to stderr; keep them per tune.
    stderr = io.StringIO()
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter("always")
      try:
        with contextlib.redirect_stderr(stderr):
          result = convert_abc_tune(tune.text, tune.title, corpus=corpus)
        target = pathlib.Path(out_dir) / tune.relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        files.write_bytes(target, result.midi)
      except Exception as e:  # pylint: disable=broad-except
        record["error"] = f"{type(e).__name__}: {e}"
      else:
        record.update(
          notes=result.notes,
          rests=result.rests,
          pickup=result.pickup,
          ties_removed=result.ties_removed,
          objects_copied=result.objects_copied,
          **dataclasses.asdict(result.flattened),
        )
    messages = [str(w.message) for w in caught]
    messages += [m.strip() for m in stderr.getvalue().splitlines() if m.strip()]
    if messages:
      record["warnings"] = messages
    results.append(record)
  return results


def _map_chunks(
  jobs: Sequence[Job], workers: int, progress: bool, label: str
) -> Iterable[list[dict]]:
  """Runs `_convert_chunk` on every job, in worker processes if workers > 1."""
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top

  bar = tqdm(
    total=sum(len(tunes) for _, _, tunes in jobs),
    desc=f"{label} to MIDI",
    unit="tune",
    disable=not progress,
    file=sys.stderr,
    mininterval=0.5,
  )
  with bar:
    if workers <= 1 or len(jobs) <= 1:
      for job in jobs:
        result = _convert_chunk(job)
        bar.update(len(result))
        yield result
    else:
      # forkserver: safe even when the caller has already started JAX threads.
      method = "forkserver" if sys.platform.startswith("linux") else "spawn"
      context = multiprocessing.get_context(method)
      with context.Pool(workers) as pool:
        for result in pool.imap_unordered(_convert_chunk, jobs):
          bar.update(len(result))
          yield result


def _make_jobs(
  out_dir: str, corpus: str, files_tunes: Sequence[list[AbcTune]]
) -> list[Job]:
  """Cuts every file's tunes into chunks; big files first for balance."""
  jobs = []
  for tunes in files_tunes:
    for i in range(0, len(tunes), _CHUNK):
      jobs.append((out_dir, corpus, tunes[i : i + _CHUNK]))
  # Longest chunks (by ABC text) first, so that no worker ends alone.
  jobs.sort(key=lambda job: -sum(len(t.text) for t in job[2]))
  return jobs


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


def _summary_is_fresh(
  out_dir: pathlib.Path,
  summary: dict,
  corpus: str,
  limits: dict,
  music21_version: str,
) -> bool:
  """True if a previous run's summary matches this request and its files."""
  if not (
    summary.get("complete")
    and summary.get("corpus", "esac") == corpus
    and summary.get("converter_version") == CONVERTER_VERSION
    and summary.get("music21_version") == music21_version
    and summary.get("limits") == limits
  ):
    return False
  written = sum(1 for _ in out_dir.glob("*/*.mid"))
  return written == summary.get("written")


def _remove_leftovers(out_dir: pathlib.Path, keep: set[str]) -> None:
  """Deletes temporary files and .mid files this run did not write."""
  for path in out_dir.glob("*/.*" + files.TMP_SUFFIX):
    path.unlink(missing_ok=True)
  for path in out_dir.glob("*/*.mid"):
    if path.relative_to(out_dir).as_posix() not in keep:
      path.unlink(missing_ok=True)


def convert_corpus(
  out_dir: str | os.PathLike,
  *,
  corpus: str = DEFAULT_CORPUS,
  workers: int | None = None,
  limit_files: int | None = None,
  limit_tunes: int | None = None,
  progress: bool = True,
  force: bool = False,
) -> dict:
  """Converts the tunes of a built-in corpus of music21 to MIDI files.

  Writes `out_dir/<abc file stem>/<index:04d>_<X number>.mid` per tune and
  the summary `out_dir/conversion.json`. If that summary says a previous run
  for the same corpus, limits, music21 version and converter version
  completed (and its files are there), it is returned at once.

  Args:
    out_dir: the output folder (created if missing).
    corpus: 'esac' or 'oneills' (`CORPORA`).
    workers: processes; default: all cores. 1 converts in this process.
    limit_files: convert only the first N ABC files (for tests).
    limit_tunes: convert only the first N tunes of each file (for tests).
    progress: show a progress bar on stderr.
    force: convert even if a matching summary exists.

  Returns:
    The summary: counts of files, tunes, duplicates skipped, written and
    failed tunes, notes, rests, tunes with a pickup bar, ties removed,
    shared objects copied, repeats, endings, grace notes, chords and voices
    flattened, failures with their reason per tune, music21 warnings per
    tune, seconds taken, versions; "reused" is True when a previous run was
    returned.

  Raises:
    errors.EsacError: music21 is missing, the corpus unknown, or out_dir
      cannot be written.
  """
  spec = get_corpus(corpus)
  music21_version = str(_import_music21().__version__)
  out_dir = pathlib.Path(out_dir).expanduser()
  limits = {"files": limit_files, "tunes_per_file": limit_tunes}
  previous = None if force else _previous_summary(out_dir)
  if previous and _summary_is_fresh(
    out_dir, previous, spec.name, limits, music21_version
  ):
    previous["reused"] = True
    return previous
  started = time.time()
  abc_files = find_abc_files(spec.name)[:limit_files]
  files_tunes = [read_abc_tunes(path)[:limit_tunes] for path in abc_files]
  summary: dict[str, Any] = {
    "complete": False,
    "reused": False,
    "corpus": spec.name,
    "label": spec.label,
    "converter_version": CONVERTER_VERSION,
    "music21_version": music21_version,
    "abc_version": ".".join(map(str, ABC_VERSION[:2])),
    "limits": limits,
    "files": len(abc_files),
    "tunes": sum(map(len, files_tunes)),
    "tunes_per_file": {
      path.stem: len(tunes)
      for path, tunes in zip(abc_files, files_tunes, strict=True)
    },
  }
  duplicates = []
  if spec.skip_duplicates:
    files_tunes, duplicates = skip_duplicates(files_tunes)
  try:
    out_dir.mkdir(parents=True, exist_ok=True)
    files.write_json(out_dir / SUMMARY_NAME, summary)
  except OSError as e:
    raise errors.EsacError(
      f"cannot write to {out_dir}: {e.strerror or e}"
    ) from None
  jobs = _make_jobs(str(out_dir), spec.name, files_tunes)
  workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
  records = []
  for chunk in _map_chunks(jobs, workers, progress, spec.label):
    records.extend(chunk)
  records.sort(key=lambda r: r["path"])
  if limit_files is None and limit_tunes is None:
    _remove_leftovers(out_dir, {r["path"] for r in records if "error" not in r})
  summary.update(
    _totals(records),
    duplicates=len(duplicates),
    duplicates_skipped=duplicates,
    workers=workers,
    seconds=round(time.time() - started, 2),
  )
  files.write_json(out_dir / SUMMARY_NAME, summary)
  return summary


def _previous_summary(out_dir: pathlib.Path) -> dict | None:
  try:
    return json.loads((out_dir / SUMMARY_NAME).read_text())
  except (OSError, ValueError):
    return None


def _totals(records: list[dict]) -> dict[str, Any]:
  """The summary's counts, failures and warnings from the tunes' records."""
  done = [r for r in records if "error" not in r]
  failed = [r for r in records if "error" in r]
  return {
    "complete": True,
    "written": len(done),
    "failed": len(failed),
    "notes": sum(r["notes"] for r in done),
    "rests": sum(r["rests"] for r in done),
    "pickup_tunes": sum(1 for r in done if r["pickup"]),
    "ties_removed": sum(r["ties_removed"] for r in done),
    "shared_objects_copied": sum(r["objects_copied"] for r in done),
    **{
      field.name: sum(r[field.name] for r in done)
      for field in dataclasses.fields(Flattened)
    },
    "failures": [
      {k: r[k] for k in ("path", "file", "index", "number", "title", "error")}
      for r in failed
    ],
    "warnings": [
      {"path": r["path"], "messages": r["warnings"]}
      for r in records
      if "warnings" in r
    ],
  }


def format_summary(summary: dict) -> str:
  """Returns the one-line report of a conversion summary."""
  flattened = [
    f"{summary[key]} {label}"
    for key, label in (
      ("duplicates", "second transcriptions skipped"),
      ("repeats_removed", "repeat signs removed"),
      ("ending_bars_dropped", "first-ending bars dropped"),
      ("grace_notes_removed", "grace notes removed"),
      ("chords_flattened", "chords flattened"),
      ("chord_symbols_removed", "chord symbols removed"),
      ("voices_dropped", "voices dropped"),
    )
    if summary.get(key)
  ]
  return (
    f"{summary.get('label', 'ESAC')}: {summary['written']}/"
    f"{summary['tunes'] - summary.get('duplicates', 0)} tunes from "
    f"{summary['files']} files written, "
    f"{summary['failed']} failed; {summary['notes']} notes, "
    f"{summary['rests']} rests"
    + "".join(f"; {item}" for item in flattened)
    + f"; {summary['seconds']:.1f} s (music21 {summary['music21_version']})"
    + (", already done" if summary.get("reused") else "")
  )
