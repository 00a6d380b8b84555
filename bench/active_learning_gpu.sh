#!/usr/bin/env bash
# The active-learning benchmark's GPU mode in one call: one process per seed, all on one GPU, each
# starting no arm after DEADLINE seconds (results are saved after every arm), then the table.
# Usage: bash bench/active_learning_gpu.sh DIR DATA FIRST_SEED [SEEDS=8] [DEADLINE=420] [PRIMARY]
#   DATA: the .npz from `python bench/active_learning.py --save-data FILE` (no scikit-learn needed there)
set -u
DIR=$1; DATA=$2; FIRST=$3; N=${4:-8}; DEADLINE=${5:-420}; PRIMARY=${6:-}
PY=${PYTHON:-python3}
mkdir -p "$DIR"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv > "$DIR/gpu.txt" 2>&1
for i in $(seq 0 $((N - 1))); do
  seed=$((FIRST + i))
  "$PY" bench/active_learning.py --mode gpu --gpu 0 --seeds 1 --first-seed "$seed" --data "$DATA" \
    --deadline "$DEADLINE" --json "$DIR/seed-$seed.json" > "$DIR/seed-$seed.log" 2>&1 &
done
wait
grep -h "^seed" "$DIR"/seed-*.log
"$PY" bench/active_learning.py --mode gpu --report "$DIR"/seed-*.json ${PRIMARY:+--primary "$PRIMARY"} 2>&1 | tee "$DIR/report.md"
