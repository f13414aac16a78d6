"""The reference model on one or more GPUs (or a TPU slice): bfloat16
matmuls and a large global batch.

  python train_main.py --config=configs/gpu.py --workdir=runs/esac_gpu

The batch of 1,024 windows is global: one GPU takes all of it, eight take
128 each (`--config.train.batch_size=8192` keeps 1,024 per device). At 1,024
windows a step covers about a tenth of ESAC's 9,838 training windows, so
2,000 steps are about 210 epochs, the default's 130 epochs scaled to a 16x
batch with a higher peak learning rate. A TPU runs this file unchanged
(bfloat16 is its native matmul type). Not measured on an accelerator in this
repository: the batch and learning rate are a starting point, not a tuned
result.
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.model.dtype = "bfloat16"  # matmul inputs; params and sums stay f32
  config.model.lstm_impl = "auto"  # cuDNN on a GPU, else fused (TPU)
  config.train.batch_size = 1024  # global, split across devices and hosts
  config.train.num_train_steps = 2000
  config.train.learning_rate = 4e-3  # 2x the default for a 16x batch
  config.train.warmup_steps = 200
  config.train.eval_every_steps = 250
  config.train.checkpoint_every_steps = 250
  config.train.sample_every_steps = 500
  config.eval.batch_size = 1024
  config.sample.num_outputs = 8
  return config
