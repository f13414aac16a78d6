"""`python -m melodyjax.serve`, the same as `melodyjax-serve`.

The tool lives in `melodyjax.cli.serve`.
"""

import sys

from melodyjax.cli import serve

if __name__ == "__main__":
  sys.exit(serve.run())
