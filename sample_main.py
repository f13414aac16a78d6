"""Generates melodies from a trained workdir: the sampling main.

  python sample_main.py --workdir=runs/esac_cpu --num_outputs=8

Flags and the files it writes: `melodyjax/cli/sample.py`.
"""

from melodyjax.cli.sample import FLAGS, PROG, main, run  # noqa: F401

if __name__ == "__main__":
  run()
