"""Fine-tuning against training from scratch on a corpus the base never saw.

  .venv/bin/python -m benchmarks.bench_finetune --base runs/esac_cpu \
      [--midi_dir ~/.cache/melodyjax/oneills_midi] [--sizes 25,100,400,all]

For each training-set size N, a folder holds N training tunes of the corpus
plus all of its validation and test tunes (the split is a hash of each
file's path, so every N shares the same held-out songs). Three models are
fitted on the same N tunes, all with the base run's vocabularies (so their
bits per note count the same targets; the share of unknown events is
printed): the n-gram baseline (`ngram.fit_streams`), a model trained from
scratch, and the base run fine-tuned (`configs/finetune.py`), each
`train_main.py` run in a subprocess keeping its best validation step. The
table gives test bits per note (both streams, each song from its start, as
`melodyjax-evaluate`) and the minutes each run took.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

if __name__ == "__main__":
  from melodyjax.cli import runtime

  runtime.reexec_with_fast_malloc()

from benchmarks import results, runs  # noqa: E402
from melodyjax import files  # noqa: E402
from melodyjax.data import build, dataset, tokenize  # noqa: E402
from melodyjax.evaluation import ngram  # noqa: E402
from melodyjax.training import runs as runs_lib  # noqa: E402

SPLIT = dataset.CorpusConfig(valid_fraction=0.1, test_fraction=0.1)
SCRATCH = {  # from scratch: the default schedule, shortened, best step kept
  "train.num_train_steps": 1500,
  "train.learning_rate": 2e-3,
  "train.warmup_steps": 100,
}


def subset(midi_dir: str, size: int | None, out: str) -> int:
  """Links `size` training tunes (all if None) and every held-out tune."""
  os.makedirs(out, exist_ok=True)
  train = 0
  for relpath in tokenize.list_midi_files(midi_dir):
    split = dataset.assign_split(relpath, SPLIT)
    if split == "train":
      if size is not None and train >= size:
        continue
      train += 1
    target = os.path.join(out, relpath)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.symlink(os.path.join(midi_dir, relpath), target)
  return train


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--base", required=True, help="the base run's workdir")
  parser.add_argument("--midi_dir", default=files.cache_dir("oneills_midi"))
  parser.add_argument("--sizes", default="25,100,400,all")
  parser.add_argument("--out", default=results.DEFAULT_PATH)
  args = parser.parse_args()
  midi_dir = os.path.expanduser(args.midi_dir)
  base = os.path.abspath(os.path.expanduser(args.base))
  rows, figures = [], []
  with tempfile.TemporaryDirectory(prefix="bench_finetune_") as tmp:
    for size_text in args.sizes.split(","):
      size = None if size_text == "all" else int(size_text)
      folder = os.path.join(tmp, f"midi_{size_text}")
      count = subset(midi_dir, size, folder)
      data = os.path.join(tmp, f"data_{size_text}")
      common = {"data.vocab_from": base, "data.max_unk_share": 1.0}
      where = {"data.midi_dir": folder, "data.dataset_dir": data}
      scratch_minutes = runs.train_main(
        "finetune",
        os.path.join(tmp, f"scratch_{size_text}"),
        {**where, **common, **SCRATCH},
      )
      tuned_minutes = runs.train_main(
        "finetune",
        os.path.join(tmp, f"tuned_{size_text}"),
        {**where, **common, "init_from": base},
      )
      base_run = runs_lib.from_workdir(base)
      built = build.build_dataset(
        folder,
        data,
        SPLIT,
        progress=False,
        vocabs=(base_run.pitch_vocab, base_run.duration_vocab),
      )
      start = time.perf_counter()
      fitted = ngram.fit_streams(built)
      baseline = ngram.evaluate_streams(built, fitted, "test")["bits_per_note"]
      ngram_minutes = (time.perf_counter() - start) / 60
      scratch, tuned = (
        runs.test_bits(os.path.join(tmp, f"{kind}_{size_text}"))[
          "bits_per_note"
        ]
        for kind in ("scratch", "tuned")
      )
      unk = built.report["unknown_tokens"]
      rows.append(
        (
          count,
          baseline,
          ngram_minutes,
          scratch,
          scratch_minutes,
          tuned,
          tuned_minutes,
          unk["pitch"]["share"],
          unk["duration"]["share"],
        )
      )
      print(rows[-1], flush=True)
      figures += [
        (f"finetune_{size_text}_ngram_bits", baseline, "bits/note"),
        (f"finetune_{size_text}_scratch_bits", scratch, "bits/note"),
        (f"finetune_{size_text}_tuned_bits", tuned, "bits/note"),
        (f"finetune_{size_text}_tuned_minutes", tuned_minutes, "min"),
      ]
  print(
    "| training tunes | n-gram | from scratch | fine-tuned | unk pitch / "
    "duration |\n|---|---|---|---|---|"
  )
  for n, b, bm, s, sm, t, tm, up, ud in rows:
    print(
      f"| {n:,} | {b:.3f} ({bm:.1f} min) | {s:.3f} ({sm:.1f} min) | "
      f"{t:.3f} ({tm:.1f} min) | {100 * up:.2f}% / {100 * ud:.2f}% |"
    )
  results.merge(args.out, figures)


if __name__ == "__main__":
  main()
