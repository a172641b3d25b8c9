#!/usr/bin/env bash
# Builds the production images with Podman, each cached by a digest of its inputs, so a second run with nothing
# changed builds nothing (seconds):
#
#   docker.io/library/debian:bookworm   mmdebstrap --variant=minbase bookworm from this machine's Debian mirror,
#                                       imported (an unmodified `FROM debian:bookworm` resolves locally)
#   linkage-asterisk-rootfs:<key>       the lab's Asterisk 22 root filesystem (scripts/setup.sh rootfs: Debian sid
#                                       + asterisk, with the spoken prompts), imported as it is: nothing compiled
#                                       or installed again; the lab's site directories are left out
#   linkage-asterisk:<key>, :latest     docker/asterisk.Dockerfile on top of it
#   linkage-controller:<key>, :latest   docker/controller.Dockerfile: the wheels `pip wheel` made on this machine
#                                       (telephony only, never linkage_lab), installed with --no-index
#   linkage-redis:<key>, :latest        docker/redis.Dockerfile: Debian's redis-server (no image hub here)
#
#   bash scripts/images.sh [build]   build what is missing; prints the image names and what each took
#   bash scripts/images.sh tags      print the image names of this checkout (KEY=name lines), build nothing
#
# A key is a digest of everything that goes into the image (files, package lists, the base's key), written as a
# label (org.linkage.inputs) and the tag. Older tags of the same image are removed once a new one is built.
# Podman runs with docker/podman/containers.conf (runc, cgroupfs). Must run as root (mmdebstrap, podman).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/docker/podman/containers.conf}
ROOTFS=${LINKAGE_ROOTFS:-/var/lib/linkage/rootfs/current}
WORK=${LINKAGE_IMAGES_WORK:-$here/build/images}  # wheels and build logs, outside git (build/ is ignored)
# The wheels are made by Debian's own python3, the interpreter of the controller image: environment markers
# (e.g. redis's `async-timeout; python_full_version < "3.11.3"`) then select what the image's Python needs.
WHEEL_PYTHON=${LINKAGE_WHEEL_PYTHON:-/usr/bin/python3}
LABEL=org.linkage.inputs
BASE=docker.io/library/debian:bookworm

log() { printf '[images] %s\n' "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
pm() { podman --runtime runc "$@"; }
digest() { sha256sum | cut -c1-16; }
files_digest() { # path list on stdin -> one digest over names and contents
  local f
  while read -r f; do printf '%s\0' "$f"; cat "$f"; done | digest
}
label_of() { pm image inspect --format "{{index .Labels \"$LABEL\"}}" "$1" 2>/dev/null || true; }
seconds_since() { echo $(( $(date +%s) - $1 )); }

# ---- keys: what each image is made of ------------------------------------------------------------------------
BASE_RECIPE="mmdebstrap --variant=minbase --aptopt=Acquire::Check-Valid-Until=false bookworm"
base_key() { printf '%s\n%s\n' "$BASE_RECIPE" "$(bash scripts/setup.sh mirror)" | digest; }
rootfs_key() {
  [ -x "$ROOTFS/usr/sbin/asterisk" ] && [ -f "$ROOTFS/.linkage-complete" ] \
    || die "no Asterisk root filesystem at $ROOTFS: run bash scripts/setup.sh rootfs"
  # the root filesystem's own directory name is the digest of its package list (setup.sh); the prompts are
  # spoken into it afterwards
  { readlink -f "$ROOTFS"; find "$ROOTFS/usr/local/share/asterisk/sounds/linkage" -type f | sort | files_digest; } \
    | digest
}
asterisk_key() {
  { rootfs_key; printf '%s\n' docker/asterisk.Dockerfile docker/asterisk-entrypoint.sh | files_digest; } | digest
}
controller_sources() {
  { printf '%s\n' docker/controller.Dockerfile pyproject.toml constraints.txt
    git ls-files -co --exclude-standard telephony config/asterisk dialplans | grep -v -e '__pycache__' -e '\.pyc$'
  } | sort -u
}
controller_key() { { base_key; controller_sources | files_digest; } | digest; }
redis_key() { { base_key; echo docker/redis.Dockerfile | files_digest; } | digest; }

tags() {
  echo "BASE_IMAGE=$BASE"
  echo "ASTERISK_IMAGE=localhost/linkage-asterisk:$(asterisk_key)"
  echo "CONTROLLER_IMAGE=localhost/linkage-controller:$(controller_key)"
  echo "REDIS_IMAGE=localhost/linkage-redis:$(redis_key)"
}

# ---- builds ----------------------------------------------------------------------------------------------------
prune_other_tags() { # repo keep-tag: drop the repo's tags of other inputs
  local repo=$1 keep=$2 t
  for t in $(pm images --format '{{.Repository}}:{{.Tag}}' "$repo" 2>/dev/null); do
    case "$t" in "$repo:$keep" | "$repo:latest" | *"<none>"*) ;; *) pm rmi "$t" >/dev/null 2>&1 || true ;; esac
  done
}

