#!/usr/bin/env bash
# Build the image and run it exactly as the YMIR platform does, on the sample data:
#   docker run --rm -v <in>:/in:ro -v <out>:/out --user <uid>:<gid> --network none --shm-size 2g IMAGE
# training, then mining + infer with the trained model (the top-level files of /out/models, as the
# image verifier hands them on). Checks every output against the contract and that /in is unchanged.
#
# Usage: tests/e2e/docker_e2e.sh [BASE_IMAGE]
#   BASE_IMAGE: a PyTorch image carrying torch 2.14.1 / torchvision 0.29.1; without it, one is assembled
#   from Debian packages and the pip index by tests/e2e/make_base.sh (no container registry needed).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
image=${E2E_IMAGE:-ymir-executor-yolo:e2e}
base=${1:-}
user=1234:1234  # not root, no home directory, as the platform runs it
work=$(mktemp -d) && chmod 755 "$work"
trap 'rm -rf "$work" "$repo/docker/ca.crt"' EXIT

if [ -z "$base" ]; then
    base=ymir-e2e-torch:2.14.1
    docker image inspect "$base" >/dev/null 2>&1 || bash "$repo/tests/e2e/make_base.sh" "$base"
fi

echo "== build $image on $base, without pretrained weights (WEIGHTS=\"\": CI here cannot reach the weights' host)"
cp "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" "$repo/docker/ca.crt"
docker build --network host --build-arg BASE_IMAGE="$base" --build-arg CA_BUNDLE=docker/ca.crt --build-arg WEIGHTS="" \
    -t "$image" "$repo"
[ -z "$(docker run --rm "$image" sh -c 'ls /app/weights')" ] || { echo "FAILED: WEIGHTS=\"\" baked weights"; exit 1; }

echo "== the default build, offline, fails at once and names both ways out"
started=$(date +%s)
if docker build --network none --build-arg BASE_IMAGE="$base" --build-arg CA_BUNDLE=docker/ca.crt \
        -t "$image-offline" "$repo" >"$work/offline-build.log" 2>&1; then
    echo "FAILED: the default build succeeded offline"; exit 1
fi
took=$(( $(date +%s) - started ))
grep -q "WEIGHTS: cannot download yolo11n.pt" "$work/offline-build.log" \
    && grep -q "weights/ folder" "$work/offline-build.log" && grep -q 'WEIGHTS=""' "$work/offline-build.log" \
    || { tail -20 "$work/offline-build.log"; echo "FAILED: the offline build does not name both ways out"; exit 1; }
[ "$took" -lt 120 ] || { echo "FAILED: the offline build took $took s to fail"; exit 1; }
echo "offline default build: failed in $took s, naming both ways out: ok"

echo "== a base image that sets pip's own PIP_CERT (as company images do for their CA) builds, its setting kept"
mkdir -p "$work/pipcert" && cp "$repo/docker/ca.crt" "$work/pipcert/company-ca.crt"
printf 'FROM %s\nCOPY company-ca.crt /etc/ssl/certs/company-ca.crt\nENV PIP_CERT=/etc/ssl/certs/company-ca.crt\n' "$base" \
    >"$work/pipcert/Dockerfile"
docker build -q -t "$base-pipcert" "$work/pipcert" >/dev/null
docker build --network host --build-arg BASE_IMAGE="$base-pipcert" --build-arg WEIGHTS="" -t "$image-pipcert" "$repo" \
        >"$work/pipcert/build.log" 2>&1 \
    || { tail -20 "$work/pipcert/build.log"; echo "FAILED: build on a base that sets PIP_CERT"; exit 1; }
docker run --rm --network none "$image-pipcert" python3 -c "import ultralytics, executor.cli" && echo "built and imports: ok"
docker rmi -f "$image-pipcert" "$base-pipcert" >/dev/null

echo "== templates as the platform reads them"
for task in training mining infer; do
    diff <(docker run --rm "$image" cat "/img-man/$task-template.yaml") "$repo/$task-template.yaml"
done
docker run --rm "$image" cat /img-man/manifest.yaml | grep -q "object_type: 2"

