"""The classical baselines and the model runs, corpus by corpus, side by side.

  .venv/bin/python -m benchmarks.bench_baselines \\
      --run esac_norm:plain=runs/esac_cpu --run esac_norm:conditioned=... \\
      [--cross oneills_norm:plain=runs/esac_cpu] [--markdown FILE]

One row per corpus and key setting (`ROWS`: ESAC and O'Neill's 1850,
key-normalised and as written): the test bits per note of each baseline
(`evaluation.baselines`: the n-gram, the short-term PPM, IDyOM's
combination, and `best`, per stream the one best on validation), each
fitted on that dataset's training split, then each model run given for the
row (`--run ROW:COLUMN=WORKDIR`, its best validation step, scored by
`predict.score_split` on the same test songs) with its ratio to `best`;
a run conditioned on labels (metre, mode, style) first with its ratio to
the best baseline given the same labels (`evaluation.labelled`), then to
`best`, without them. Every cell is both streams, then pitch + duration.

`--cross ROW:COLUMN=WORKDIR` adds a cross-corpus row: the run scored on
that row's corpus (its MIDI folder tokenized with the run's vocabularies,
key setting and grid: `evaluation.cross`, as `melodyjax-evaluate
--midi_dir` does), beside baselines fitted on the same tokens; the share
of unk events (tokens the run never saw) is printed with it.

Scores are cached in `--cache` (a dataset's baselines by its manifest, a
run's by its best step), so a rerun after one more run is quick.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import sys

if __name__ == "__main__":
  from melodyjax.cli import runtime

  runtime.reexec_with_fast_malloc()

from benchmarks import results, runs  # noqa: E402
from melodyjax import files  # noqa: E402
from melodyjax.data import dataset as dataset_lib  # noqa: E402
from melodyjax.evaluation import (  # noqa: E402
  baselines,
  cross,
  labelled,
  predict,
)

DATASETS = files.cache_dir("datasets")
ROWS = {  # name: (label, dataset folder)
  "esac_norm": ("ESAC key-normalised", "esac"),
  "esac_written": ("ESAC as written", "esac_written"),
  "oneills_norm": ("O'Neill's key-normalised", "oneills"),
  "oneills_written": ("O'Neill's as written", "oneills_written"),
}
BASELINE_COLUMNS = (
  ("ngram", "n-gram"),
  ("short_term", "short-term"),
  ("idyom", "IDyOM"),
  ("best", "best on validation"),
)
DEFAULT_CACHE = files.cache_dir("bench_baselines.json")


def parse_spec(text: str) -> tuple[str, str, str]:
  """ROW:COLUMN=WORKDIR (COLUMN optional: 'model') to its three parts."""
  key, sep, workdir = text.partition("=")
  row, _, column = key.partition(":")
  if not sep or row not in ROWS or not workdir:
    raise SystemExit(
      f"bench_baselines: --run/--cross {text!r}: expected ROW:COLUMN=WORKDIR "
      f"with ROW one of {', '.join(ROWS)}"
    )
  return row, column or "model", os.path.abspath(os.path.expanduser(workdir))


def _digest(dataset: dataset_lib.Dataset) -> str:
  with open(os.path.join(dataset.path, "manifest.json"), "rb") as f:
    return hashlib.sha1(f.read()).hexdigest()[:16]


def _cached(cache: dict, key: str, compute):
  if key not in cache["entries"]:
    cache["entries"][key] = compute()
    files.write_json(cache["path"], cache["entries"])
  return cache["entries"][key]


def baseline_scores(dataset: dataset_lib.Dataset, cache: dict) -> dict:
  """{baseline: test scores} of a dataset, fitted on its training split."""

  def compute():
    print(f"  fitting the baselines on {dataset.path}", file=sys.stderr)
    fitted = baselines.fit(dataset)
    return baselines.score(dataset, fitted, "test")

  return _cached(cache, f"baselines:{dataset.path}:{_digest(dataset)}", compute)


def labelled_scores(
  dataset: dataset_lib.Dataset, kinds: tuple[str, ...], cache: dict
) -> dict:
  """{baseline: test scores} of the baselines given the labels `kinds`
  (`evaluation.labelled`: what a run conditioned on them is compared with)."""

  def compute():
    print(
      f"  fitting the baselines given {', '.join(kinds)} on {dataset.path}",
      file=sys.stderr,
    )
    fitted = labelled.fit(dataset, baselines.fit(dataset), kinds)
    return labelled.score(dataset, fitted, "test")

  key = f"labelled:{','.join(kinds)}:{dataset.path}:{_digest(dataset)}"
  return _cached(cache, key, compute)


def model_scores(run, dataset: dataset_lib.Dataset, cache: dict) -> dict:
  """The run's test scores on `dataset` (tokenized with its vocabularies)."""
  key = f"model:{run.workdir}:{run.step}:{dataset.path}:{_digest(dataset)}"

  def compute():
    print(f"  scoring {run.workdir} step {run.step}", file=sys.stderr)
    return predict.score_split(run, "test", dataset)

  return _cached(cache, key, compute)


def own_dataset(run, row_dataset: dataset_lib.Dataset) -> dataset_lib.Dataset:
  """The run's dataset if it holds the row's test songs in the row's
  tokens, else the row's corpus tokenized with the run's vocabularies."""
  own = predict.load_dataset_of(run)
  same = (
    own.pitch_vocab.tokens == row_dataset.pitch_vocab.tokens
    and own.duration_vocab.tokens == row_dataset.duration_vocab.tokens
    and list(own.test.sources) == list(row_dataset.test.sources)
  )
  if same:
    return own
  return cross.load_corpus(run, dataset_dir=row_dataset.path).dataset


