"""A built-in corpus from music21's ABC files to MIDI files, once, in parallel.

`convert_corpus` reads every tune (in worker processes, with a progress
bar) with one of two readers and writes one MIDI file per tune into a cache
folder:

  OUT/[<group>/]<abc file stem>/<index in file, 4 digits>_<X: number>.mid
  OUT/conversion.json     settings, counts, failures per tune, versions, seconds
  OUT/tunes.json          per MIDI file: title, collection, type, meter, key,
                          mode, pickup (what the dataset keeps of each song)

(the group, a folder above the stem, is the style label where the corpus
has one: the tune's type, R:, for Ryan's; the collection for `folk`).
`run_conversion` is the generic part, shared with a user's ABC
(`corpora.abc_source`).

- reader 'abc' (the default): the project's own reader (`abc_midi`,
  `music.abc_reader`), 11-13 times faster per core; it reads ESAC as
  music21 does and O'Neill's where music21 does not misread it
  (benchmarks/bench_abc.py).
- reader 'music21': music21's parser (`music21_abc`), the cross-check.
Repeats are played 'once' (each section once, into its last ending, as ESAC
writes its tunes; both readers) or performed as written, 'play' (repeat
signs and first and second endings; the abc reader).

The corpus, reader and repeats are the conversion's settings, written into
conversion.json; a folder holding a conversion with other settings is
refused (`force` replaces it), so that a folder never mixes two. Every file
is written to a hidden temporary name and renamed, so a killed run never
leaves a half-written .mid. A later call finds the summary complete for the
same settings, music21 and converter versions and returns it without
converting. What is particular to a corpus (which files, its text fixes,
second transcriptions skipped) comes from its `builtin.Corpus`.

Command line: `melodyjax-convert [--corpus oneills] [--reader abc|music21]
[--repeats once|play] --out DIR [--workers N]`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import multiprocessing
import os
import pathlib
import sys
import time
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

from melodyjax import errors, files
from melodyjax.data.corpora import builtin, music21_abc
from melodyjax.data.corpora import summary as summary_lib
from melodyjax.data.corpora.abc_text import AbcTune

CONVERTER_VERSION = 1  # ESAC's files are unchanged since version 1
SUMMARY_NAME = builtin.SUMMARY_NAME
TUNES_NAME = builtin.TUNES_NAME
READERS = builtin.READERS
REPEATS = builtin.REPEATS
_CHUNK = 48  # tunes per worker task: a few seconds of work


# (out_dir, corpus name, reader, repeats, tunes)
Job = tuple[str, str, str, str, list[AbcTune]]


def _convert_one(tune: AbcTune, corpus: str, reader: str, repeats: str):
  """(TuneResult, reader counts) of one tune by the chosen reader."""
  if reader == "abc":
    from melodyjax.data.corpora import abc_midi

    return abc_midi.convert_abc_tune(tune.text, corpus, repeats, tune.title)
  prepare = builtin.get_corpus(corpus).prepare_text
  return music21_abc.convert_abc_tune(prepare(tune.text), tune.title), {}


def _convert_chunk(args: Job) -> list[dict]:
  """Worker task: converts and writes some tunes, one result dict each."""
  out_dir, corpus, reader, repeats, tunes = args
  results = []
  for tune in tunes:
    record = {
      "file": tune.stem,
      "index": tune.index,
      "number": tune.number,
      "title": tune.title,
      "path": tune.relpath,
      "info": {"title": tune.title, "number": tune.number, **tune.info},
    }
    # music21 prints some warnings (beaming) to stderr; keep them per tune.
    stderr = io.StringIO()
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter("always")
      try:
        with contextlib.redirect_stderr(stderr):
          result, counts = _convert_one(tune, corpus, reader, repeats)
        target = pathlib.Path(out_dir) / tune.relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        files.write_bytes(target, result.midi)
      except Exception as e:
        record["error"] = f"{type(e).__name__}: {e}"
      else:
        record.update(
          notes=result.notes,
          rests=result.rests,
          pickup=result.pickup,
          ties_removed=result.ties_removed,
          objects_copied=result.objects_copied,
          repeats_played=counts.get("repeats_played", 0),
          constructs={k: v for k, v in counts.items() if v},
          **dataclasses.asdict(result.flattened),
        )
        record["info"].update(result.header)
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
  from tqdm import tqdm

  bar = tqdm(
    total=sum(len(job[-1]) for job in jobs),
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
  out_dir: str,
  settings: dict,
  files_tunes: Sequence[tuple[str, list[AbcTune]]],
) -> list[Job]:
  """Cuts every file's tunes (with the corpus that reads them) into chunks;
  big files first for balance."""
  _, reader, repeats = (settings[k] for k in builtin.SETTINGS)
  jobs = []
  for corpus, tunes in files_tunes:
    for i in range(0, len(tunes), _CHUNK):
      jobs.append((out_dir, corpus, reader, repeats, tunes[i : i + _CHUNK]))
  # Longest chunks (by ABC text) first, so that no worker ends alone.
  jobs.sort(key=lambda job: -sum(len(t.text) for t in job[-1]))
  return jobs


def reusable(
  out_dir: pathlib.Path,
  summary: dict | None,
  settings: dict,
  expected: dict,
  force: bool,
) -> dict | None:
  """A previous run's summary marked "reused" if it matches this request
  (its settings, each field of `expected`, its files) and not `force`;
  else None (convert)."""
  if force or not summary:
    return None
  if not _is_fresh(out_dir, summary, settings, expected):
    return None
  return {**summary, "reused": True}


def _is_fresh(
  out_dir: pathlib.Path, summary: dict, settings: dict, expected: dict
) -> bool:
  if not (
    summary.get("complete")
    and builtin.summary_settings(summary) == settings
    and all(summary.get(key) == value for key, value in expected.items())
  ):
    return False
  written = sum(1 for _ in out_dir.rglob("*.mid"))
  return written == summary.get("written")


def check_settings(
  out_dir: pathlib.Path, previous: dict | None, settings: dict, force: bool
) -> None:
  """Refuses a folder holding a conversion with other settings, unless
  `force`: then its MIDI files are deleted (never mixed with new ones).

  Raises:
    errors.ConversionError: other settings there, and not `force`.
  """
  if previous is None:
    return
  found = builtin.summary_settings(previous)
  if found == settings:
    return
  if not force:
    raise errors.ConversionError(
      f"{out_dir} holds a conversion with {builtin.describe_settings(found)} "
      f"({SUMMARY_NAME}), not {builtin.describe_settings(settings)}: give "
      "another output folder, or --force to replace it"
    )
  _remove_leftovers(out_dir, set())


def _remove_leftovers(out_dir: pathlib.Path, keep: set[str]) -> None:
  """Deletes temporary files and .mid files this run did not write."""
  for path in out_dir.rglob(".*" + files.TMP_SUFFIX):
    path.unlink(missing_ok=True)
  for path in out_dir.rglob("*.mid"):
    if path.relative_to(out_dir).as_posix() not in keep:
      path.unlink(missing_ok=True)


def convert_corpus(
  out_dir: str | os.PathLike,
  *,
  corpus: str = builtin.DEFAULT_CORPUS,
  reader: str | None = builtin.DEFAULT_READER,
  repeats: str = builtin.DEFAULT_REPEATS,
  workers: int | None = None,
  limit_files: int | None = None,
  limit_tunes: int | None = None,
  progress: bool = True,
  force: bool = False,
) -> dict:
  """Converts the tunes of a built-in corpus of music21 to MIDI files.

  Writes `out_dir/<abc file stem>/<index:04d>_<X number>.mid` per tune and
  the summary `out_dir/conversion.json`; a completed previous run of the
  same settings, limits and versions is returned at once, one of other
  settings (corpus, reader, repeats) refused.

  Args:
    out_dir: the output folder (created if missing).
    corpus: a name of `builtin.CORPORA`.
    reader: 'abc' (`abc_midi`) or 'music21' (`music21_abc`); None: that
      of a finished conversion in `out_dir` (`_reader_of`), else 'abc'.
    repeats: 'once' (each section once, into its last ending) or 'play'
      (repeats and endings performed; reader 'abc' only).
    workers: processes (default: all cores; 1: this process).
    limit_files, limit_tunes: only the first N ABC files, the first N
      tunes of each (for tests).
    progress: a progress bar on stderr.
    force: convert even if done, and replace a conversion of others.

  Returns:
    The summary: counts of files, tunes, duplicates skipped, written and
    failed tunes, notes, rests, pickups and of each construct changed,
    failures with their reason, music21 warnings per tune, seconds,
    versions; "reused" is True when a previous run was returned.

  Raises:
    errors.ConversionError: music21 missing, an unknown corpus, reader or
      repeats ('play' with music21), another conversion in out_dir (and
      not force), or out_dir not writable.
  """
  spec = builtin.get_corpus(corpus)
  out_dir = pathlib.Path(out_dir).expanduser()
  previous = builtin.read_summary(out_dir)
  reader = reader or _reader_of(previous, spec.name, repeats)
  settings = builtin.check_settings(spec.name, reader, repeats)
  music21_version = str(music21_abc.import_music21().__version__)
  limits = {"files": limit_files, "tunes_per_file": limit_tunes}
  check_settings(out_dir, previous, settings, force)
  expected = {
    "converter_version": CONVERTER_VERSION,
    "music21_version": music21_version,
    "limits": limits,
  }
  if reused := reusable(out_dir, previous, settings, expected, force):
    return reused
  per_file, files_tunes, duplicates = builtin.corpus_tunes(
    spec.name, limit_files, limit_tunes
  )
  return run_conversion(
    out_dir,
    _first_summary(spec, settings, expected, per_file, duplicates),
    files_tunes,
    workers=workers,
    progress=progress,
    prune=limit_files is None and limit_tunes is None,
  )


def _first_summary(spec, settings, expected, per_file, duplicates) -> dict:
  """A built-in corpus's summary before its tunes are converted."""
  return {
    "complete": False,
    "reused": False,
    **settings,
    "label": spec.label,
    **expected,
    "abc_version": ".".join(map(str, music21_abc.ABC_VERSION[:2])),
    "files": len(per_file),
    "tunes": sum(per_file.values()),
    "tunes_per_file": per_file,
    "duplicates": len(duplicates),
    "duplicates_skipped": duplicates,
  }


