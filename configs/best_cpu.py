"""The best CPU recipe so far: `configs/cpu.py` conditioned on metre, mode
and style (the same seed model otherwise; same 1,500 steps).

  python train_main.py --config=configs/best_cpu.py --workdir=runs/esac_best
  python -m melodyjax.evaluate --workdir=runs/esac_best --step=best

Measured on ESAC, key-normalised (`python -m benchmarks.bench_controls`,
variant 'all', 2-core AMD EPYC, 5.9 min of training): test 3.357 bits per
note (pitch 2.283, duration 1.074) against 3.786 for the best baseline
(IDyOM's combination for pitch, the n-gram for duration): 0.887x. Most of
it is the metre (bar positions and time signatures read from the MIDI
files, which the baselines do not see); alone it gives 3.367. Not yet
measured: O'Neill's 1850 and the as-written (not key-normalised) datasets.
"""

import ml_collections

from configs import cpu


def get_config() -> ml_collections.ConfigDict:
  config = cpu.get_config()
  config.model.condition_metre = True
  config.model.condition_mode = True
  config.model.condition_style = True
  return config
