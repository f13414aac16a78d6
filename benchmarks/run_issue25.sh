#!/usr/bin/env bash
# Issue 25's figures on one machine, in about 25 minutes when it is quiet:
# the training step against PyTorch eager (objectives 'all' and 'last',
# float32) at B = 64, T = 64, then the batch scaling (B 16, 256, 1,024 at
# T = 64), then the length scaling (T 32, 256 at B = 64), sampling (1 and
# 64 melodies against PyTorch's best loop) and peak memory. Each stage is a
# driver of one worker process per contender per round, alternated
# (benchmarks/harness.py); PyTorch gets melodyjax's allocator too
# (tcmalloc, installed by `make sysdeps` where apt-get runs as root), so
# that neither side is handicapped by it.
#
#   benchmarks/run_issue25.sh            # logs and JSON in /tmp/issue25
#   STOP=00:20 LOG=DIR PY=python benchmarks/run_issue25.sh
#
# A stage whose estimate would run past STOP (UTC, today or just after
# midnight) is skipped, and every stage is killed at STOP. The headline,
# sampling and memory figures are merged into benchmarks/results.json; the
# scaling rows go to LOG/train_BxT.json (their names do not carry the
# shape).
set -u
cd "$(dirname "$0")/.."
PY=${PY:-/work/main/.venv/bin/python}
LOG=${LOG:-/tmp/issue25}
export PYTHONPATH=$PWD
export MELODYJAX_CACHE=${MELODYJAX_CACHE:-/work/cache}
mkdir -p "$LOG"
stop_at=$(date -u -d "${STOP:-00:20}" +%s)
if [ "$stop_at" -lt "$(date -u +%s)" ] \
  && [ $(("$(date -u +%s)" - stop_at)) -gt 43200 ]; then
  stop_at=$((stop_at + 86400))  # STOP is after midnight
fi

stage() {  # stage NAME ESTIMATE_S COMMAND...
  local name=$1 estimate=$2 now left
  shift 2
  now=$(date -u +%s)
  left=$((stop_at - now))
  if [ "$left" -lt "$estimate" ]; then
    echo "== $name skipped ($(date -u +%T): ${left}s left, needs ~${estimate}s)"
    return
  fi
  echo "== $name $(date -u +%T) (~${estimate}s; load $(cut -d' ' -f1-3 /proc/loadavg))"
  timeout -s TERM "$left" "$@" >"$LOG/$name.log" 2>&1
  echo "   rc $? at $(date -u +%T)"
  grep -E "^(CPU|Peak|melodyjax lstm|all |last |\[|  (jax|torch) |[ 0-9]+ melodies|\|)" \
    "$LOG/$name.log" | sed 's/^/   /'
}

train() {  # train NAME ESTIMATE_S ARGS...
  local name=$1 estimate=$2
  shift 2
  stage "$name" "$estimate" "$PY" -m benchmarks.bench_train --no_sample \
    --torch_allocator fast --peak_repeats 3 "$@"
}

lscpu >"$LOG/lscpu.txt"
grep -o 'avx512[a-z_0-9]*\|amx[a-z_0-9]*\|avx2\|fma' /proc/cpuinfo | sort -u \
  | tr '\n' ' ' >"$LOG/isa.txt"
make -s sysdeps
echo "allocator: $(ldconfig -p | grep -c libtcmalloc_minimal.so.4) tcmalloc"
echo "isa: $(cat "$LOG/isa.txt")"

# 1. The headline: B = 64, T = 64, 4 rounds each, with the phase breakdown.
train train_64x64 300 --batch_size 64 --seq_len 64 --rounds 4 --steps 30 \
  --breakdown --out benchmarks/results.json
# 2. Batch scaling at T = 64.
train train_16x64 130 --batch_size 16 --seq_len 64 --rounds 3 --steps 40 \
  --out "$LOG/train_16x64.json"
train train_256x64 200 --batch_size 256 --seq_len 64 --rounds 3 --steps 10 \
  --warmup 2 --out "$LOG/train_256x64.json"
train train_1024x64 260 --batch_size 1024 --seq_len 64 --rounds 2 \
  --steps 5 --warmup 1 --out "$LOG/train_1024x64.json"
# 3. Length scaling at B = 64.
train train_64x32 130 --batch_size 64 --seq_len 32 --rounds 3 --steps 30 \
  --out "$LOG/train_64x32.json"
train train_64x256 200 --batch_size 64 --seq_len 256 --rounds 3 --steps 10 \
  --warmup 2 --out "$LOG/train_64x256.json"
# 4. Sampling, 256 notes, 1 and 64 melodies, 3 rounds.
stage sample 90 "$PY" -m benchmarks.bench_train --no_train --rounds 3 \
  --torch_allocator fast --peak_repeats 3 --out benchmarks/results.json
# 5. Peak memory of a step (each figure a fresh process; not load-bound).
stage memory 180 "$PY" -m benchmarks.bench_memory \
  --shapes 16x64,64x32,64x64,64x256,256x64,1024x64 \
  --out benchmarks/results.json
# 6. If time is left: the headline with PyTorch on its own default (glibc).
train train_64x64_torch_glibc 120 --batch_size 64 --seq_len 64 --rounds 2 \
  --steps 30 --objectives all --torch_allocator system \
  --out "$LOG/train_64x64_torch_glibc.json"
echo "== done $(date -u +%T)"