def run_conversion(
  out_dir: pathlib.Path,
  summary: dict[str, Any],
  files_tunes: Sequence[tuple[str, list[AbcTune]]],
  *,
  workers: int | None,
  progress: bool,
  prune: bool = True,
) -> dict:
  """Converts tunes to MIDI files in `out_dir` and writes the summary.

  Args:
    out_dir: the output folder (created if missing).
    summary: the summary's fields known before converting (settings,
      label, versions, files and tunes); completed and returned.
    files_tunes: (the corpus that reads them, the tunes of one file).
    workers: processes (default: all cores; 1: this process).
    progress: a progress bar on stderr.
    prune: delete .mid files in `out_dir` that this run did not write.

  Returns:
    The summary with the totals (`summary.totals`), workers and seconds.

  Raises:
    errors.ConversionError: out_dir not writable.
  """
  started = time.time()
  _write_summary(out_dir, summary)
  jobs = _make_jobs(
    str(out_dir), builtin.summary_settings(summary), files_tunes
  )
  workers = max(1, min(workers or os.cpu_count() or 1, len(jobs) or 1))
  records = []
  for chunk in _map_chunks(jobs, workers, progress, summary["label"]):
    records.extend(chunk)
  records.sort(key=lambda r: r["path"])
  if prune:
    _remove_leftovers(out_dir, {r["path"] for r in records if "error" not in r})
  files.write_json(
    out_dir / TUNES_NAME,
    {r["path"]: r["info"] for r in records if "error" not in r},
    indent=None,
  )
  summary.update(
    summary_lib.totals(records),
    workers=workers,
    seconds=round(time.time() - started, 2),
  )
  files.write_json(out_dir / SUMMARY_NAME, summary)
  return summary


def _reader_of(previous: dict | None, corpus: str, repeats: str) -> str:
  """The reader of a finished conversion of `corpus` with `repeats` (the
  two readers read ESAC alike), else the default."""
  found = previous and builtin.summary_settings(previous)
  if found and found["corpus"] == corpus and found["repeats"] == repeats:
    if previous.get("complete"):
      return found["reader"]
  return builtin.DEFAULT_READER


def _write_summary(out_dir: pathlib.Path, summary: dict) -> None:
  try:
    out_dir.mkdir(parents=True, exist_ok=True)
    files.write_json(out_dir / SUMMARY_NAME, summary)
  except OSError as e:
    raise errors.ConversionError(
      f"cannot write to {out_dir}: {e.strerror or e}"
    ) from None


format_summary = summary_lib.format_summary
