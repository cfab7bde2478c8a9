#!/usr/bin/env bash
# The GPU table: scripts/benchmark.py on the standard maze (13x13, 25 walls, 256 steps,
# LSTM 256) for DR, Robust PLR, ACCEL and PAIRED at 32, 256, 1024 and 4096 envs and 1, 4 and
# 16 vmapped seeds, with compile times (cold; warm too unless NO_WARM=1) and peak device
# memory. Writes OUT.jsonl (one line per measurement) and OUT.txt (the printed tables).
#
#   bash scripts/gpu_benchmark.sh [OUT]          # OUT defaults to gpu-bench-<date>
#
# On a machine with one GPU and jax[cuda12] installed. Each configuration runs in a fresh
# process; one that does not fit or takes longer than TIMEOUT seconds is reported as an
# error (the run goes on and exits with 1). The product is 48 configurations; the defaults
# below keep each short (1 warm-up and 3 timed updates of one chunk). Smaller sweeps, and
# the tiny CPU check the tests run, set the lists through the environment:
#
#   ENVS=256,1024 SEEDS=1,4 CURRICULA=dr,accel bash scripts/gpu_benchmark.sh
#   TINY=1 ENVS=4 SEEDS=1,2 CURRICULA=dr bash scripts/gpu_benchmark.sh /tmp/tiny   # CPU
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-gpu-bench-$(date +%Y%m%d-%H%M)}"
ENVS="${ENVS:-32,256,1024,4096}"
SEEDS="${SEEDS:-1,4,16}"
CURRICULA="${CURRICULA:-dr,robust_plr,accel,${ROOT}/experiments/maze_paired.yaml}"
UPDATES="${UPDATES:-3}"
WARMUP="${WARMUP:-1}"
TIMEOUT="${TIMEOUT:-600}"
PYTHON="${PYTHON:-python}"

# Replay from the third update (the benchmark lowers min_fill_ratio; capacity 4000 as in
# the experiment files); one update per compiled chunk, as timed.
OVERRIDES=(run.chunk_updates=1)
if [[ "${TINY:-0}" == 1 ]]; then  # a tiny maze and network: the CPU check of this script
  OVERRIDES+=(
    env.options.max_size=5 env.options.view_size=3 env.generator_options.num_walls=3
    ppo.num_steps=8 ppo.epochs=1 network.lstm_size=16 network.head_size=8
    network.conv_channels=4
    paired:curriculum.options.adversary_conv_channels=4
    paired:curriculum.options.adversary_lstm_size=16
    paired:curriculum.options.builder.num_walls=3
  )
fi
WARM=()
if [[ "${NO_WARM:-0}" == 1 ]]; then WARM=(--no-warm); fi

{
  echo "[gpu_benchmark] $(date -Iseconds) on $(hostname)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
    || echo "[gpu_benchmark] no nvidia-smi: $("$PYTHON" -c 'import jax; print(jax.devices())')"
  echo "[gpu_benchmark] git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
} | tee "$OUT.txt"

# Seeds are vmapped (run.seed_mode=vmap, what auto chooses on a GPU).
"$PYTHON" "$ROOT/scripts/benchmark.py" "$ROOT/experiments/maze_dr.yaml" "${OVERRIDES[@]}" \
  --curricula "$CURRICULA" --num-envs "$ENVS" --num-seeds "$SEEDS" --seed-mode vmap \
  --updates "$UPDATES" --warmup "$WARMUP" --timeout "$TIMEOUT" --env-envs none \
  "${WARM[@]}" --output "$OUT.jsonl" 2>&1 | tee -a "$OUT.txt"
