# The Linkage controller of one site: AMI client, FastAGI server, HTTP API, delivery workers.
# Built by scripts/images.sh, which first makes the wheels with `pip wheel` on the build machine into
# build/images/wheels (deps/ and linkage/, the project's wheel made from telephony/ alone: the lab package
# linkage_lab is never in it). The build installs them with --no-index: it needs no network but the apt mirror,
# and no certificate of the build machine goes into the image.
# Runs as uid 10001 with a read-only root filesystem, the site's YAML at /etc/linkage/site.yaml, host network.

FROM debian:bookworm AS build
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/linkage
# dependencies first: their layer is reused while only the project changes
COPY build/images/wheels/deps /wheels/deps
RUN /opt/linkage/bin/pip install --no-cache-dir --disable-pip-version-check --no-index --find-links /wheels/deps \
      /wheels/deps/*.whl
COPY build/images/wheels/linkage /wheels/linkage
RUN /opt/linkage/bin/pip install --no-cache-dir --disable-pip-version-check --no-index --no-deps \
      /wheels/linkage/*.whl
# `linkage config render` reads its templates from the directory above the installed package (render.py ROOT);
# they are not package data, so put them where it looks.
COPY config/asterisk /tmp/templates/config/asterisk
COPY dialplans /tmp/templates/dialplans
RUN purelib=$(/opt/linkage/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
 && mkdir -p "$purelib/config" \
 && cp -r /tmp/templates/config/asterisk "$purelib/config/asterisk" \
 && cp -r /tmp/templates/dialplans "$purelib/dialplans" \
 && find /opt/linkage -name '*.in' -exec chmod 0644 {} + \
 && rm -rf /tmp/templates \
 && /opt/linkage/bin/python -m compileall -q /opt/linkage/lib


FROM debian:bookworm
ARG DEBIAN_FRONTEND=noninteractive
# ca-certificates (Debian's own store): peers may be reached over HTTPS.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
ARG LINKAGE_UID=10001
# /srv/linkage-asterisk/etc: where `linkage config render --out /srv/linkage-asterisk` writes the site's Asterisk
# config, owned by linkage so a new named volume mounted there is too (the Asterisk container reads it through
# the linkage group).
RUN groupadd --system --gid "$LINKAGE_UID" linkage \
 && useradd --system --uid "$LINKAGE_UID" --gid linkage --home-dir /var/lib/linkage --create-home \
      --shell /usr/sbin/nologin linkage \
 && install -d -m 0755 /etc/linkage /srv/linkage-asterisk \
 && install -d -o linkage -g linkage -m 0750 /srv/linkage-asterisk/etc
COPY --from=build /opt/linkage /opt/linkage
ENV PATH=/opt/linkage/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER linkage
WORKDIR /var/lib/linkage

# The real ports are controller.http.port and pbx.agi.port of the site's YAML; these defaults only document them
# (sites run with host networking, as the lab does).
ARG HTTP_PORT=8080
ARG AGI_PORT=4573
EXPOSE ${HTTP_PORT}/tcp ${AGI_PORT}/tcp

# Asks /v1/ready (Redis and AMI reachable; /v1/health is liveness only) on the address and port the site's YAML
# (plus LINKAGE_* overrides) gives; 503 or no answer fails.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/opt/linkage/bin/python", "-c", "import urllib.request as u; from telephony.config import load_site_config as load; c = load('/etc/linkage/site.yaml'); h = c.controller.http.host; h = {'0.0.0.0': '127.0.0.1', '::': '::1'}.get(h, h); h = f'[{h}]' if ':' in h else h; u.urlopen(f'http://{h}:{c.controller.http.port}/v1/ready', timeout=4)"]

ENTRYPOINT ["linkage", "serve", "--config", "/etc/linkage/site.yaml"]
