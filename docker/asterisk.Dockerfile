# Asterisk 22 for one Linkage site, on the project's Asterisk root filesystem: the one scripts/setup.sh builds
# with mmdebstrap (Debian sid + asterisk, the Mandarin prompts spoken into it) and the lab chroots into, imported
# by scripts/images.sh as linkage-asterisk-rootfs:<key>. Nothing is installed or compiled again here.
#   bash scripts/images.sh            (or: podman build --build-arg ASTERISK_ROOTFS=… -f docker/asterisk.Dockerfile .)
#
# Runs as the asterisk user, with a read-only root filesystem, on the host network. The site's directory is
# /srv/linkage-asterisk, the --out of `linkage config render`; mount there:
#   etc/          the rendered config (read-only; readable through the linkage group, gid 10001: --group-add)
#   spool/, spool/monitor/ (the recordings), lib/ (astdb), log/   named volumes
#   run/, cache/, /tmp                                            tmpfs
ARG ASTERISK_ROOTFS=localhost/linkage-asterisk-rootfs:latest
FROM ${ASTERISK_ROOTFS}
COPY docker/asterisk-entrypoint.sh /usr/local/sbin/linkage-asterisk-entrypoint
# The directories exist in the image with their owner, so a new named volume mounted on one takes it over.
# run/ and cache/ are sticky and world-writable like /tmp: Podman gives a tmpfs mounted there the image
# directory's mode but root as its owner.
RUN chmod 0755 /usr/local/sbin/linkage-asterisk-entrypoint \
 && install -d -m 0755 /srv/linkage-asterisk /srv/linkage-asterisk/etc \
 && install -d -o asterisk -g asterisk -m 0750 /srv/linkage-asterisk/log /srv/linkage-asterisk/spool \
      /srv/linkage-asterisk/spool/monitor /srv/linkage-asterisk/lib \
 && install -d -m 1777 /srv/linkage-asterisk/run /srv/linkage-asterisk/cache
USER asterisk
WORKDIR /srv/linkage-asterisk

# SIP, AMI and RTP ports are the site's (pbx.sip.port, pbx.ami.port, --rtp-ports of the render): host network.
HEALTHCHECK --interval=15s --timeout=10s --start-period=30s --retries=3 \
  CMD ["asterisk", "-C", "/srv/linkage-asterisk/etc/asterisk.conf", "-rx", "core waitfullybooted"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/sbin/linkage-asterisk-entrypoint"]
CMD ["asterisk", "-f", "-n", "-C", "/srv/linkage-asterisk/etc/asterisk.conf"]
