#!/usr/bin/env bash
# One device call of at most 9 minutes, the sum of its steps' time limits (the model step takes seconds when
# .bench-cache carries it): what a short GPU loan should measure, most valuable
# first, each part with its own time limit, every line kept in DIR as it comes (a call cut short keeps what
# it measured). The parts of `make gpu-check` left out here (fine-tuning, first-epoch NaN, out of memory)
# check training paths that ran on a GPU before; run them with `make gpu-check` when time allows.
# Usage: bash bench/gpu_session.sh DIR   (PYTHON=python3 by default: the machine's own torch). Before the
# call, here: bash bench/gpu_prepare.sh, and name ".whl" and ".bench-cache" in the call's carry.
set -u
source "$(dirname "$0")/gpu_common.sh"
model_first
timeout 90 "$PY" bench/infer_throughput.py --device "$DEVICE" --images 600 --repeats 1 2>&1 | keep infer-throughput
timeout 220 "$PY" tests/gpu_check.py ${ALLOW_CPU:-} --only infer,gpu-decode,decode-hazard,two-shards,mining-infer,mining,sliced,small-shm \
    --keep "$LOGS/gpu-check" 2>&1 | keep gpu-check
timeout 80 "$PY" bench/mining_cost.py --device "$DEVICE" --images 300 --repeats 1 "${MINING_COST_ARMS[@]}" 2>&1 | keep mining-cost
timeout 90 "$PY" bench/training_overhead.py --device "$DEVICE" --epochs 3 --img-size 320 --repeats 2 2>&1 | keep training-overhead
