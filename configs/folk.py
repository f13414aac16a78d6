"""The combined folk corpus (`melodyjax-convert --corpus folk`: ESAC,
O'Neill's, Ryan's, Aird's and music21's miscellaneous folk tunes, about
12,400 tunes), the best CPU recipe (`configs/best_cpu.py`: conditioned on
metre, mode and style, the style being the collection), 6,000 steps.

  python train_main.py --config=configs/folk.py --workdir=runs/folk
  melodyjax-evaluate --workdir=runs/folk --step=best

Converts the five collections to MIDI on first use (the abc reader: 45 CPU
seconds, 12,725 tunes and 898,441 events; 186 s with 2 workers on a 2-core
machine at load 24, `benchmarks/bench_convert.py`) into the cache's
`folk_midi` and builds its dataset there: 12,725 songs (train 11,447,
valid 638, test 640 with the per-path split; the leak-free split, now the
default, moves groups), 898,478 events, 52 s at load 24. The grid is
O'Neill's 24 steps per quarter (the hornpipes' 3/8 and 1/8 of a
quarter). The step costs what best_cpu's does (the corpus does not change
the model): 6,000 steps, twice best_cpu's 3,000 for about twice its
events, are about 30 minutes on a quiet 2-core CPU, under an hour on a
busy one. Expected result: not yet
measured (no run of it in this repository); ESAC alone reads 3.200 bits
per note with best_cpu.
"""

import ml_collections

from configs import best_cpu
from melodyjax.data import config as data_config


def get_config() -> ml_collections.ConfigDict:
  config = best_cpu.get_config()
  config.data.midi_dir, config.data.dataset_dir = data_config.corpus_folders(
    "folk"
  )
  config.data.grid = 24  # steps per quarter: O'Neill's and Ryan's lengths
  config.train.num_train_steps = 6000
  config.train.warmup_steps = 200
  config.train.eval_every_steps = 500
  config.train.checkpoint_every_steps = 500
  config.train.sample_every_steps = 2000
  return config
