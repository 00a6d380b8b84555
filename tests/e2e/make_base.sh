#!/usr/bin/env bash
# Assemble a base image without any container registry: a minimal Debian root file system made with
# debootstrap from the Debian mirror, imported with `docker import`, then Python and torch from the pip index.
# Usage: tests/e2e/make_base.sh [TAG]   (default ymir-e2e-torch:2.14.1). Needs root, docker, debootstrap.
set -euo pipefail
tag=${1:-ymir-e2e-torch:2.14.1}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
cert=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if ! docker image inspect ymir-e2e-debian:bookworm >/dev/null 2>&1; then
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,libgl1,libglib2.0-0,procps \
        bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log"; exit 1; }
    rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
    tar -C "$work/rootfs" -c . | docker import -c 'ENV LANG=C.UTF-8' - ymir-e2e-debian:bookworm
fi

mkdir -p "$work/ctx"
cp "$cert" "$work/ctx/ca.crt"
cat >"$work/ctx/Dockerfile" <<'DOCKERFILE'
FROM ymir-e2e-debian:bookworm
COPY ca.crt /tmp/ca.crt
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --cert /tmp/ca.crt torch==2.14.1 torchvision==0.29.1 \
 && rm -f /tmp/ca.crt
ENV PATH=/opt/venv/bin:$PATH
DOCKERFILE
docker build --network host -t "$tag" "$work/ctx"
echo "base image: $tag"
