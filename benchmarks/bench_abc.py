"""Benchmark: our ABC reader against the music21 path, per built-in corpus.

For every tune of a built-in corpus (`data.corpora.builtin.find_abc_files`,
O'Neill's second transcriptions included), the music21 path converts the
tune to MIDI
(`data.corpora.builtin.convert_tune`) and `midi_io.read_midi` reads it on the
corpus grid (12 steps per quarter for ESAC, 24 for O'Neill's); our reader
(`music.abc_reader`) reads the same text and its events are quantized the
same way (`abc_reader.quantize_events`, chords to their top note as the
corpus does). The pitch and duration sequences and the pickup are compared.

music21's results are cached (one JSON line per tune) under
`$MELODYJAX_CACHE/abc_check/` (default `~/.cache/melodyjax/abc_check/`):
converting all of ESAC with music21 takes several minutes. Only tunes
missing from the cache are converted (one process), so a run can be cut
and resumed.

Prints the share of identical tunes, the reasons for differences, and the
speed of both readers (tunes per second, this process, one core); writes
the differing tunes (first differing event, reason class) to
`--out_dir/abc_diff_<corpus>.json` (default: the cache folder).

Where the events differ, the text is changed as `MUSIC21_BUGS` says (each
change makes our reader read what music21 misreads: a note after 'H'
dropped, a '>' next to a slur or decoration ignored, ...); when some of
them make the events equal, the difference is music21's misreading, and its
names are the reason. Measured on an Intel Xeon (2 cores, one used), music21
10.5.1: ESAC 8,462 of 8,462 tunes identical (pickups too); O'Neill's 1,650
of 2,009 identical, 358 more explained by music21's misreadings, 1 not (an
accidental in a chord, which music21 does not carry; ABC 2.1 does); ours
about 2,400 (ESAC) and 1,250 (O'Neill's) tunes/s, music21 32 and 19.

On the corpora added since (2026-12-06, AMD EPYC, 2 vCPUs, load average
above 12): Ryan's 918 of 1,059 identical, 127 more explained by music21's
misreadings (98.7%); Aird's 1,006 of 1,180, 166 more (99.3%); misc 165 of
185, 14 more, 4 that music21 cannot convert (96.8%, 98.9% without those);
BENCHMARKS.md lists the rest.

Usage: `python -m benchmarks.bench_abc --corpus esac|oneills|ryans|airds|misc
[--limit N] [--music21_only] [--out_dir DIR]`.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import fractions
import io
import itertools
import json
import os
import pathlib
import platform
import re
import sys
import time
import warnings

GRIDS = {"esac": 12, "oneills": 24, "ryans": 24, "airds": 24, "misc": 24}


def cache_dir() -> pathlib.Path:
  """`$MELODYJAX_CACHE/abc_check` (default `~/.cache/melodyjax/abc_check`)."""
  root = os.environ.get("MELODYJAX_CACHE") or os.path.join(
    "~", ".cache", "melodyjax"
  )
  return pathlib.Path(root).expanduser() / "abc_check"


def list_tunes(corpus: str, limit: int | None) -> list:
  """The corpus's tunes (`abc_text.AbcTune`), `limit` spread evenly if given."""
  from melodyjax.data.corpora import abc_text, builtin

  tunes = [
    tune
    for path in builtin.find_abc_files(corpus)
    for tune in abc_text.read_abc_tunes(path)
  ]
  if limit and limit < len(tunes):
    tunes = [tunes[i * len(tunes) // limit] for i in range(limit)]
  return tunes


def _encode_events(events) -> list:
  return [[list(e.pitches), str(e.quarters)] for e in events]


def decode_events(encoded) -> list[tuple[tuple[int, ...], fractions.Fraction]]:
  """(pitches, quarters) per event from a cache record."""
  return [(tuple(p), fractions.Fraction(q)) for p, q in encoded]


def music21_record(tune, corpus: str) -> dict:
  """Converts one tune the music21 way; its events, pickup, key and time."""
  from melodyjax.data.corpora import builtin
  from melodyjax.music import midi_io

  record = {"path": tune.relpath}
  start = time.process_time()
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    try:
      with contextlib.redirect_stderr(io.StringIO()):
        result = builtin.convert_tune(tune.text, corpus, tune.title)
    except Exception as e:  # noqa: BLE001 - music21 raises anything
      record["error"] = f"{type(e).__name__}: {e}"
      record["seconds"] = time.process_time() - start
      return record
  record["seconds"] = time.process_time() - start
  record["pickup"] = str(fractions.Fraction(result.pickup).limit_denominator())
  try:
    song = midi_io.read_midi(result.midi, grid=GRIDS[corpus])
    exact = midi_io.read_midi(result.midi, grid=10080)
  except midi_io.MidiError as e:
    record["midi_error"] = e.reason
    return record
  record["events"] = _encode_events(song.events)
  record["exact"] = _encode_events(exact.events)
  record["start"] = str(song.start_quarters)
  record["key"] = song.key_signature
  record["time_signature"] = song.time_signature
  return record


def load_cache(path: pathlib.Path) -> dict[str, dict]:
  """{relpath: record} of a cache file (a cut last line is skipped)."""
  found = {}
  with contextlib.suppress(FileNotFoundError), open(path) as f:
    for line in f:
      with contextlib.suppress(ValueError):
        record = json.loads(line)
        found[record["path"]] = record
  return found


def music21_records(tunes, corpus: str, progress: bool = True) -> dict:
  """music21's record of every tune, converting those not yet cached."""
  import music21

  folder = cache_dir()
  folder.mkdir(parents=True, exist_ok=True)
  path = folder / f"{corpus}_music21_{music21.__version__}.jsonl"
  records = load_cache(path)
  missing = [t for t in tunes if t.relpath not in records]
  with open(path, "a") as f:
    for i, tune in enumerate(missing):
      record = music21_record(tune, corpus)
      f.write(json.dumps(record) + "\n")
      f.flush()
      records[tune.relpath] = record
      if progress and (i + 1) % 100 == 0:
        print(f"music21: {i + 1}/{len(missing)}", file=sys.stderr)
  return records


# music21's misreadings, each as a change of the ABC text that makes our
# reader read what music21 reads (to name the reason for a difference).
_NOTE_END = set("ABCDEFGabcdefgz0123456789/,']")
_NOTE_START = set('ABCDEFGabcdefgz^=_~["TLOPS')


def _broken_between_notes_only(body: str) -> str:
  """music21 ignores '>' unless a note token is on either side of it (not a
  slur's ')', a staccato '.', grace notes, a decoration...; quoted strings
  after it do not count)."""

  def keep(match: re.Match) -> str:
    if match.group().startswith('"'):
      return match.group()
    before = body[: match.start()].rstrip()[-1:]
    # A quoted string after it (a fingering) is passed over: '>"2"e' is kept.
    rest = re.sub(r'^(?:\s*"[^"]*")+', "", body[match.end() :])
    after = rest.lstrip()[:1]
    ok = before in _NOTE_END and after in _NOTE_START
    return match.group() if ok else " "

  return re.sub(r'"[^"]*"|[<>]+', keep, body)


def _graces_in_tuplets(body: str) -> str:
  """music21 counts grace notes right after '(p' among the tuplet's notes."""

  def fewer(match: re.Match) -> str:
    p, q, r, grace = match.groups()
    notes = int(r or p) - len(re.findall("[A-Ga-g]", grace))
    return f"{grace}({p}:{q or ''}:{max(notes, 0)}"

  return re.sub(r"\((\d)(?::(\d*))?(?::(\d*))?\s*(\{[^}]*\})", fewer, body)


_FIRST_ENDING = re.compile(r"(?:\[1|\|1)(?![\d,-])([^:\[]*?):\|")


def _ending_ends_only(body: str) -> str:
  """music21's first ending holds only its first bar and the one closing
  with ':|': the bars between are played."""

  def middle(match: re.Match) -> str:
    bars = match.group(1).split("|")
    return "|" + "|".join(bars[1:-1]) + ("|" if len(bars) > 2 else "")

  return re.sub(r"(?<=\|)\s*(?:\[2|\|2)", " ", _FIRST_ENDING.sub(middle, body))


def _ending_overfull(body: str) -> str:
  """music21 plays a first ending whose only bar is overfull (re-barred,
  its bracket holds a part of it and not the closing ':|')."""
  return _FIRST_ENDING.sub(lambda m: "|" + m.group(1) + "|", body)


def _decorated_accidentals(text: str) -> str:
  """music21 does not carry the accidental of a note after a decoration
  letter ('T=c', '~^f'): the key's accidental is restored after the note
  (as a grace note, whose accidental carries)."""
  from melodyjax.music import abc_reader

  match = re.search(r"^K:(.*)$", text, re.M)
  try:
    key = abc_reader.parse_key(match.group(1) if match else "")
  except abc_reader.AbcError:
    return text
  alterations = dict(key.alterations)
  signs = {-1: "_", 0: "=", 1: "^"}

  def restore(found: re.Match) -> str:
    letter = found.group(2)
    sign = signs.get(alterations.get(letter.upper(), 0), "=")
    return f"{found.group(0)}{{{sign}{letter}}}"

  pattern = r"(?<![A-Za-z])[~TLOPS]+([\^=_]+)([A-Ga-g])[,']*[\d/]*"
  return _with_body(text, lambda body: re.sub(pattern, restore, body))


def _dropped_note(match: re.Match) -> str:
  """A note of no length in its place (it still takes part in '>' and in
  tuplets) and its accidental as a grace note (it still carries)."""
  before, note = match.groups()
  accidental = f"{{{note}}}" if note and note[0] in "^=_" else ""
  return f"{before} {accidental}z0 "


_decorated_accidentals.whole_text = True


MUSIC21_BUGS = {
  # A note token starting with H (a fermata) is skipped unless a quoted
  # chord symbol comes first.
  "fermata_note_dropped": lambda body: re.sub(
    r"(?<![\"])H[.~^=_HLMOPSTuv]*[A-Za-z][\d/,']*", " ", body
  ),
  "invisible_rest_dropped": lambda body: re.sub(r"x[\d/]*", " ", body),
  # The last note before a '::' (end and start of a repeat) is skipped.
  "note_before_double_colon_dropped": lambda body: re.sub(
    r"[\^=_]*[A-Ga-g][,']*[\d/]*(?=\s*::)", " ", body
  ),
  "multi_bar_rest_dropped": lambda body: re.sub(r"Z\d*", " ", body),
  "inline_field_ignored": lambda body: re.sub(
    r"\[[A-Za-z]:[^\]\n]*\]", " ", body
  ),
  "broken_rhythm_ignored": _broken_between_notes_only,
  "accidental_after_decoration_not_carried": _decorated_accidentals,
  "grace_notes_counted_in_tuplet": _graces_in_tuplets,
  "first_ending_middle_bars_played": _ending_ends_only,
  "first_ending_overfull_played": _ending_overfull,
  # ABC 1's chord '+CE+' is read as its notes one after the other.
  "plus_chord_as_notes": lambda body: re.sub(
    r"\+((?:[_=^]*[A-Ga-g][,']*\d*(?:/+\d*)?){2,})\+", r" \1 ", body
  ),
  # A note whose (first) quoted string starts with '>' is skipped (music21
  # takes it for a fingering diagram); it still takes part in a '>'.
  "note_after_quoted_gt_dropped": lambda body: re.sub(
    r'"[\s()]*>[^"]*"((?:"[^"]*"|[\s(.]|\(\d[:\d]*|![^!\s]*!)*)'
    r"(?:[~HLOPST]*([\^=_]*[A-Ga-gz])[,']*[\d/]*|\[[^\]]*\][\d/]*)",
    _dropped_note,
    body,
  ),
}


def _with_body(text: str, change) -> str:
  """`change` applied to the tune's body (after its first K: line); a
  change marked `whole_text` gets the tune's whole text."""
  if getattr(change, "whole_text", False):
    return change(text)
  match = re.search(r"^K:.*$", text, re.M)
  if match is None:
    return text
  return text[: match.end()] + change(text[match.end() :])


def our_record(text: str, corpus: str) -> dict:
  """Our reading of one tune, quantized as the corpus's MIDI files are."""
  from melodyjax.music import abc_reader

  try:
    tune = abc_reader.read_tune(text, german_keys=corpus == "esac")
  except abc_reader.AbcError as e:
    return {"error": str(e), "construct": e.construct}
  events = abc_reader.quantize_events(tune.events, GRIDS[corpus])
  events = [(e.pitches[-1:], e.quarters) for e in events]  # the top note
  return {"events": events, "pickup": tune.pickup_quarters, "tune": tune}


def first_difference(ours: list, theirs: list) -> tuple[int, str]:
  """(index of the first differing event, 'pitch'|'duration'|'length')."""
  for i, (a, b) in enumerate(zip(ours, theirs, strict=False)):
    if a != b:
      return i, "pitch" if a[1] == b[1] else "duration"
  return min(len(ours), len(theirs)), "length" if ours != theirs else ""


def compare_tune(tune, record: dict, corpus: str) -> dict | None:
  """None if our events and pickup equal music21's, else what differs."""
  if "error" in record or "midi_error" in record:
    return {"reason": "music21 failed", "detail": record.get("error")}
  ours = our_record(tune.text, corpus)
  if "error" in ours:
    return {
      "reason": f"ours failed: {ours['construct']}",
      "detail": ours["error"],
    }
  theirs = decode_events(record["events"])
  pickup = fractions.Fraction(record["pickup"])
  if ours["events"] == theirs and ours["pickup"] == pickup:
    return None
  if ours["events"] == theirs:
    return {
      "reason": "pickup",
      "ours": str(ours["pickup"]),
      "music21": str(pickup),
    }
  index, kind = first_difference(ours["events"], theirs)
  onset = sum((q for _, q in theirs[:index]), fractions.Fraction(0))
  found = {
    "index": index,
    "onset_quarters": str(onset),
    "ours": [[list(p), str(q)] for p, q in ours["events"][index : index + 3]],
    "music21": [[list(p), str(q)] for p, q in theirs[index : index + 3]],
    "constructs": dict(ours["tune"].counts),
  }
  names = music21_bugs(tune.text, theirs, corpus)
  if names:
    return {"reason": f"music21 wrong: {' + '.join(names)}", **found}
  return {"reason": kind, **found}


def music21_bugs(text: str, theirs: list, corpus: str) -> list[str] | None:
  """The fewest `MUSIC21_BUGS` whose changes make our events music21's."""
  present = []
  changed = text
  for name, change in MUSIC21_BUGS.items():  # one may enable the next
    again = _with_body(changed, change)
    if again != changed or _with_body(text, change) != text:
      present.append(name)
    changed = again
  subsets = sorted(
    (
      s
      for n in range(len(present))
      for s in itertools.combinations(present, n + 1)
    ),
    key=len,
  )
  for subset in subsets:
    changed = text
    for name in subset:
      changed = _with_body(changed, MUSIC21_BUGS[name])
    if our_record(changed, corpus).get("events") == theirs:
      return list(subset)
  return None


def time_ours(tunes, corpus: str) -> float:
  """Seconds (this process's CPU time) our reader takes for `tunes`."""
  from melodyjax.music import abc_reader

  start = time.process_time()
  for tune in tunes:
    with contextlib.suppress(abc_reader.AbcError):
      abc_reader.read_tune(tune.text, german_keys=corpus == "esac")
  return time.process_time() - start


def esac_metre_pickups(tunes, corpus: str) -> int:
  """Tunes whose pickup differs from `data.corpora.esac.abc_pickup`'s (the
  tokenizer's metre hint today; None there means no meter: ours is 0)."""
  from melodyjax.data.corpora import esac as esac_metre
  from melodyjax.music import abc_reader

  differ = 0
  for tune in tunes:
    try:
      ours = abc_reader.read_tune(
        tune.text, german_keys=corpus == "esac"
      ).pickup_quarters
    except abc_reader.AbcError:
      continue
    hint = esac_metre.abc_pickup(tune.text)
    differ += ours != (hint or 0)
  return differ


def cpu_model() -> str:
  """The CPU's model name (Linux), else the platform's processor string."""
  with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
    for line in f:
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  return platform.processor() or "unknown"


def key_differences(tunes, records: dict, corpus: str) -> collections.Counter:
  """(ours, music21's) key signature pairs of the tunes where they differ."""
  from melodyjax.music import abc_reader

  pairs = collections.Counter()
  for tune in tunes:
    record = records[tune.relpath]
    if "key" not in record:
      continue
    try:
      ours = abc_reader.read_tune(tune.text, german_keys=corpus == "esac")
    except abc_reader.AbcError:
      continue
    if ours.key_signature != record["key"]:
      pairs[f"{ours.key_signature} vs {record['key']}"] += 1
  return pairs


def report(corpus: str, tunes, records: dict, out_dir: pathlib.Path) -> dict:
  """Compares every tune, prints the summary, writes the differences."""
  differences = []
  for tune in tunes:
    found = compare_tune(tune, records[tune.relpath], corpus)
    if found is not None:
      differences.append({"path": tune.relpath, "title": tune.title, **found})
  misread = collections.Counter()
  other = collections.Counter()
  for found in differences:
    if found["reason"].startswith("music21 wrong: "):
      misread.update(found["reason"].split(": ", 1)[1].split(" + "))
    else:
      other[found["reason"]] += 1
  ours_seconds = time_ours(tunes, corpus)
  theirs_seconds = sum(records[t.relpath].get("seconds", 0) for t in tunes)
  summary = {
    "corpus": corpus,
    "tunes": len(tunes),
    "identical": len(tunes) - len(differences),
    "identical_share": 1 - len(differences) / len(tunes),
    "identical_or_music21_wrong_share": 1 - other.total() / len(tunes),
    "music21_wrong": len(differences) - other.total(),
    "music21_misreadings_tunes": dict(misread.most_common()),
    "other_differences": dict(other.most_common()),
    "key_signatures_differing": dict(key_differences(tunes, records, corpus)),
    "pickups_differing_from_esac_metre": (
      esac_metre_pickups(tunes, corpus) if corpus == "esac" else None
    ),
    "ours_tunes_per_second": round(len(tunes) / ours_seconds, 1),
    "music21_tunes_per_second": round(len(tunes) / theirs_seconds, 1),
    "cpu": cpu_model(),
  }
  print(json.dumps(summary, indent=2))
  out_dir.mkdir(parents=True, exist_ok=True)
  path = out_dir / f"abc_diff_{corpus}.json"
  with open(path, "w") as f:
    json.dump({"summary": summary, "differences": differences}, f, indent=1)
  print(f"differences: {path}")
  return summary


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--corpus", choices=sorted(GRIDS), default="esac")
  parser.add_argument("--limit", type=int, default=None)
  parser.add_argument("--music21_only", action="store_true")
  parser.add_argument("--out_dir", default=None)
  args = parser.parse_args(argv)
  tunes = list_tunes(args.corpus, args.limit)
  records = music21_records(tunes, args.corpus)
  if args.music21_only:
    errors = collections.Counter("error" in records[t.relpath] for t in tunes)
    print(f"{len(tunes)} tunes cached, {errors[True]} music21 errors")
    return 0
  report(args.corpus, tunes, records, pathlib.Path(args.out_dir or cache_dir()))
  return 0


if __name__ == "__main__":
  sys.exit(main())
