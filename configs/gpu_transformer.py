"""The melody Transformer for one or more GPUs (or a TPU slice): bfloat16,
8 blocks of width 512, whole songs (windows of 512 events: ESAC's longest
is 520), a large global batch.

  python train_main.py --config=configs/gpu_transformer.py \
    --workdir=runs/esac_gpu_tf

Attention runs through `jax.nn.dot_product_attention`, cuDNN's fused kernel
on a GPU. Not measured on an accelerator in this repository (none was
lent): the sizes and learning rate are a starting point.
"""

import ml_collections

from configs import gpu


def get_config() -> ml_collections.ConfigDict:
  config = gpu.get_config()
  config.model.arch = "transformer"
  config.model.transformer_width = 512
  config.model.transformer_layers = 8
  config.model.transformer_heads = 8
  config.model.transformer_ff = 2048
  config.model.transformer_position = "rope"
  config.model.transformer_dropout = 0.1
  config.train.seq_len = 512
  config.train.batch_size = 256  # global windows of 512 events
  config.train.learning_rate = 6e-4
  config.train.warmup_steps = 500
  config.eval.batch_size = 256
  return config
