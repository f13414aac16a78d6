"""The seed's formulation: a window of seq_len events predicts the next one.

  python train_main.py --config=configs/seed.py --workdir=/tmp/mj/seed

Same model and data as configs/default.py; only the objective differs (one
target per window, one window per event), so an epoch has ~64x the windows.
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.train.objective = "last"
  config.train.seq_len = 64
  return config