sample() {  # run the image's own sample tool with /in writable (set-up only, not a platform run)
    docker run --rm -v "$work/in:/in" -v "$work/out:/out" --user "$user" --network none "$image" \
        python3 -m executor.sample / "$@" >/dev/null
}
platform_run() {  # exactly as the platform: no command, /in read-only, non-root, no network
    docker run --rm -v "$work/in:/in:ro" -v "$work/out:/out" --user "$user" --network none --shm-size 2g "$image" \
        >"$work/log-$1.txt" 2>&1 || { tail -20 "$work/log-$1.txt"; echo "FAILED: $1 run"; exit 1; }
    tail -2 "$work/log-$1.txt"
}
check() {
    docker run --rm -v "$work:/w:ro" -v "$repo/tests:/tests:ro" --user "$user" --network none "$image" \
        python3 -c "import sys; sys.path.insert(0, '/tests'); from contract import *; $1"
}
in_hash() { (cd "$work/in" && find . -type f -print0 | sort -z | xargs -0 sha1sum | sha1sum); }

mkdir -p "$work/in" "$work/out" && chmod 777 "$work/in" "$work/out"
sample --train 24 --val 8 --candidates 12
sample --task training --set epochs=2 img_size=64 batch_size_per_gpu=8 num_workers_per_gpu=2 save_period=1 export_format=ark:raw
before=$(in_hash)

echo "== training"
platform_run training
grep -q "training from scratch" "$work/log-training.txt" || { echo "FAILED: the log does not say training starts from scratch"; exit 1; }
check "assert check_result_yaml('/w/out/models/result.yaml', legacy=False)['pretrained_weights'] is None"
check "d = check_result_yaml('/w/out/models/result.yaml', legacy=False); print('stages', list(d['model_stages']))"
ls "$work/out/tensorboard" | grep -q tfevents
[ "$(in_hash)" = "$before" ] || { echo "FAILED: /in changed during training"; exit 1; }

echo "== weights placed in the build context's weights/ folder are baked without any download (offline build)"
ctx="$work/context" && mkdir -p "$ctx"
tar -C "$repo" --exclude=./.git --exclude=./.venv --exclude=./.bench-cache --exclude=./demo-run -cf - . | tar -C "$ctx" -xf -
cp "$work/out/models/best.pt" "$ctx/weights/yolo11n.pt"  # a checkpoint trained here stands in for the COCO weights
docker build --network none --build-arg BASE_IMAGE="$base" --build-arg CA_BUNDLE=docker/ca.crt -t "$image-baked" "$ctx" \
    >"$work/baked-build.log" 2>&1 || { tail -20 "$work/baked-build.log"; echo "FAILED: build with weights/"; exit 1; }
grep -q "WEIGHTS: yolo11n.pt from the build context's weights/" "$work/baked-build.log"
cmp <(docker run --rm "$image-baked" cat /app/weights/yolo11n.pt) "$ctx/weights/yolo11n.pt"
rm -rf "$work/out" && mkdir -p "$work/out" && chmod 777 "$work/out"
sample --task training --set epochs=1 img_size=64 batch_size_per_gpu=8 num_workers_per_gpu=2 save_period=0 export_format=ark:raw
before=$(in_hash)
image_used=$image && image=$image-baked && platform_run training-baked && image=$image_used
head -20 "$work/log-training-baked.txt" | grep -q "pretrained weights: /app/weights/yolo11n.pt (baked into the image)" \
    || { head -20 "$work/log-training-baked.txt"; echo "FAILED: the log's first lines do not name the baked weights"; exit 1; }
check "assert check_result_yaml('/w/out/models/result.yaml', legacy=False)['pretrained_weights'] == '/app/weights/yolo11n.pt'"
[ "$(in_hash)" = "$before" ] || { echo "FAILED: /in changed during training"; exit 1; }
docker rmi -f "$image-baked" >/dev/null
echo "baked weights: used by training and named in its log and result.yaml: ok"

echo "== mining + infer with the trained model"
mkdir -p "$work/in/models"
models=()
for f in "$work/out/models/"*; do
    [ -f "$f" ] && cp "$f" "$work/in/models/" && models+=("/in/models/$(basename "$f")")
done
rm -rf "$work/out" && mkdir -p "$work/out" && chmod 777 "$work/out"
list=$(printf '"%s",' "${models[@]}")
sample --task mining infer --set img_size=64 num_workers_per_gpu=2 mining_algorithm=entropy "model_params_path=[${list%,}]"
before=$(in_hash)
platform_run mining-infer
check "
paths = [l for l in open('/w/in/candidate-index.tsv').read().splitlines() if l]
check_mining_tsv('/w/out/result.tsv', paths)
check_infer_json('/w/out/infer-result.json', paths, ['circle', 'square'], legacy=False)
check_monitor_running('/w/out/monitor.txt', 't0000sample', 1.0)
print('mining and infer outputs: ok')"
[ "$(in_hash)" = "$before" ] || { echo "FAILED: /in changed during mining + infer"; exit 1; }
echo "docker e2e: passed"
