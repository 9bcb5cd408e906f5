#!/usr/bin/env bash
# Build runq's images where no registry can be reached (CI, air-gapped machines):
#   1. a Debian bookworm root made by debootstrap (python3, venv, pip, redis-server),
#      imported as BASE (cached in CACHE_DIR, so later runs on the machine reuse it);
#   2. the runq image from deploy/Dockerfile on that base (pip reaches PyPI through
#      --network host);
#   3. a Redis image from deploy/redis.Dockerfile on the same base.
# Usage: deploy/build-local-images.sh [RUNQ_IMAGE] [REDIS_IMAGE]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNQ_IMAGE=${1:-runq:latest}
REDIS_IMAGE=${2:-runq-redis:7}
BASE=${BASE_IMAGE:-runq-base:bookworm}
CACHE_DIR=${RUNQ_CI_CACHE:-/var/cache/runq-ci}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if ! docker image inspect "$BASE" >/dev/null 2>&1; then
    mkdir -p "$CACHE_DIR"
    if [ ! -s "$CACHE_DIR/rootfs.tar" ]; then
        echo "build: debootstrap of Debian bookworm into $CACHE_DIR/root (about a minute)"
        rm -rf "$CACHE_DIR/root"
        debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,redis-server \
            bookworm "$CACHE_DIR/root" "$MIRROR" >"$CACHE_DIR/debootstrap.log"
        tar -C "$CACHE_DIR/root" -cf "$CACHE_DIR/rootfs.tar.part" .
        mv "$CACHE_DIR/rootfs.tar.part" "$CACHE_DIR/rootfs.tar"
    fi
    echo "build: importing $BASE"
    docker import "$CACHE_DIR/rootfs.tar" "$BASE" >/dev/null
fi
bundle=${PIP_CERT:-${SSL_CERT_FILE:-}}
if [ -n "$bundle" ] && [ -f "$bundle" ]; then
    cp "$bundle" deploy/ca/build-host.crt   # a TLS-inspecting proxy's CA, for pip only
    trap 'rm -f deploy/ca/build-host.crt' EXIT
fi
echo "build: $RUNQ_IMAGE from deploy/Dockerfile on $BASE"
docker build --quiet --network host --build-arg BASE_IMAGE="$BASE" -f deploy/Dockerfile -t "$RUNQ_IMAGE" .
echo "build: $REDIS_IMAGE from deploy/redis.Dockerfile on $BASE"
docker build --quiet --network host --build-arg BASE_IMAGE="$BASE" -f deploy/redis.Dockerfile -t "$REDIS_IMAGE" .
