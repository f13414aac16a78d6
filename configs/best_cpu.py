"""The best CPU recipe so far: `configs/cpu.py` conditioned on metre, mode
and style, with the duration head reading the event's pitch (the same seed
model otherwise; same 1,500 steps).

  python train_main.py --config=configs/best_cpu.py --workdir=runs/esac_best
  melodyjax-evaluate --workdir=runs/esac_best --step=best

Measured on ESAC's test split (`python -m benchmarks.bench_baselines`,
BENCHMARKS.md "Baselines side by side", 2-core AMD EPYC): key-normalised
3.362 bits per note (pitch 2.324, duration 1.038). Against the best
baseline given the same labels (metre, mode, style: `evaluation.labelled`,
`python -m benchmarks.bench_labelled`; 3.398, pitch 2.214, duration
1.183) that is 0.989x: the model wins on durations and loses on pitch.
Against the best baseline without labels (IDyOM's combination for pitch,
the n-gram for duration; 3.786) it is 0.888x; as written
(`--config.data.normalize_key=False
--config.data.dataset_dir=~/.cache/melodyjax/datasets/esac_written`)
3.486, 0.902x, and with `--config.train.num_train_steps=3000` 3.336
(pitch 2.322, duration 1.014), 0.863x, both against baselines without
labels (not re-measured with them). Conditioning alone gives 3.357
and 3.484: on ESAC the duration head's gain (0.08 bits without
conditioning) is what the metre already gives. On O'Neill's 1850 it adds
to it (`configs/best_oneills.py`).
"""

import ml_collections

from configs import cpu


def get_config() -> ml_collections.ConfigDict:
  config = cpu.get_config()
  config.model.condition_metre = True
  config.model.condition_mode = True
  config.model.condition_style = True
  config.model.duration_given_pitch = True
  return config
