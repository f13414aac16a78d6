"""Fine-tuning a trained run on a small folder of your own tunes.

  python train_main.py --config=configs/finetune.py --workdir=runs/mine \
    --config.init_from=runs/esac_cpu \
    --config.data.midi_dir=DIR --config.data.dataset_dir=/tmp/mj/mine_data

Starts from the base run's parameters (its best step; `init_from` also
takes `WORKDIR:STEP` or a `.mjx` file from `melodyjax-export`) and
tokenizes the new folder with its vocabularies: a lower peak learning rate,
a short warm-up, and validation and checkpoints every 25 steps so that the
best step is kept (`sample_main.py --step=best`).

Measured (`python -m benchmarks.bench_finetune --base runs/esac_cpu`, the
`make run` model fine-tuned on O'Neill's 1850, 2-core AMD EPYC): test bits
per note 4.026 from 25 tunes in 1.1 min (from scratch: 4.605 in 4.0 min;
n-gram 4.248), 3.705 from 100 (4.133; 3.902), 3.526 from 400 (3.740;
3.734), 3.305 from all 1,466 (from scratch 3.187 wins there: give a large
corpus more steps). The README's fine-tuning table has them all.
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.data.valid_fraction = 0.1  # small corpora: enough songs to validate
  config.data.test_fraction = 0.1
  config.train.batch_size = 16  # a folder of 25 tunes holds ~40 windows
  config.eval.batch_size = 64
  config.train.num_train_steps = 300
  config.train.learning_rate = 5e-4
  config.train.warmup_steps = 20
  config.train.log_every_steps = 25
  config.train.eval_every_steps = 25
  config.train.checkpoint_every_steps = 25
  config.train.sample_every_steps = 0  # samples at the end
  config.checkpoint.max_to_keep = 2
  config.checkpoint.keep_best = 1
  return config
