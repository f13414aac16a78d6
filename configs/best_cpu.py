"""The best CPU recipe so far: `configs/cpu.py` conditioned on metre, mode
and style, with the duration head reading the event's pitch, 3,000 steps
(the reference model otherwise; about 15 minutes on 2 cores).

  python train_main.py --config=configs/best_cpu.py --workdir=runs/esac_best
  melodyjax-evaluate --workdir=runs/esac_best --step=best --memory

Measured on ESAC's test split, key-normalised (2026-12-04, AMD EPYC with
AVX-512, 2 vCPUs; BENCHMARKS.md "The memory of the song"): 3.200 bits per
note (pitch 2.205, duration 0.996), 0.950x the best baseline given the
same labels (metre, mode, style: `evaluation.labelled`, 3.368); with the
memories of the song (`--memory`: the neural cache and the short-term
model mixed into the softmax, tuned on validation) 2.992, 0.888x. At 1,500 steps
it read 3.362, 0.998x the same baseline. The baseline given no labels
(3.581) is not the same information for this run: the report shows that
ratio as a second row.
"""

import ml_collections

from configs import cpu


def get_config() -> ml_collections.ConfigDict:
  config = cpu.get_config()
  config.model.condition_metre = True
  config.model.condition_mode = True
  config.model.condition_style = True
  config.model.duration_given_pitch = True
  config.train.num_train_steps = 3000
  return config
