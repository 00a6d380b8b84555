# Sourced by bench/gpu_session.sh and bench/gpu_bench.sh: the results folder, the card and the commit, and
# the benchmarks' model trained first (bench/common.py; cached for the benchmarks after it), so that each
# benchmark's time limit is spent on what it measures.
DIR=${1:-gpu-results}
PY=${PYTHON:-python3}
mkdir -p "$DIR"
export PYTHONUNBUFFERED=1
keep() { grep --line-buffered -E '^(arm |boxes|model|machine|\||PASS|FAIL|gpu-check)' | tee "$DIR/$1.txt"; }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; git rev-parse HEAD; nproc; } > "$DIR/gpu.txt" 2>&1
timeout 60 "$PY" bench/common.py --device 0 2>&1 | keep model
