#!/usr/bin/env bash
# The active-learning benchmark's GPU mode in one call: one process per seed, all on one GPU, each
# starting no arm after DEADLINE seconds (results are saved after every arm), then the table.
# Usage: bash bench/active_learning_gpu.sh DIR DATA FIRST_SEED [SEEDS=8] [DEADLINE=420] [PRIMARY]
#   DATA: the .npz from `python bench/active_learning.py --save-data FILE` (no scikit-learn needed there)
# Each seed's JSON and log go into DIR/logs.tar.gz, packed every 20 s (the device returns at most 8 files).
set -u
DATA=$2; FIRST=$3; N=${4:-8}; DEADLINE=${5:-420}; PRIMARY=${6:-}
source "$(dirname "$0")/gpu_common.sh"
seeds=()
for i in $(seq 0 $((N - 1))); do
  seed=$((FIRST + i))
  "$PY" bench/active_learning.py --mode gpu --gpu 0 --seeds 1 --first-seed "$seed" --data "$DATA" \
    --deadline "$DEADLINE" --json "$LOGS/seed-$seed.json" > "$LOGS/seed-$seed.log" 2>&1 &
  seeds+=($!)
done
while sleep 20; do pack; done &
packer=$!
wait "${seeds[@]}"
kill "$packer"
pack
grep -h "^seed" "$LOGS"/seed-*.log
"$PY" bench/active_learning.py --mode gpu --report "$LOGS"/seed-*.json ${PRIMARY:+--primary "$PRIMARY"} 2>&1 | tee "$DIR/report.md"
