"""`python -m melodyjax.esac`, kept for the README's commands and scripts.

The tool lives in `melodyjax.cli.esac`.
"""

import sys

from melodyjax.cli import esac

if __name__ == "__main__":
  sys.exit(esac.main())
