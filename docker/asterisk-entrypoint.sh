#!/bin/sh
# Checks that the site directory was rendered for the path it is mounted at, then runs the command.
#
# The rendered asterisk.conf (in DIR/etc) names DIR/etc as Asterisk's config directory and
# DIR/{run,log,spool,lib,cache} as its state directories, where DIR is the --out path given at render time.
# So DIR must be the path the files are mounted at. Nothing is changed here: the root filesystem is read-only
# and Asterisk runs as its own user, which owns the state volumes (the image's directories) already.
set -eu

conf=""
prev=""
for arg in "$@"; do
  [ "$prev" = "-C" ] && conf=$arg
  prev=$arg
done

if [ -n "$conf" ]; then
  site=$(dirname "$(dirname "$conf")")
  if [ ! -r "$conf" ]; then
    echo "linkage-asterisk: cannot read $conf (as $(id -un), groups $(id -Gn))." >&2
    echo "  Render the site into the volume mounted at $site/etc:" >&2
    echo "  linkage config render --config site.yaml --out $site   (and run with --group-add of its owner)" >&2
    exit 2
  fi
  etc=$(sed -n 's/^astetcdir[[:space:]]*=>[[:space:]]*\([^;[:space:]]*\).*/\1/p' "$conf" | head -n 1)
  if [ "$etc" != "$site/etc" ]; then
    echo "linkage-asterisk: $conf was rendered with --out ${etc%/etc} but is mounted at $site." >&2
    echo "  Render it again with --out $site, or mount it at ${etc%/etc}." >&2
    exit 2
  fi
  for d in run log spool lib cache; do
    [ -w "$site/$d" ] || { echo "linkage-asterisk: $site/$d is not writable by $(id -un)" >&2; exit 2; }
  done
  rm -f "$site/run/"*  # a stale control socket or pid file of a previous run (when run/ is not a tmpfs)
fi

exec "$@"
