"""A tiny model that trains in seconds on a CPU (tests and smoke runs).

  python train_main.py --config=configs/tiny.py --workdir=/tmp/mj/tiny \
    --config.data.midi_dir=DIR --config.data.dataset_dir=/tmp/mj/tiny_data
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.model.pitch_embed_dim = 16
  config.model.duration_embed_dim = 8
  config.model.lstm_sizes = (32, 16)
  config.model.dense_size = 16
  config.train.seq_len = 16
  config.train.batch_size = 8
  config.train.num_train_steps = 20
  config.train.warmup_steps = 5
  config.train.log_every_steps = 5
  config.train.eval_every_steps = 10
  config.train.checkpoint_every_steps = 10
  config.train.progress = False
  config.train.sample_every_steps = 0  # only at the last step
  config.sample.num_outputs = 2
  config.sample.num_notes = 24
  config.eval.batch_size = 16
  config.checkpoint.async_save = False
  return config
