"""The best CPU recipe on O'Neill's 1850: `configs/oneills.py` with the
model of `configs/best_cpu.py` (conditioned on metre, mode and style, the
duration head reading the event's pitch) and 1,500 steps instead of 3,000
(the plain run's best step was 1,000 of 3,000: it overfits the 1,466
training tunes).

  python train_main.py --config=configs/best_oneills.py --workdir=runs/oneills2
  melodyjax-evaluate --workdir=runs/oneills2 --step=best --memory

Measured on O'Neill's test split, key-normalised, converted by the abc
reader (2026-12-04, BENCHMARKS.md "The memory of the song"), against the
best baseline given the same labels (`evaluation.labelled`): repeats once
2.881 bits per note (pitch 2.160, duration 0.720), 1.036x (the baseline
2.782); with the memories of the song (`--memory`: the neural cache and
the short-term model) 2.571, 0.924x. With the repeats played
(`--config.data.repeats=play` and the play folders of
`data.config.corpus_folders('oneills', 'play')`): 2.782, 1.201x alone,
2.083, 0.899x with the memories. Against the baselines of 2026-12-01
without labels it read 0.915x (music21's conversion), a comparison of
unequal information.
"""

import ml_collections

from configs import best_cpu, oneills


def get_config() -> ml_collections.ConfigDict:
  config = oneills.get_config()
  config.model = best_cpu.get_config().model
  config.train.num_train_steps = 1500
  return config
