"""O'Neill's 1850 Irish dance tunes (music21's `oneills1850`), the reference
model.

  python train_main.py --config=configs/oneills.py --workdir=runs/oneills

Converts O'Neill's to MIDI on first use (as `melodyjax-convert
--corpus oneills` does: 11 s with 2 workers with the abc reader, 425 s
with music21's, once) and builds its dataset (6-11 s): 1,840 tunes,
194,582 notes (194,546 from the abc reader, which reads some notes that
music21 misreads), 3,565 training windows of 64 events
(ESAC has 9,838). The grid is 24 steps per quarter note: the hornpipes'
dotted sixteenths and thirty-seconds (3/8 and 1/8 of a quarter) fall
between the 12 steps of the default grid. 3,000 steps of 64 windows are
about 54 epochs; the run's time and bits per note are not yet measured.
"""

import ml_collections

from configs import default
from melodyjax.data import config as data_config


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.data.midi_dir, config.data.dataset_dir = data_config.corpus_folders(
    "oneills"
  )
  config.data.grid = 24  # steps per quarter: holds 1/8 and triplets
  config.train.num_train_steps = 3000
  config.train.warmup_steps = 200
  config.train.eval_every_steps = 250
  config.train.checkpoint_every_steps = 500
  config.train.sample_every_steps = 1000
  return config
