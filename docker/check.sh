#!/usr/bin/env bash
# Builds both production images for real with Podman (no Docker engine, no image hub needed), runs
# `asterisk -V` in the Asterisk image and `linkage --help` in the controller image, then brings one site up from
# docker/compose.yaml with podman-compose (render, Asterisk, controller, Redis) and asks the health checks.
#
#   bash docker/check.sh [--quick] [--refresh-base]
#     --quick          stop after the two commands (no site)
#     --refresh-base   rebuild the local debian:sid / debian:bookworm base images
#
# How (see shared LAB-NOTES, "Asterisk 22 without Docker"): the base images `debian:sid` and `debian:bookworm`
# are made locally with mmdebstrap from the Debian mirror this machine's apt uses and imported into Podman, so an
# unmodified `FROM debian:…` resolves locally; Podman runs with runc, cgroupfs, no default ulimits, host network.
# The base images also get this machine's locally added CA certificates and a pip.conf that trusts the system
# store, so pip inside the build reaches PyPI the way pip on this machine does. The site's Redis image is a local
# Debian redis-server image standing in for the hub's. Must run as root; leaves the images, nothing running.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

QUICK=0
REFRESH_BASE=0
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=1 ;;
    --refresh-base) REFRESH_BASE=1 ;;
    *) echo "usage: check.sh [--quick] [--refresh-base]" >&2; exit 2 ;;
  esac
done

ASTERISK_IMAGE=linkage-asterisk:check
CONTROLLER_IMAGE=linkage-controller:check
REDIS_IMAGE=linkage-redis:check
PODMAN_COMPOSE=podman-compose==1.6.0
PROJECT=linkage-check
BASE=39000  # the site's ports: +60 SIP, +38 AMI, +573 AGI, +80 HTTP, +379 Redis (the lab uses 15000 and 25000)

log() { printf '[check] %s\n' "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
quiet_systemd() { grep -v 'unable to get systemd connection' || true; }  # no systemd: no health-check timers

[ "$(id -u)" -eq 0 ] || { echo "check.sh: run as root (apt-get, mmdebstrap, podman)" >&2; exit 2; }

tmp=$(mktemp -d /tmp/linkage-docker-check.XXXXXX)
site_up=0
cleanup() {
  if [ "$site_up" -eq 1 ]; then
    "$tmp/venv/bin/podman-compose" -f docker/compose.yaml -p "$PROJECT" down -v -t 15 >/dev/null 2>&1 || true
    podman --runtime runc ps -aq --filter "label=io.podman.compose.project=$PROJECT" \
      | xargs -r podman --runtime runc rm -f >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# ---- tools -------------------------------------------------------------------------------------------------
missing=()
for p in podman runc mmdebstrap; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]} with apt-get"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cat > "$tmp/containers.conf" <<'EOF'
[containers]
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "file"
EOF
export CONTAINERS_CONF="$tmp/containers.conf"
pm() { podman --runtime runc "$@"; }
log "$(pm --version), runc $(runc --version | head -n1 | awk '{print $3}')"

# ---- base images ---------------------------------------------------------------------------------------------
debian_mirror() {
  # The mirror this machine's apt already uses: the first Debian archive URI that is not -security.
  local uri
  uri=$(grep -hE '^\s*URIs:' /etc/apt/sources.list.d/debian.sources 2>/dev/null | awk '{print $2}' \
        | grep -v -- '-security' | grep -E '/debian/?$' | head -n1 || true)
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1=="deb" {print $2}' /etc/apt/sources.list | grep -v -- '-security' | grep -E '/debian/?$' | head -n1 || true)
  fi
  [ -n "$uri" ] || die "no Debian mirror in /etc/apt/sources.list.d/debian.sources"
  printf '%s\n' "$uri"
}

