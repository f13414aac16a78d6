"""Trains a melody model (or resumes one): the training main.

  python train_main.py --config=configs/default.py --workdir=DIR

Flags, multi-host settings and what it prints: `melodyjax/cli/train.py`.
"""

from melodyjax.cli.train import FLAGS, PROG, main, run  # noqa: F401

if __name__ == "__main__":
  run()
