"""`python -m melodyjax.corpus`, kept for the README's commands and scripts.

The tool lives in `melodyjax.cli.corpus`.
"""

import sys

from melodyjax.cli import corpus

if __name__ == "__main__":
  sys.exit(corpus.run())