# shellcheck disable=SC2016  # the hooks' $1 is mmdebstrap's root directory, expanded by mmdebstrap
base_image() {
  local suite=$1 started
  if [ "$REFRESH_BASE" -eq 0 ] && pm image exists "debian:$suite"; then
    log "base image debian:$suite: present"
    return
  fi
  started=$(date +%s)
  local hooks=(
    # The hub's images have no apt option of mmdebstrap's: the Dockerfiles must cope on their own.
    --customize-hook='rm -f "$1/etc/apt/apt.conf.d/99mmdebstrap"'
  )
  if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    hooks+=(
      --customize-hook='mkdir -p "$1/usr/local/share/ca-certificates" && cp /usr/local/share/ca-certificates/*.crt "$1/usr/local/share/ca-certificates/"'
      --customize-hook='printf "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n" > "$1/etc/pip.conf"'
    )
  fi
  mmdebstrap --quiet --variant=minbase --aptopt='Acquire::Check-Valid-Until "false"' "${hooks[@]}" \
    "$suite" "$tmp/$suite.tar" "$(debian_mirror)"
  pm rmi -f "debian:$suite" >/dev/null 2>&1 || true
  pm import --change 'CMD ["bash"]' "$tmp/$suite.tar" "debian:$suite" >/dev/null
  rm -f "$tmp/$suite.tar"
  log "base image debian:$suite: built and imported in $(( $(date +%s) - started )) s"
}
base_image sid
base_image bookworm

# ---- builds ----------------------------------------------------------------------------------------------------
build() {
  local file=$1 tag=$2 started
  shift 2
  started=$(date +%s)
  log "building $tag from $file"
  pm build --network=host --pull=never --format docker -f "$file" -t "$tag" "$@" . > "$tmp/build.log" 2>&1 \
    || { tail -n 40 "$tmp/build.log" >&2; die "podman build of $file"; }
  log "built $tag in $(( $(date +%s) - started )) s ($(pm image inspect --format '{{.Size}}' "$tag" \
        | awk '{printf "%d MB", $1/1000000}'))"
}
# This machine's mirror serves a frozen sid whose Release file has expired.
build docker/asterisk.Dockerfile "$ASTERISK_IMAGE" --build-arg APT_CHECK_VALID_UNTIL=false
build docker/controller.Dockerfile "$CONTROLLER_IMAGE"

# ---- the two commands --------------------------------------------------------------------------------------------
RUN_ARGS=(--network=host --no-healthcheck)
log "podman run $ASTERISK_IMAGE asterisk -V"
out=$(pm run --rm "${RUN_ARGS[@]}" "$ASTERISK_IMAGE" asterisk -V) || die "asterisk -V"
printf '%s\n' "$out"
case "$out" in "Asterisk 22."*) ;; *) die "asterisk -V did not print Asterisk 22" ;; esac

log "podman run --entrypoint linkage $CONTROLLER_IMAGE --help"
out=$(pm run --rm "${RUN_ARGS[@]}" --entrypoint linkage "$CONTROLLER_IMAGE" --help) || die "linkage --help"
printf '%s\n' "$out"
case "$out" in "usage: linkage"*) ;; *) die "linkage --help printed no usage" ;; esac

if [ "$QUICK" -eq 1 ]; then
  log "OK (quick): both images built, asterisk -V and linkage --help ran"
  exit 0
fi