# shellcheck disable=SC2016  # the hook's $1 is mmdebstrap's root directory, expanded by mmdebstrap
build_base() {
  local key started tar
  key=$(base_key)
  if [ "$(label_of "$BASE")" = "$key" ]; then
    log "$BASE: cached ($key)"
    return
  fi
  started=$(date +%s)
  tar="$WORK/bookworm.tar"
  mkdir -p "$WORK"
  # The hub's debian image has no apt options of mmdebstrap's: drop them so the Dockerfiles cope on their own.
  # No CA certificates or pip settings of this machine go in: the builds need no network but the apt mirror.
  mmdebstrap --quiet --variant=minbase --aptopt='Acquire::Check-Valid-Until "false"' \
    --customize-hook='rm -f "$1/etc/apt/apt.conf.d/99mmdebstrap"' \
    bookworm "$tar" "$(bash scripts/setup.sh mirror)"
  pm import --change 'CMD ["bash"]' --change "LABEL $LABEL=$key" "$tar" "$BASE" >/dev/null
  rm -f "$tar"
  log "$BASE: built in $(seconds_since "$started") s ($key)"
}

build_rootfs_image() {
  local key repo=localhost/linkage-asterisk-rootfs started
  key=$(rootfs_key)
  ROOTFS_IMAGE="$repo:$key"
  if pm image exists "$ROOTFS_IMAGE"; then
    return
  fi
  started=$(date +%s)
  # The lab's site directories (config, secrets, Redis files) stay out, and so do device nodes (the runtime
  # makes /dev) and apt's caches.
  tar -C "$ROOTFS" --numeric-owner --exclude=./srv/linkage-lab --exclude='./dev/*' --exclude='./proc/*' \
      --exclude='./sys/*' --exclude='./var/cache/apt/*' --exclude='./var/lib/apt/lists/*' \
      --exclude=./.linkage-complete -cf - . \
    | pm import --change "LABEL $LABEL=$key" - "$ROOTFS_IMAGE" >/dev/null
  prune_other_tags "$repo" "$key"
  log "$ROOTFS_IMAGE: imported from $ROOTFS in $(seconds_since "$started") s"
}

build_image() { # name key dockerfile [build args…]
  local name=$1 key=$2 file=$3 repo started
  shift 3
  repo=localhost/$name
  if [ "$(label_of "$repo:$key")" = "$key" ]; then
    pm tag "$repo:$key" "$repo:latest"
    log "$repo:$key: cached"
    return
  fi
  started=$(date +%s)
  mkdir -p "$WORK"
  pm build --network=host --pull=never --format docker --label "$LABEL=$key" -f "$file" -t "$repo:$key" "$@" . \
    > "$WORK/$name.build.log" 2>&1 || { tail -n 40 "$WORK/$name.build.log" >&2; die "podman build of $file"; }
  pm tag "$repo:$key" "$repo:latest"
  prune_other_tags "$repo" "$key"
  log "$repo:$key: built in $(seconds_since "$started") s ($(pm image inspect --format '{{.Size}}' "$repo:$key" \
        | awk '{printf "%d MB", $1/1000000}'))"
}

wheels() {
  # On this machine, where pip reaches the package index the way it always does; the build then installs
  # offline. The project's wheel is built from telephony/ alone, so linkage_lab cannot be in the image.
  local dir="$WORK/wheels" stage started
  started=$(date +%s)
  stage=$(mktemp -d)
  cp pyproject.toml constraints.txt "$stage/"
  git ls-files -co --exclude-standard telephony | grep -v -e '__pycache__' -e '\.pyc$' \
    | while read -r f; do mkdir -p "$stage/$(dirname "$f")"; cp "$f" "$stage/$f"; done
  rm -rf "$dir"
  mkdir -p "$dir/deps" "$dir/linkage"
  [ -x "$WORK/pip-venv/bin/pip" ] || "$WHEEL_PYTHON" -m venv "$WORK/pip-venv"
  "$WORK/pip-venv/bin/pip" wheel -q --disable-pip-version-check -c constraints.txt --wheel-dir "$dir/deps" \
    "$stage" > "$WORK/wheels.log" 2>&1 || { tail -n 20 "$WORK/wheels.log" >&2; rm -rf "$stage"; die "pip wheel"; }
  mv "$dir"/deps/linkage-*.whl "$dir/linkage/"
  rm -rf "$stage"
  log "wheels: $(find "$dir/deps" -name '*.whl' | wc -l) dependencies and the project in $(seconds_since "$started") s"
}

build() {
  local started key
  started=$(date +%s)
  [ "$(id -u)" -eq 0 ] || die "run as root (mmdebstrap, podman)"
  command -v podman >/dev/null || die "no podman: run bash scripts/setup.sh debs"
  build_base
  build_rootfs_image
  build_image linkage-asterisk "$(asterisk_key)" docker/asterisk.Dockerfile --build-arg "ASTERISK_ROOTFS=$ROOTFS_IMAGE"
  key=$(controller_key)
  if [ "$(label_of "localhost/linkage-controller:$key")" != "$key" ]; then
    wheels
  fi
  build_image linkage-controller "$key" docker/controller.Dockerfile
  build_image linkage-redis "$(redis_key)" docker/redis.Dockerfile
  log "images ready in $(seconds_since "$started") s"
  tags
}

case "${1:-build}" in
  build) build ;;
  tags) tags ;;
  *) echo "usage: images.sh [build|tags]" >&2; exit 2 ;;
esac
