"""The best CPU recipe on O'Neill's 1850: `configs/oneills.py` with the
model of `configs/best_cpu.py` (conditioned on metre, mode and style, the
duration head reading the event's pitch) and 1,500 steps instead of 3,000
(the plain run's best step was 1,000 of 3,000: it overfits the 1,466
training tunes).

  python train_main.py --config=configs/best_oneills.py --workdir=runs/oneills2
  melodyjax-evaluate --workdir=runs/oneills2 --step=best

Measured on O'Neill's test split (`python -m benchmarks.bench_baselines`,
BENCHMARKS.md "Baselines side by side", 2-core AMD EPYC), against the
best baseline without labels (IDyOM's combination on both streams; the
model reads metre, mode and style, the baseline does not, and the
comparison given the same labels, `benchmarks/bench_labelled.py`, is not
measured on O'Neill's yet: on ESAC it took 0.888x to 0.989x):
key-normalised 2.880 bits per note (pitch 2.148, duration 0.732), 0.915x;
as written
(`--config.data.normalize_key=False
--config.data.dataset_dir=~/.cache/melodyjax/datasets/oneills_written`)
2.971, 0.938x. Conditioned without the duration head: 2.920 (1,500
steps), 2.955 (best of 3,000).
"""

import ml_collections

from configs import best_cpu, oneills


def get_config() -> ml_collections.ConfigDict:
  config = oneills.get_config()
  config.model = best_cpu.get_config().model
  config.train.num_train_steps = 1500
  return config
