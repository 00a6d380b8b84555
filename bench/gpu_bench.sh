#!/usr/bin/env bash
# The benchmarks' GPU modes in one short go on a lent GPU machine (about 4 minutes on one H100/H200; run
# `make gpu-check` in a call of its own, about 6 minutes). Writes one file per benchmark to DIR.
# Usage: bash bench/gpu_bench.sh DIR   (PYTHON=python3 by default: the machine's own torch)
set -u
DIR=${1:-gpu-results}
PY=${PYTHON:-python3}
mkdir -p "$DIR"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$DIR/gpu.txt" 2>&1
timeout 90 "$PY" bench/infer_throughput.py --device 0 --images 1000 --workers 4 --repeats 2 2>&1 | tail -8 | tee "$DIR/infer-throughput.txt"
timeout 150 "$PY" bench/mining_cost.py --device 0 --images 2000 --workers 4 --repeats 1 2>&1 | tail -16 | tee "$DIR/mining-cost.txt"
timeout 120 "$PY" bench/training_overhead.py --device 0 --epochs 3 --img-size 320 --repeats 2 2>&1 | tail -6 | tee "$DIR/training-overhead.txt"
