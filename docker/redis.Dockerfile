# Redis for one Linkage site: Debian's redis-server on the local debian:bookworm (there is no image hub here;
# a site may use any Redis 7 image instead: LINKAGE_REDIS_IMAGE). Runs as the redis user; its append-only
# file lives in /var/lib/redis, a named volume (the image's directory, owned by redis).
#   podman build --network=host -f docker/redis.Dockerfile -t linkage-redis .
FROM debian:bookworm
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o redis -g redis -m 0750 /var/lib/redis
USER redis
WORKDIR /var/lib/redis
ENTRYPOINT ["redis-server"]
# Tickets must survive a crash: append-only file, fsync on every write; the site's compose sets bind and port.
CMD ["--bind", "127.0.0.1", "--port", "6379", "--appendonly", "yes", "--appendfsync", "always", "--save", "", \
     "--protected-mode", "yes", "--dir", "/var/lib/redis"]
