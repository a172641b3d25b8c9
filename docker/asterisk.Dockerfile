# Asterisk 22 for one Linkage site (Debian sid is the Debian release that has Asterisk 22).
# Build from the repository root:  docker build -f docker/asterisk.Dockerfile -t linkage-asterisk .
# Run with the output of `linkage config render --out /etc/linkage-asterisk` mounted read-write at
# /etc/linkage-asterisk (Asterisk keeps its run/log/spool/lib/cache directories there too) and host networking.

FROM debian:sid
ARG DEBIAN_FRONTEND=noninteractive
# A mirror that serves a frozen copy of sid has an expired Release file: build with
# --build-arg APT_CHECK_VALID_UNTIL=false there. Leave the check on against a live mirror.
ARG APT_CHECK_VALID_UNTIL=true
RUN apt-get -o Acquire::Check-Valid-Until="$APT_CHECK_VALID_UNTIL" update \
 && apt-get install -y --no-install-recommends \
      asterisk asterisk-modules asterisk-core-sounds-en-gsm asterisk-moh-opsound-gsm \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /etc/linkage-asterisk
COPY docker/asterisk-entrypoint.sh /usr/local/sbin/linkage-asterisk-entrypoint
RUN chmod 0755 /usr/local/sbin/linkage-asterisk-entrypoint

# SIP, AMI and RTP ports are the site's (pbx.sip.port, pbx.ami.port, rtp.conf); sites run with host networking.
VOLUME ["/etc/linkage-asterisk"]
HEALTHCHECK --interval=15s --timeout=10s --start-period=30s --retries=3 \
  CMD ["asterisk", "-C", "/etc/linkage-asterisk/etc/asterisk.conf", "-rx", "core waitfullybooted"]

# Asterisk starts as root, reads its config, then runs as the asterisk user (-U/-G).
ENTRYPOINT ["/usr/local/sbin/linkage-asterisk-entrypoint"]
CMD ["asterisk", "-f", "-U", "asterisk", "-G", "asterisk", "-C", "/etc/linkage-asterisk/etc/asterisk.conf"]
