"""The combined folk corpus (`configs/folk.py`) with a large model for an
accelerator: bfloat16 matmuls, LSTMs of 1,024, 1,024 and 512 units, wider
embeddings, a global batch of 512 windows of 128 events.

  python train_main.py --config=configs/folk_gpu.py --workdir=runs/folk_gpu

As `configs/gpu.py` does for ESAC: the batch is global (split across
devices and hosts), parameters and sums stay float32, cuDNN on a GPU
(`lstm_impl='auto'`). Not measured on an accelerator in this repository:
the sizes, batch and learning rate are a starting point, not a tuned
result.
"""

import ml_collections

from configs import folk, gpu


def get_config() -> ml_collections.ConfigDict:
  config = folk.get_config()
  accelerator = gpu.get_config()
  config.model.dtype = accelerator.model.dtype  # bfloat16 matmul inputs
  config.model.lstm_impl = accelerator.model.lstm_impl
  config.model.lstm_sizes = (1024, 1024, 512)
  config.model.pitch_embed_dim = 256
  config.model.duration_embed_dim = 64
  config.train.seq_len = 128  # events per window
  config.train.batch_size = 512  # global windows, split across devices
  config.train.num_train_steps = 8000
  config.train.learning_rate = 2e-3
  config.eval.batch_size = 512
  return config
