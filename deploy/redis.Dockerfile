# A Redis image built from a local Debian base (for machines with no registry): the
# base must hold Debian's redis-server. Elsewhere use the upstream `redis:7` image; both
# take the same command (`redis-server --appendonly yes ...`).
#
#   docker build -f deploy/redis.Dockerfile --build-arg BASE_IMAGE=runq-base:bookworm -t runq-redis:7 .
ARG BASE_IMAGE=runq-base:bookworm
FROM ${BASE_IMAGE}
RUN mkdir -p /data
WORKDIR /data
EXPOSE 6379
CMD ["redis-server", "--appendonly", "yes", "--maxmemory-policy", "noeviction", "--protected-mode", "no", "--dir", "/data"]