def cell(
  scores: dict, best: float | None = None, given: float | None = None
) -> str:
  """'both (pitch + duration)', with the ratio to `best` when given; for a
  conditioned run first its ratio to `given`, the best baseline given its
  labels, then the one to `best`, without them."""
  text = (
    f"{scores['bits_per_note']:.3f} ({scores['bits_per_note_pitch']:.3f} + "
    f"{scores['bits_per_note_duration']:.3f})"
  )
  if given is not None:
    text += (
      f", {scores['bits_per_note'] / given:.3f}x given its labels ({given:.3f})"
    )
  if best is not None:
    ratio = scores["bits_per_note"] / best
    text += f", {ratio:.3f}x" + " without" * (given is not None)
  return text


def score_rows(args, cache: dict) -> tuple[list[dict], list[str]]:
  """Every row: {"label", "baselines", "models": {column: scores},
  "unknown": ..., "runs": {column: (workdir, step)}}; the model columns."""
  runs_of = {}
  for row, column, workdir in map(parse_spec, args.run):
    runs_of.setdefault(row, {})[column] = workdir
  columns = []
  out = []
  for row, (label, folder) in ROWS.items():
    path = os.path.expanduser(os.path.join(args.datasets, folder))
    if not os.path.exists(os.path.join(path, "manifest.json")):
      print(f"{label}: no dataset in {path}; row left out", file=sys.stderr)
      continue
    print(f"{label}: {path}", file=sys.stderr)
    dataset = dataset_lib.load_dataset(path)
    entry = {
      "key": row,
      "label": label,
      "baselines": baseline_scores(dataset, cache),
    }
    entry["models"], entry["runs"] = {}, {}
    entry["given"] = {}
    for column, workdir in runs_of.get(row, {}).items():
      run = runs.best_run(workdir)
      data = own_dataset(run, dataset)
      entry["models"][column] = model_scores(run, data, cache)
      entry["runs"][column] = (workdir, run.step)
      kinds = tuple(run.model.config.conditions)
      if kinds:  # a conditioned run: its baselines get its labels
        entry["given"][column] = labelled_scores(data, kinds, cache)
      columns += [column] if column not in columns else []
    out.append(entry)
  for row, column, workdir in map(parse_spec, args.cross):
    run = runs.best_run(workdir)
    label, folder = ROWS[row]
    path = os.path.expanduser(os.path.join(args.datasets, folder))
    midi_dir = dataset_lib.load_dataset(path).report["midi_dir"]
    corpus = cross.load_corpus(run, midi_dir=midi_dir, progress=True)
    name = os.path.basename(workdir)
    print(f"{label}, by {name}: {cross.format_unknown(corpus.unknown)}")
    out.append(
      {
        "key": f"{row}_by_{name}",
        "label": f"{label}, by {name} (its tokens, grid "
        f"{run.config.data.grid})",
        "baselines": baseline_scores(corpus.dataset, cache),
        "models": {column: model_scores(run, corpus.dataset, cache)},
        "runs": {column: (workdir, run.step)},
        "unknown": corpus.unknown,
      }
    )
    columns += [column] if column not in columns else []
  return out, columns


def markdown(rows: list[dict], columns: list[str]) -> str:
  """The table: baselines, then the model columns with their ratio."""
  header = ["corpus", *(h for _, h in BASELINE_COLUMNS), *columns]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for entry in rows:
    best = entry["baselines"]["best"]["bits_per_note"]
    cells = [entry["label"]]
    cells += [cell(entry["baselines"][name]) for name, _ in BASELINE_COLUMNS]
    given = entry.get("given", {})
    cells += [
      cell(
        entry["models"][c],
        best,
        given[c]["best"]["bits_per_note"] if c in given else None,
      )
      if c in entry["models"]
      else "-"
      for c in columns
    ]
    lines.append("| " + " | ".join(cells) + " |")
  notes = [
    f"- {entry['label']}, {column}: `{workdir}` step {step}"
    for entry in rows
    for column, (workdir, step) in entry["runs"].items()
  ]
  for entry in rows:
    if "unknown" in entry:
      notes.append(
        f"- {entry['label']}: {cross.format_unknown(entry['unknown'])}"
      )
  return "\n".join(lines + [""] + notes) + "\n"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--run", action="append", default=[])
  parser.add_argument("--cross", action="append", default=[])
  parser.add_argument("--datasets", default=DATASETS)
  parser.add_argument("--cache", default=DEFAULT_CACHE)
  parser.add_argument("--markdown", default="", help="also write it here")
  parser.add_argument("--out", default=results.DEFAULT_PATH)
  args = parser.parse_args()
  cache_path = os.path.expanduser(args.cache)
  entries = {}
  if os.path.exists(cache_path):
    with open(cache_path) as f:
      entries = json.load(f)
  rows, columns = score_rows(args, {"path": cache_path, "entries": entries})
  date = datetime.date.today().isoformat()
  text = (
    f"Test bits per note, both streams (pitch + duration), {date}; "
    "model runs at their best validation step, ratio to `best` (a "
    "conditioned run's first to the best baseline given its labels).\n\n"
    + markdown(rows, columns)
  )
  print(text)
  if args.markdown:
    files.write_text(args.markdown, text)
  results.merge(
    args.out,
    [
      (
        f"baselines_best_bits_{entry['key']}",
        entry["baselines"]["best"]["bits_per_note"],
        "bits/note",
      )
      for entry in rows
    ],
  )


if __name__ == "__main__":
  main()
