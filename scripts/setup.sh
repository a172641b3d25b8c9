#!/usr/bin/env bash
# Idempotent set-up for Linkage: Debian packages, the Python environment, and the
# Asterisk 22 root filesystem (Debian sid, built with mmdebstrap, kept outside git).
# A second run with everything in place only checks and returns in seconds.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

DEB_PACKAGES="sip-tester redis-server mmdebstrap python3-venv iproute2 iptables chromium fonts-wqy-microhei espeak-ng sox postgresql podman runc prometheus systemd"
# ip netns, ss, iptables: fault drills; chromium and a CJK font: the console's browser tests and screenshots;
# espeak-ng and sox: the Mandarin prompts, spoken offline and made 8 kHz mono for Asterisk; podman and runc:
# the production images, built and run for real (scripts/images.sh, docker/compose.py, tests/images);
# prometheus (for promtool) and systemd (for systemd-analyze): the checks of deploy/ (policy-rc.d keeps the
# daemon from starting)
ROOTFS_PACKAGES="asterisk asterisk-modules asterisk-core-sounds-en-gsm asterisk-moh-opsound-gsm"
ROOTFS_BASE=${LINKAGE_ROOTFS_BASE:-/var/lib/linkage/rootfs}
PYTHON=${PYTHON:-python3}
VENV=${VENV:-$here/.venv}

log() { printf '[setup] %s\n' "$*" >&2; }

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: must run as root (apt-get, chroot); run under sudo" >&2
    exit 2
  fi
}

debian_mirror() {
  # The mirror this machine's apt already uses: the first Debian archive URI that is not -security.
  local uri
  uri=$(grep -hE '^\s*URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' \
        | grep -v -- '-security' | grep -E '/debian/?$' | head -n1 || true)
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1=="deb" {print $2}' /etc/apt/sources.list | grep -v -- '-security' | grep -E '/debian/?$' | head -n1 || true)
  fi
  if [ -z "$uri" ]; then
    echo "setup: no Debian mirror found in /etc/apt sources; set LINKAGE_DEBIAN_MIRROR" >&2
    exit 2
  fi
  printf '%s\n' "${LINKAGE_DEBIAN_MIRROR:-$uri}"
}

install_debs() {
  local missing=()
  for p in $DEB_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    need_root
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

install_venv() {
  local stamp="$VENV/.linkage-stamp" want
  want=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return
  fi
  log "building the Python environment in $VENV"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
  echo "$want" > "$stamp"
}

build_rootfs() {
  local key dir tmp mirror
  key=$(printf '%s\n' "$ROOTFS_PACKAGES" | sha256sum | cut -c1-12)
  dir="$ROOTFS_BASE/$key"
  if [ -x "$dir/usr/sbin/asterisk" ] && [ -f "$dir/.linkage-complete" ]; then
    ln -sfn "$dir" "$ROOTFS_BASE/current"
    return
  fi
  need_root
  mirror=$(debian_mirror)
  log "building the Asterisk root filesystem in $dir (Debian sid; about a minute)"
  mkdir -p "$ROOTFS_BASE"
  tmp="$dir.tmp.$$"
  rm -rf "$tmp"
  mmdebstrap --quiet --variant=apt --aptopt='Acquire::Check-Valid-Until "false"' \
    --include="$(echo "$ROOTFS_PACKAGES" | tr ' ' ',')" sid "$tmp" "$mirror"
  # Asterisk needs a few device nodes inside the chroot.
  for n in null:1:3 zero:1:5 random:1:8 urandom:1:9; do
    IFS=: read -r name major minor <<<"$n"
    [ -e "$tmp/dev/$name" ] || mknod -m 666 "$tmp/dev/$name" c "$major" "$minor"
  done
  touch "$tmp/.linkage-complete"
  rm -rf "$dir"
  mv "$tmp" "$dir"
  ln -sfn "$dir" "$ROOTFS_BASE/current"
  "$dir/usr/sbin/asterisk" -V >/dev/null 2>&1 || chroot "$dir" /usr/sbin/asterisk -V >&2
}

install_prompts() {
  # Each sounds/linkage/NAME.txt (the words, tracked) becomes NAME.wav in the root filesystem's local sounds,
  # which Asterisk plays as custom/linkage/NAME (sounds/custom -> /usr/local/share/asterisk/sounds). Rebuilt
  # when the words change (the installed copy of the .txt says what the .wav says). An engineer installs them
  # into an existing Asterisk with LINKAGE_SOUNDS_DIR=<astdatadir>/sounds/custom scripts/setup.sh prompts.
  local dir="${LINKAGE_SOUNDS_DIR:-$ROOTFS_BASE/current/usr/local/share/asterisk/sounds}/linkage" src name tmp
  mkdir -p "$dir"
  for src in sounds/linkage/*.txt; do
    name=$(basename "$src" .txt)
    if [ -f "$dir/$name.wav" ] && cmp -s "$src" "$dir/$name.txt"; then
      continue
    fi
    log "speaking the prompt $name (espeak-ng, Mandarin; sox to 8 kHz mono)"
    tmp=$(mktemp -d)
    espeak-ng -v cmn -s 190 -w "$tmp/p.wav" -f "$src"
    sox -G "$tmp/p.wav" -r 8000 -c 1 "$tmp/p8k.wav"  # -G: no clipping from the resampling
    mv "$tmp/p8k.wav" "$dir/$name.wav"
    cp "$src" "$dir/$name.txt"
    rm -rf "$tmp"
  done
}

case "${1:-all}" in
  debs) install_debs ;;
  venv) install_venv ;;
  rootfs) install_debs; build_rootfs; install_prompts ;;
  prompts) install_prompts ;;
  mirror) debian_mirror ;;  # the mirror this machine's apt uses (scripts/images.sh builds its base image from it)
  all) install_debs; install_venv; build_rootfs; install_prompts ;;
  *) echo "usage: setup.sh [all|debs|venv|rootfs|prompts|mirror]" >&2; exit 2 ;;
esac
