"""Pretraining on the other folk collections, then fine-tuning on O'Neill's,
against O'Neill's trained alone: O'Neill's test bits per note.

  .venv/bin/python -m benchmarks.bench_pretrain --out_dir runs/pretrain \
      [--folk_midi CACHE/folk_midi] [--oneills_midi CACHE/oneills_midi]

Steps, each `train_main.py` in a subprocess (runs already in `--out_dir`
are reused, so a second call only scores):

1. `alone`: `configs/oneills.py` on O'Neill's (grid 24, splits by groups,
   5% validation, 5% test): its dataset is the reference.
2. `pretrain`: the same model and schedule (`--pretrain_steps`) on ESAC,
   Ryan's, Aird's and the miscellaneous tunes (the folk conversion without
   its `oneills/` folder, linked into `OUT/others_midi`), leaving out every
   song that matches an O'Neill's test or validation song
   (`config.data.exclude_test_of`, `exclude_valid`).
3. `finetune` (or `--finetune NAME`, with `--finetune_steps` and
   `--finetune_learning_rate`): `configs/finetune.py` from the pretrained
   run on O'Neill's, batches of 64, the same splits as `alone` (checked),
   the pretrained run's vocabularies.

Prints each run's test bits per note (both streams, pitch, duration; the
best validation step, as `melodyjax-evaluate` scores) and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os

from benchmarks import runs
from melodyjax import files
from melodyjax.data import dataset as dataset_lib
from melodyjax.data import tokenize

COMMON = {"data.grid": 24, "data.valid_fraction": 0.05}
FINETUNE = {
  "data.test_fraction": 0.05,
  "train.batch_size": 64,
  "train.num_train_steps": 400,
  "train.eval_every_steps": 50,
  "train.checkpoint_every_steps": 50,
  "train.log_every_steps": 50,
}


def link_others(folk_midi: str, out: str) -> str:
  """Links the folk conversion without O'Neill's into `out`, with its
  tunes.json (metre hints) and conversion.json."""
  if os.path.isdir(out):
    return out
  for relpath in tokenize.list_midi_files(folk_midi):
    if relpath.startswith("oneills/"):
      continue
    target = os.path.join(out, relpath)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.symlink(os.path.join(folk_midi, relpath), target)
  with open(os.path.join(folk_midi, "tunes.json")) as f:
    tunes = json.load(f)
  others = {k: v for k, v in tunes.items() if not k.startswith("oneills/")}
  files.write_json(os.path.join(out, "tunes.json"), others)
  with open(os.path.join(folk_midi, "conversion.json")) as f:
    files.write_json(os.path.join(out, "conversion.json"), json.load(f))
  return out


def _train(config: str, workdir: str, overrides: dict) -> None:
  if not os.path.exists(os.path.join(workdir, "config.json")):
    minutes = runs.train_main(config, workdir, overrides)
    print(f"{os.path.basename(workdir)}: {minutes:.1f} min", flush=True)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out_dir", required=True)
  parser.add_argument("--folk_midi", default=files.cache_dir("folk_midi"))
  parser.add_argument("--oneills_midi", default=files.cache_dir("oneills_midi"))
  parser.add_argument("--pretrain_steps", type=int, default=1200)
  parser.add_argument("--pretrain_eval_every", type=int, default=300)
  parser.add_argument(
    "--finetune",
    default="finetune",
    help="the fine-tuned run's name in --out_dir (one per schedule)",
  )
  parser.add_argument("--finetune_steps", type=int, default=400)
  parser.add_argument("--finetune_learning_rate", type=float, default=5e-4)
  args = parser.parse_args()
  out = os.path.abspath(os.path.expanduser(args.out_dir))
  os.makedirs(out, exist_ok=True)
  oneills = {
    **COMMON,
    "data.midi_dir": os.path.expanduser(args.oneills_midi),
    "data.dataset_dir": os.path.join(out, "oneills_data"),
  }
  _train("oneills", os.path.join(out, "alone"), oneills)
  others = link_others(
    os.path.expanduser(args.folk_midi), os.path.join(out, "others_midi")
  )
  _train(
    "oneills",
    os.path.join(out, "pretrain"),
    {
      **COMMON,
      "data.midi_dir": others,
      "data.dataset_dir": os.path.join(out, "others_data"),
      "data.exclude_test_of": oneills["data.dataset_dir"],
      "data.exclude_valid": True,
      "train.num_train_steps": args.pretrain_steps,
      "train.warmup_steps": 100,
      "train.eval_every_steps": args.pretrain_eval_every,
      "train.checkpoint_every_steps": args.pretrain_eval_every,
    },
  )
  finetune = {
    **oneills,
    **FINETUNE,
    "data.dataset_dir": os.path.join(out, "oneills_finetune_data"),
    "init_from": os.path.join(out, "pretrain"),
    "train.num_train_steps": args.finetune_steps,
    "train.learning_rate": args.finetune_learning_rate,
  }
  _train("finetune", os.path.join(out, args.finetune), finetune)
  report(out)


def report(out: str) -> None:
  """Prints the comparison of the runs in `out`."""
  test = {
    name: sorted(dataset_lib.load_dataset(path).test.sources.tolist())
    for name, path in (
      ("alone", os.path.join(out, "oneills_data")),
      ("finetune", os.path.join(out, "oneills_finetune_data")),
    )
  }
  assert test["alone"] == test["finetune"], "the test splits differ"
  with open(os.path.join(out, "others_data", "report.json")) as f:
    excluded = json.load(f)["excluded"]
  print(
    f"pretraining corpus: {excluded['excluded']} songs left out as matches "
    f"of O'Neill's {excluded['reference_songs']} test and validation songs"
  )
  scores = {}
  tuned = sorted(n for n in os.listdir(out) if n.startswith("finetune"))
  for name in ("alone", *tuned):
    scores[name] = runs.test_bits(os.path.join(out, name))
    s = scores[name]
    pitch, duration = s["bits_per_note_pitch"], s["bits_per_note_duration"]
    print(
      f"{name}: {s['bits_per_note']:.3f} bits/note (pitch {pitch:.3f}, "
      f"duration {duration:.3f}) on {len(test['alone'])} test tunes"
    )
  for name in tuned:
    ratio = scores[name]["bits_per_note"] / scores["alone"]["bits_per_note"]
    print(f"{name} / alone: {ratio:.3f}x")


if __name__ == "__main__":
  main()
