#!/usr/bin/env bash
# Run here, before a device call, and name ".whl" and ".bench-cache" in the call's carry (both git-ignored):
# - .whl: the wheels the lent GPU machine lacks. It has Python 3.12 with its own torch, torchvision, OpenCV,
#   matplotlib, tensorboard and onnx, and no Ultralytics, easydict or polars (the device tool's KINDS.md lists
#   its packages); nothing can be fetched there. The versions are this project's pins (requirements.txt, and
#   what Ultralytics 8.4.190 imports). bench/gpu_common.sh installs them there.
# - .bench-cache: the benchmarks' model (bench/common.py, MODEL_RECIPE), trained here once (about 90 s on
#   2 cores; taken from the default cache when it is there), so the GPU's minutes go to what is measured.
# About 60 MB together, within the 64 MiB a device call may carry with the working tree. Needs .venv (`make
# test` makes it) or PYTHON=a python with the requirements.
set -eu
cd "$(dirname "$0")/.."
rm -rf .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    ultralytics==8.4.190 ultralytics-thop==2.2.3 ultralytics-platform==0.1.99 easydict==1.14 \
    polars==2.1.0 polars-runtime-32==2.1.0
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
model=$("$PY" bench/common.py | sed -n 's/^model: \(.*\) ([0-9]* s)$/\1/p')  # found in its cache, or trained
[ -f "$model" ] || { echo "gpu_prepare: the benchmarks' model was not made"; exit 1; }
rm -rf .bench-cache && mkdir .bench-cache && cp "$model" .bench-cache/
du -sh .whl .bench-cache
