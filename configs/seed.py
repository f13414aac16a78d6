"""The reference formulation: a window of seq_len events predicts the next one.

  python train_main.py --config=configs/seed.py --workdir=/tmp/mj/seed

Same model and data as configs/default.py; only the objective differs (one
target per window, one window per event and eos), so an epoch of ESAC has
421,295 windows, 43x the 9,838 of the default objective.
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.train.objective = "last"
  config.train.seq_len = 64
  return config
