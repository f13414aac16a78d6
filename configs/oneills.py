"""O'Neill's 1850 Irish dance tunes (music21's `oneills1850`), the seed model.

  python train_main.py --config=configs/oneills.py --workdir=runs/oneills

Converts O'Neill's to MIDI (`python -m melodyjax.esac --corpus oneills`;
about 8 minutes with 2 workers, once) and builds its dataset on first use:
1,840 tunes, 194,549 notes. The grid is 24 steps per quarter note: the
hornpipes' dotted sixteenths and thirty-seconds (3/8 and 1/8 of a quarter)
fall between the 12 steps of the default grid. O'Neill's is about 2/5 of
ESAC's size, so 4,000 steps of 64 windows are about as many epochs as the
20,000 of configs/default.py would be on a corpus of ten times the windows
... cut to what a 2-core CPU trains in about 8 minutes.
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.data.midi_dir = "~/.cache/melodyjax/oneills_midi"
  config.data.dataset_dir = "~/.cache/melodyjax/datasets/oneills"
  config.data.grid = 24  # holds 1/8 of a quarter (hornpipes) and triplets
  config.train.num_train_steps = 4000
  config.train.warmup_steps = 200
  config.train.eval_every_steps = 250
  config.train.checkpoint_every_steps = 500
  config.train.sample_every_steps = 1000
  return config
