#!/bin/sh
# Lays out a site directory rendered by `linkage config render --out DIR` for Asterisk, then runs the command.
#
# The rendered asterisk.conf (in DIR/etc) names DIR/etc as Asterisk's config directory and
# DIR/{run,log,spool,lib,cache} as its state directories, where DIR is the --out path given at render time.
# So DIR must be the path the files are mounted at.
set -eu

conf=""
prev=""
for arg in "$@"; do
  [ "$prev" = "-C" ] && conf=$arg
  prev=$arg
done

if [ -n "$conf" ]; then
  site=$(dirname "$(dirname "$conf")")
  if [ ! -f "$conf" ]; then
    echo "linkage-asterisk: no $conf. Render the site into the volume mounted at $site:" >&2
    echo "  linkage config render --config site.yaml --out $site" >&2
    exit 2
  fi
  etc=$(sed -n 's/^astetcdir[[:space:]]*=>[[:space:]]*\([^;[:space:]]*\).*/\1/p' "$conf" | head -n 1)
  if [ "$etc" != "$site/etc" ]; then
    echo "linkage-asterisk: $conf was rendered with --out ${etc%/etc} but is mounted at $site." >&2
    echo "  Render it again with --out $site, or mount it at ${etc%/etc}." >&2
    exit 2
  fi
  for d in run log spool lib cache; do
    mkdir -p "$site/$d"
  done
  rm -f "$site/run/"*  # a stale control socket or pid file of a previous container
  # Asterisk reloads config and writes its state after dropping root (-U asterisk); manager.conf holds secrets.
  chown -R asterisk:asterisk "$site"
  chmod -R u=rwX,g=rX,o= "$site"
fi

exec "$@"
