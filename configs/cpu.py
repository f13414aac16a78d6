"""The seed model on ESAC, sized to train in a few minutes on a 2-core CPU.

  python train_main.py --config=configs/cpu.py --workdir=runs/esac_cpu

`make run` runs exactly this: 1,500 steps, about 10 epochs of ESAC's 9,838
training windows, in about 4.5 minutes on a 2-core CPU (validation about
3.6 bits per note).
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.train.num_train_steps = 1500
  config.train.warmup_steps = 100
  config.train.eval_every_steps = 250
  config.train.checkpoint_every_steps = 250
  config.train.sample_every_steps = 500
  return config
