#!/usr/bin/env bash
# Everything that needs a GPU, in one short go on a lent GPU machine: `make gpu-check` and the
# benchmarks' GPU modes, sized to finish in about 7 minutes on one H100/H200. Writes a few files to DIR.
# Usage: bash bench/gpu_all.sh DIR   (PYTHON=python3 by default: the machine's own torch)
set -u
DIR=${1:-gpu-results}
PY=${PYTHON:-python3}
mkdir -p "$DIR"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$DIR/gpu.txt" 2>&1
"$PY" -c "import torch, ultralytics; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'ultralytics', ultralytics.__version__)" >> "$DIR/gpu.txt" 2>&1
timeout 330 "$PY" tests/gpu_check.py --keep "$DIR/check-logs" 2>&1 | tee "$DIR/gpu-check.txt"
tar czf "$DIR/check-logs.tgz" -C "$DIR" check-logs && rm -rf "$DIR/check-logs"
timeout 90 "$PY" bench/infer_throughput.py --device 0 --images 1000 --workers 4 --repeats 2 2>&1 | tail -8 | tee "$DIR/infer-throughput.txt"
timeout 120 "$PY" bench/mining_cost.py --device 0 --images 500 --workers 4 --repeats 2 2>&1 | tail -16 | tee "$DIR/mining-cost.txt"
timeout 100 "$PY" bench/training_overhead.py --device 0 --epochs 3 --img-size 320 --repeats 1 2>&1 | tail -6 | tee "$DIR/training-overhead.txt"
