"""Generates melodies from a trained workdir: not implemented yet (issue 4)."""

import sys

if __name__ == "__main__":
  sys.exit("sample_main.py: sampling is not implemented yet")
