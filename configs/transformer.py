"""The melody Transformer on ESAC, sized for a 2-core CPU: the LSTM
recipe's streams, conditions (metre, mode, style) and heads (the duration
given the pitch, configs/best_cpu.py) around a causal decoder
(`model.arch='transformer'`, melodyjax/model/transformer.py).

  python train_main.py --config=configs/transformer.py --workdir=runs/esac_tf

4 blocks of width 128 (4 heads, MLP 512, rotary positions), windows of 128
events: 98% of ESAC's training songs whole (median 49 events with eos; the
longer ones are cut into windows), 3,000 steps of 32 windows.
Measured in BENCHMARKS.md ("A melody Transformer (issue 27)"): stopped
at step 1,000 (406 process CPU seconds on 2 shared cores), test 3.318 bits
per note, 0.985x the best baseline given the same labels (ALiBi 3.340);
with 500 steps (194 CPU seconds) 3.554 against the LSTM recipe's 3.563 at
850 steps (153 CPU seconds). The full 3,000 steps were not run (the
machine was too loaded).
"""

import ml_collections

from configs import best_cpu


def get_config() -> ml_collections.ConfigDict:
  config = best_cpu.get_config()
  config.model.arch = "transformer"
  config.model.transformer_width = 128
  config.model.transformer_layers = 4
  config.model.transformer_heads = 4
  config.model.transformer_ff = 512
  config.model.transformer_position = "rope"
  config.model.transformer_dropout = 0.1
  config.train.seq_len = 128  # events per window (the whole song mostly)
  config.train.batch_size = 32
  config.train.num_train_steps = 3000
  config.train.learning_rate = 1e-3
  config.train.warmup_steps = 200
  config.train.eval_every_steps = 500
  config.train.checkpoint_every_steps = 500
  config.train.sample_every_steps = 1500
  config.eval.batch_size = 64
  return config