# ---- one site from compose.yaml ------------------------------------------------------------------------------
log "installing $PODMAN_COMPOSE into a temporary venv; building $REDIS_IMAGE (Debian redis-server)"
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --disable-pip-version-check "$PODMAN_COMPOSE" 2>&1 | grep -v '^WARNING: Location' || true
[ -x "$tmp/venv/bin/podman-compose" ] || die "pip install $PODMAN_COMPOSE"
cat > "$tmp/redis.Dockerfile" <<'EOF'
FROM debian:bookworm
RUN apt-get update && apt-get install -y --no-install-recommends redis-server && rm -rf /var/lib/apt/lists/*
EOF
pm build --network=host --pull=never -q -f "$tmp/redis.Dockerfile" -t "$REDIS_IMAGE" "$tmp" > "$tmp/build.log" 2>&1 \
  || { tail -n 20 "$tmp/build.log" >&2; die "podman build of the Redis stand-in"; }

secret() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' | cut -c1-24; }
mkdir -p "$tmp/site/asterisk"
cat > "$tmp/site/site.yaml" <<EOF
site: {name: check, platform: "12345", level: city, division: "370800"}
pbx:
  sip: {host: 127.0.0.1, port: $((BASE + 60))}
  ami: {host: 127.0.0.1, port: $((BASE + 38)), username: linkage, secret: $(secret)}
  agi: {host: 127.0.0.1, port: $((BASE + 573))}
controller:
  http: {host: 127.0.0.1, port: $((BASE + 80))}
  public_url: http://127.0.0.1:$((BASE + 80))
  api_token: $(secret)
redis: {url: "redis://127.0.0.1:$((BASE + 379))/0"}
accounts:
  citizen: {host: 127.0.0.1, port: $((BASE + 70)), dial: "12345"}
  agents: [{id: "1001", host: 127.0.0.1, port: $((BASE + 81))}]
EOF
chown 10001:10001 "$tmp/site/site.yaml"
chmod 0600 "$tmp/site/site.yaml"

LINKAGE_TESTER_SECRET=$(secret)
export LINKAGE_SITE_DIR="$tmp/site" LINKAGE_TESTER_SECRET LINKAGE_REDIS_PORT=$((BASE + 379))
export LINKAGE_ASTERISK_IMAGE=$ASTERISK_IMAGE LINKAGE_CONTROLLER_IMAGE=$CONTROLLER_IMAGE LINKAGE_REDIS_IMAGE=$REDIS_IMAGE
log "podman-compose -f docker/compose.yaml -p $PROJECT up -d"
site_up=1
"$tmp/venv/bin/podman-compose" -f docker/compose.yaml -p "$PROJECT" up -d --no-build > "$tmp/up.log" 2>&1 \
  || { quiet_systemd < "$tmp/up.log" | tail -n 20 >&2; die "podman-compose up"; }

asterisk_c="${PROJECT}_asterisk_1"
controller_c="${PROJECT}_controller_1"
rx() { pm exec "$asterisk_c" asterisk -C /etc/linkage-asterisk/etc/asterisk.conf -rx "$1"; }
booted=0
for _ in $(seq 60); do
  if rx "core waitfullybooted" >/dev/null 2>&1; then booted=1; break; fi
  sleep 1
done
[ "$booted" -eq 1 ] || { pm logs "${PROJECT}_render_1" 2>&1 | tail -n 5 >&2; pm logs "$asterisk_c" 2>&1 | tail -n 20 >&2
  tail -n 20 "$tmp/site/asterisk/log/messages.log" >&2 2>/dev/null || true; die "Asterisk did not boot"; }
rx "core show version" | awk '{print "running:", $1, $2}'
rx "pjsip show endpoints" | grep -E '^ Endpoint: ' || true
# shellcheck disable=SC2016  # expanded inside the container
pm exec "$asterisk_c" sh -c 'echo "Asterisk (pid 1) runs as uid $(awk "/^Uid:/ {print \$3}" /proc/1/status): $(id asterisk)"'

health=""
for _ in $(seq 30); do
  health=$(python3 -c "import urllib.request as u; print(u.urlopen('http://127.0.0.1:$((BASE + 80))/v1/health', timeout=2).read().decode())" 2>/dev/null) && break
  health=""
  sleep 1
done
[ -n "$health" ] || { pm logs "$controller_c" 2>&1 | tail -n 20 >&2; die "controller /v1/health never answered 200"; }
log "controller /v1/health: $health"
pm exec "$controller_c" id
for c in "$asterisk_c" "$controller_c"; do
  status=$(pm healthcheck run "$c" 2>&1 | quiet_systemd) || die "image HEALTHCHECK of $c: $status"
  log "HEALTHCHECK $c: ${status:-healthy}"
done

"$tmp/venv/bin/podman-compose" -f docker/compose.yaml -p "$PROJECT" down -v -t 15 > "$tmp/down.log" 2>&1 \
  || { quiet_systemd < "$tmp/down.log" | tail -n 20 >&2; die "podman-compose down"; }
site_up=0
log "OK: both images built, asterisk -V and linkage --help ran, and a site came up healthy from compose.yaml"
