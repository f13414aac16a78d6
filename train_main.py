"""Trains a melody model: not implemented yet (see issue 3).

Build the dataset it will read with `python -m melodyjax.corpus`.
"""

import sys

if __name__ == "__main__":
  sys.exit(
      "train_main.py: training is not implemented yet; build the dataset "
      "with `python -m melodyjax.corpus --midi_dir DIR --out DIR`"
  )
