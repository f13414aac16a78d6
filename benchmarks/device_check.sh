#!/usr/bin/env bash
# The first checks on an accelerator, one command, under 8 minutes on one GPU:
#
#   bash benchmarks/device_check.sh [--tiny] [--out DIR] [--budget_s 450]
#
# Runs the accelerator-marked tests, checks every LSTM path that runs there
# (cudnn through jax.experimental.rnn, fused, scan) against the plain scan,
# trains configs/gpu.py a few hundred steps in bfloat16 with each, samples,
# and measures tokens/s against PyTorch's cuDNN LSTM in alternated processes
# (benchmarks/device_check.py has the details). Writes DIR/device_check.json
# and DIR/device_check.md (default DIR: runs/device_check). Without a GPU
# (or with --tiny) everything is CPU-sized and takes under a minute; the
# default test suite runs it that way (tests/test_device_check.py).
# Installs nothing: it uses the project's own environment ($PYTHON, else
# .venv/bin/python, else python3). Exit status 0 when every stage passed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
exec "$PY" -m benchmarks.device_check "$@"
