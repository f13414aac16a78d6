"""The seed model on ESAC, sized to train in a few minutes on a 2-core CPU.

  python train_main.py --config=configs/cpu.py --workdir=runs/esac_cpu

`make run` runs exactly this. About 1,500 steps (~8 epochs of ESAC).
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.train.num_train_steps = 1500
  config.train.warmup_steps = 100
  config.train.eval_every_steps = 250
  config.train.checkpoint_every_steps = 250
  return config
