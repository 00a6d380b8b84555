# Sourced by the scripts of a device call (bench/gpu_session.sh, gpu_bench.sh, active_learning_gpu.sh): the
# wheels the lent machine lacks and the benchmarks' model (bench/gpu_prepare.sh), the results folder DIR, the card and the commit.
# What comes back must be at most 8 files (the device tool returns no more): each step's lines that matter
# in DIR/<step>.txt as they come, and every full log in $LOGS, packed into DIR/logs.tar.gz by `pack`.
DIR=${1:-gpu-results}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-0}  # DEVICE=cpu rehearses the plumbing here (the steps run into their time limits)
[ "$DEVICE" = cpu ] && ALLOW_CPU=--allow-cpu
mkdir -p "$DIR"
LOGS=$(mktemp -d)
export PYTHONUNBUFFERED=1
export BENCH_RESULTS="$LOGS/results"  # each benchmark's raw JSON (common.save_result), packed with the logs
WHEELS=${WHEELS:-.whl}
if compgen -G "$WHEELS/*.whl" > /dev/null; then  # bench/gpu_prepare.sh, carried as ".whl"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$LOGS/site" "$WHEELS"/*.whl \
    || { echo "gpu-check: FAIL: the wheels in .whl did not install"; exit 1; }
  export PYTHONPATH="$LOGS/site${PYTHONPATH:+:$PYTHONPATH}"
fi
if [ -d .bench-cache ] && [ -z "${BENCH_CACHE:-}" ]; then  # the benchmarks' model, trained by bench/gpu_prepare.sh
  export BENCH_CACHE="$PWD/.bench-cache"
fi
pack() { tar -czf "$DIR/logs.partial" -C "$LOGS" --exclude ./site . && mv "$DIR/logs.partial" "$DIR/logs.tar.gz"; }
keep() { tee "$LOGS/$1.log" | grep --line-buffered -E '^(arm |boxes|model|machine|raw result|\||PASS|FAIL|gpu-check)' | tee "$DIR/$1.txt"; pack; }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; git rev-parse HEAD; git status --short --untracked-files=no; nproc;
  "$PY" -c 'import sys, torch, torchvision, ultralytics; print(sys.version.split()[0], torch.__version__, torchvision.__version__, ultralytics.__version__)'; } > "$DIR/gpu.txt" 2>&1
# mining cost's arms for a short loan: each algorithm's mining + infer (the GPU issue's target), the template's
# default first, so a step cut by its time limit has measured what users run (tests/test_bench_instrument.py)
MINING_COST_ARMS=(--joint-only --algorithms ppal,diversity,entropy,aldd,random,cald)
# the benchmarks' model first (cached for the benchmarks after it): their time limits go to what they measure
model_first() { timeout 60 "$PY" bench/common.py --device "$DEVICE" 2>&1 | keep model; }
