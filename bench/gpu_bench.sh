#!/usr/bin/env bash
# The benchmarks' GPU modes in one short go on a lent GPU machine (bench/gpu_session.sh runs them with the
# GPU checks that matter most in one call of at most 9.5 minutes). Each benchmark has its own time limit
# and prints a line per arm as it ends, into DIR/<benchmark>.txt, so a call cut short keeps what it measured.
# Candidates are real-sized JPEGs (1-12 MP, mixed aspect ratios; bench/photos.py) at 640 px, fp16.
# Usage: bash bench/gpu_bench.sh DIR   (PYTHON=python3 by default: the machine's own torch)
set -u
source "$(dirname "$0")/gpu_common.sh"
model_first
timeout 130 "$PY" bench/infer_throughput.py --device "$DEVICE" --images 600 --repeats 1 2>&1 | keep infer-throughput
timeout 110 "$PY" bench/mining_cost.py --device "$DEVICE" --images 600 --repeats 1 "${MINING_COST_ARMS[@]}" 2>&1 | keep mining-cost
timeout 100 "$PY" bench/training_overhead.py --device "$DEVICE" --epochs 3 --img-size 320 --repeats 2 2>&1 | keep training-overhead
