"""Default config: ESAC, the reference multi-stream LSTM, objective 'all'.

  python train_main.py --config=configs/default.py --workdir=/tmp/mj/default

Converts ESAC to MIDI and builds its dataset on first use. 20,000 steps of
64 windows of 64 events (about 130 epochs of ESAC's 9,838 training windows):
about 35 minutes on a quiet 2-core CPU, where the 1,500 steps of
configs/cpu.py take 2m37s.

Each group comes from the layer that owns it, with every field's meaning
and unit beside its default: `data` from `melodyjax/data/config.py`,
`model` from `melodyjax/model/config.py` (the reference architecture),
`train`, `eval` and `checkpoint` from `melodyjax/training/config.py`,
`sample` from `melodyjax/sampling/request.py`.
"""

import ml_collections

from melodyjax.data import config as data_config
from melodyjax.model import config as model_config
from melodyjax.sampling import request
from melodyjax.training import config as training_config


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  # Fine-tuning: start from this run's parameters (WORKDIR, WORKDIR:STEP or
  # a .mjx file; its best step by default), not its optimizer state.
  config.init_from = ""
  config.data = data_config.defaults("esac")
  config.model = model_config.defaults()
  config.train = training_config.train_defaults()
  config.sample = request.defaults()
  config.eval = training_config.eval_defaults()
  config.checkpoint = training_config.checkpoint_defaults()
  return config
