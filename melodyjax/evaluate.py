"""`python -m melodyjax.evaluate`, kept for the README's commands and scripts.

The tool lives in `melodyjax.cli.evaluate`.
"""

import sys

from melodyjax.cli import evaluate

if __name__ == "__main__":
  sys.exit(evaluate.run())
