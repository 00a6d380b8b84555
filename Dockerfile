# YMIR detection executor: training, mining and infer with Ultralytics YOLO, in one image.
# The base must carry the torch/torchvision pair of requirements.txt (torch 2.14.1, torchvision 0.29.1)
# with a CUDA runtime; its torch is kept, the rest of requirements.txt is installed over it.
ARG BASE_IMAGE=pytorch/pytorch:2.14.1-cuda13.0-cudnn9-runtime
FROM ${BASE_IMAGE}

# Mirrors and proxies: pass --build-arg PIP_INDEX_URL=... PIP_TRUSTED_HOST=... CA_BUNDLE=docker/<file> (a CA bundle
# placed in docker/ of the build context). Not named PIP_CERT: a base image that sets pip's own PIP_CERT (company
# images do, for their CA) would override a build argument of that name; such a setting keeps working as it is.
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG PIP_TRUSTED_HOST=
ARG CA_BUNDLE=
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8 YMIR_WEIGHTS_DIR=/app/weights

COPY requirements.txt /app/requirements.txt
COPY docker/ /tmp/docker/
RUN set -eux; \
    cert=""; if [ -n "$CA_BUNDLE" ]; then cert="--cert /tmp/docker/$(basename "$CA_BUNDLE")"; fi; \
    grep -vE '^(torch|torchvision)==' /app/requirements.txt > /tmp/requirements-app.txt; \
    python3 -m pip install --no-cache-dir $cert --index-url "$PIP_INDEX_URL" \
        ${PIP_TRUSTED_HOST:+--trusted-host "$PIP_TRUSTED_HOST"} -r /tmp/requirements-app.txt; \
    python3 -c "import torch, torchvision, ultralytics; print('torch', torch.__version__, 'ultralytics', ultralytics.__version__)"; \
    rm -rf /tmp/docker /tmp/requirements-app.txt /root/.cache

# Pretrained weights baked in at build time: the COCO weights of the training template's default model (and of any
# model named here, space-separated: WEIGHTS="yolo11n yolo11s"), so that a first training fine-tunes. Weight files
# placed in weights/ of the build context are copied as they are, and a name found there is not downloaded (for
# intranet builders: fetch <model>.pt once elsewhere). WEIGHTS="" builds an image that trains from scratch unless
# YMIR hands it a pretrained model. Declared after the pip layer so that changing it reinstalls nothing. A name that
# cannot be fetched fails the build at once, naming both ways out: an image that silently trains from scratch
# would be worse.
ARG WEIGHTS="yolo11n"
COPY weights/ /app/weights/
RUN set -eu; rm -f /app/weights/README.md; \
    for name in $WEIGHTS; do \
        if [ -s "/app/weights/$name.pt" ]; then echo "WEIGHTS: $name.pt from the build context's weights/"; continue; fi; \
        python3 -c "import socket; socket.create_connection(('github.com', 443), timeout=10).close()" 2>/dev/null \
            && python3 -c "import sys; from ultralytics.utils.downloads import attempt_download_asset as get; get(sys.argv[1])" \
                "/app/weights/$name.pt" || true; \
        [ -s "/app/weights/$name.pt" ] || { \
            echo "WEIGHTS: cannot download $name.pt (github.com, where Ultralytics publishes its weights, cannot be reached, or '$name' is not a model name). Either place $name.pt in the build context's weights/ folder (fetched once elsewhere from https://github.com/ultralytics/assets/releases) or build with --build-arg WEIGHTS=\"\" (the image then trains from scratch unless YMIR hands it a pretrained model)"; \
            exit 1; }; \
    done; \
    ls /app/weights; rm -rf /root/.cache /root/.config

COPY app /app
COPY training-template.yaml mining-template.yaml infer-template.yaml manifest.yaml /img-man/
COPY start.sh /usr/bin/start.sh

# Air-gapped at run time, any --user uid:gid, no home directory: caches go to a temp dir (see app/executor/runtime.py).
ENV YOLO_OFFLINE=1 YOLO_AUTOINSTALL=false HF_HUB_OFFLINE=1 MPLBACKEND=Agg
RUN chmod -R a+rX /app /img-man && chmod a+rx /usr/bin/start.sh
WORKDIR /app

# No ENTRYPOINT: the platform runs `docker run --rm IMAGE cat /img-man/<task>-template.yaml`.
CMD ["bash", "/usr/bin/start.sh"]
