#!/usr/bin/env bash
# Run here, before a device call: downloads into .whl/ (git-ignored) the wheels the lent GPU machine lacks.
# That machine has Python 3.12 with its own torch, torchvision, OpenCV, matplotlib, tensorboard and onnx, and
# no Ultralytics, easydict or polars (the device tool's KINDS.md lists its packages); nothing can be fetched
# there. The versions are this project's pins (requirements.txt, and what Ultralytics 8.4.190 imports).
# bench/gpu_common.sh installs them there when .whl holds any: name ".whl" in the call's carry.
# About 56 MB, within the 64 MiB a device call may carry with the working tree.
set -eu
cd "$(dirname "$0")/.."
rm -rf .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    ultralytics==8.4.190 ultralytics-thop==2.2.3 ultralytics-platform==0.1.99 easydict==1.14 \
    polars==2.1.0 polars-runtime-32==2.1.0
ls -l .whl
du -sh .whl
